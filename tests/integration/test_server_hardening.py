"""The API server against crashes and idle clients: its port, its files, its connections."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest
import yaml

from sendo.cli.main import _write_kubeconfig
from sendo.server import Server, ServerConfig, free_port
from sendo.serving import PortInUse

START_DEADLINE = 120.0  # a loaded machine (load average 30) takes over 30 s


def _start_cli(data_dir: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "sendo.cli.main", "server", "--no-controllers",
                             "--data-dir", data_dir, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_line(proc: subprocess.Popen, marker: str) -> str:
    """Read the process's output until ``marker`` (returns all of it) or the process ends."""
    seen = []
    deadline = time.monotonic() + START_DEADLINE
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {marker!r} in the output:\n{''.join(seen)}")


def _served_url(data_dir: str) -> str:
    with open(os.path.join(data_dir, "kubeconfig")) as f:
        return yaml.safe_load(f)["clusters"][0]["cluster"]["server"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


def _client_context(data_dir: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=os.path.join(data_dir, "server", "tls", "ca.crt"))
    return ctx


def _open_keepalive(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection that has had one answered request and stays open."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return s


def test_explicit_port_is_kept_after_kill_9_with_open_connections(tmp_path):
    data, port = str(tmp_path / "data"), free_port()
    first = _start_cli(data, "--port", str(port))
    conns = []
    try:
        _wait_for_line(first, "export KUBECONFIG=")
        assert _served_url(data) == f"https://127.0.0.1:{port}"
        ctx = _client_context(data)
        conns = [_open_keepalive(port, ctx) for _ in range(3)]
        first.send_signal(signal.SIGKILL)  # the server side of each connection lingers (FIN_WAIT/TIME_WAIT)
        first.wait(10)
        second = _start_cli(data, "--port", str(port))
        try:
            _wait_for_line(second, "export KUBECONFIG=")
            assert _served_url(data) == f"https://127.0.0.1:{port}"
        finally:
            _stop(second)
    finally:
        for c in conns:
            c.close()
        _stop(first)


def test_a_port_another_process_listens_on_fails_loudly(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    proc = _start_cli(str(tmp_path / "data"), "--port", str(port))
    try:
        out, _ = proc.communicate(timeout=START_DEADLINE)
        assert proc.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out
    finally:
        holder.close()
        if proc.poll() is None:
            _stop(proc)


async def test_only_an_unset_port_falls_back_to_a_free_one(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        explicit = Server(ServerConfig(data_dir=str(tmp_path / "a"), port=port, controllers=False))
        with pytest.raises(PortInUse):
            await explicit.start()
        await explicit.store.close()
        unset = Server(ServerConfig(data_dir=str(tmp_path / "b"), port=port, port_fallback=True, controllers=False))
        await unset.start()
        try:
            assert unset.cfg.port != port and unset.cfg.url.endswith(f":{unset.cfg.port}")
        finally:
            await unset.stop()
    finally:
        holder.close()


# ----------------------------------------------------------------- files holding secrets
def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_state_keys_and_tokens_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask: files are world-readable unless created otherwise
    try:
        data = tmp_path / "data"
        s = Server(ServerConfig(data_dir=str(data), port=free_port(), controllers=False))
        await s.start()
        try:
            kubeconfig = _write_kubeconfig(str(data), s.cfg.url, s.admin_token, s.ca_pem)
            server = data / "server"
            for d in (data, server, server / "tls"):
                assert _mode(d) == 0o700, d
            secret = [server / n for n in ("state.db", "state.db-wal", "state.db-shm", "admin-token",
                                           "node-token", "sa.key", "tls/ca.key", "tls/server.key")]
            for f in secret + [kubeconfig]:
                assert _mode(f) == 0o600, f
        finally:
            await s.stop()
    finally:
        os.umask(old)


async def test_files_an_older_version_left_readable_are_tightened(tmp_path):
    server = tmp_path / "data" / "server"
    server.mkdir(parents=True, mode=0o755)
    db = server / "state.db"
    db.touch(mode=0o644)
    os.chmod(server, 0o755)
    os.chmod(db, 0o644)
    s = Server(ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controllers=False))
    await s.start()
    try:
        assert _mode(server) == 0o700 and _mode(db) == 0o600
    finally:
        await s.stop()


# ----------------------------------------------------------------- idle and excess connections
@contextlib.asynccontextmanager
async def running(tmp_path, **kw):
    s = Server(ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controllers=False, **kw))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def _closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """Wait (up to ``deadline`` seconds) for the server to close the connection."""
    sock.settimeout(deadline)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return True
    except (socket.timeout, TimeoutError):
        return False


async def test_a_connection_that_never_finishes_its_tls_handshake_is_closed(tmp_path):
    async with running(tmp_path, handshake_timeout=0.5, first_request_timeout=60) as s:
        with socket.create_connection(("127.0.0.1", s.cfg.port)) as raw:  # connects, never says hello
            assert await asyncio.to_thread(_closed_by_peer, raw, 15)


async def test_a_tls_connection_that_sends_no_request_is_closed(tmp_path):
    async with running(tmp_path, handshake_timeout=60, first_request_timeout=0.5) as s:
        ctx = _client_context(s.cfg.data_dir)

        def idle() -> bool:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.cfg.port), timeout=10),
                                 server_hostname="127.0.0.1") as c:
                return _closed_by_peer(c, 15)
        assert await asyncio.to_thread(idle)


async def test_an_idle_keepalive_connection_outlives_the_clients_own_idle_expiry(tmp_path):
    """Clients pool connections and drop them after their own idle time (aiohttp 15 s,
    httpx 5 s, Go 90 s). A server that closes first races the client's next request on
    that connection: kopf's PATCH got ServerDisconnectedError with the server closing at
    5 s. Kubernetes keeps an idle connection for 90 s; so does sendo by default."""
    async with running(tmp_path) as s:
        ctx = _client_context(s.cfg.data_dir)

        def reuse_after_idle() -> tuple[bool, bytes]:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.cfg.port), timeout=10),
                                 server_hostname="127.0.0.1") as c:
                assert _healthz(c).startswith(b"HTTP/1.1 200")
                if _closed_by_peer(c, 7):  # past httpx's 5 s, into aiohttp's 15 s
                    return True, b""
                return False, _healthz(c)
        closed, answer = await asyncio.to_thread(reuse_after_idle)
        assert not closed, "the server closed a connection idle for 7 s"
        assert answer.startswith(b"HTTP/1.1 200")


def _healthz(c: ssl.SSLSocket) -> bytes:
    """One keep-alive GET /healthz on c, its whole answer read (headers and Content-Length body)."""
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        assert chunk, "connection closed before the answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = c.recv(4096)
        assert chunk, "connection closed in the body"
        body += chunk
    return data


async def test_connections_beyond_the_cap_are_closed_and_logged(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sendo.serving")
    async with running(tmp_path, max_connections=2, idle_timeout=60, first_request_timeout=60) as s:
        ctx = _client_context(s.cfg.data_dir)
        port = s.cfg.port
        held = [await asyncio.to_thread(_open_keepalive, port, ctx) for _ in range(2)]
        try:
            def third() -> bool:
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                     server_hostname="127.0.0.1") as c:
                    return _closed_by_peer(c, 15)
            assert await asyncio.to_thread(third)
            assert any("connection limit of 2 reached" in r.getMessage() for r in caplog.records)
        finally:
            for c in held:
                c.close()

        def fresh() -> bool:
            deadline = time.monotonic() + 15  # the server notices the two closes on its own time
            while time.monotonic() < deadline:
                try:
                    _open_keepalive(port, ctx).close()
                    return True
                except (OSError, AssertionError):
                    time.sleep(0.05)  # poll interval of a deadline-bounded wait
            return False
        assert await asyncio.to_thread(fresh)


# ----------------------------------------------------------------- --datastore
async def test_datastore_url_chooses_where_the_state_lives(tmp_path):
    db = tmp_path / "elsewhere" / "cluster.db"
    async with running(tmp_path, datastore=f"sqlite://{db}") as s:
        await s.api.api.create(s.registry.get("", "v1", "configmaps"), "default",
                               {"metadata": {"name": "here"}, "data": {"a": "b"}})
    assert db.exists() and not (tmp_path / "data" / "server" / "state.db").exists()
    async with running(tmp_path, datastore=f"sqlite://{db}") as s:  # the same state, read back
        assert await s.store.get("/registry/core/configmaps/default/here") is not None


def test_an_unknown_datastore_scheme_is_refused_naming_the_option(tmp_path):
    proc = _start_cli(str(tmp_path / "data"), "--datastore", "mongodb://127.0.0.1/x")
    out, _ = proc.communicate(timeout=START_DEADLINE)
    assert proc.returncode != 0
    assert "--datastore" in out and "mongodb" in out and "sqlite://" in out

