"""Probe checks against real loopback servers and processes, and the probe loop's
threshold and timing rules with short periods.

Every server here listens on 127.0.0.1 on a free port; nothing leaves the machine.
"""
from __future__ import annotations

import asyncio
import http.server
import os
import socket
import ssl
import threading
import time
from contextlib import contextmanager

import pytest

from sendo import __version__
from sendo.agent import hooks, probes
from sendo.agent.probes import FAILURE, SUCCESS, UNKNOWN, WARNING, Outcome, ProbeLoop, Target, Threshold
from sendo.pki import ensure_tls
from tests.conftest import wait_until

ENV = {"PATH": os.environ.get("PATH", os.defpath)}


# ----------------------------------------------------------------------------- servers

class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        host, port = self.server.server_address[:2]
        path = self.path.split("?")[0]
        if path == "/ok":
            self._send(200, b"fine")
        elif path == "/nocontent":
            self._send(204, b"")
        elif path == "/fail":
            self._send(500, b"broken")
        elif path == "/notfound":
            self._send(404, b"")
        elif path == "/redirect-same":
            self._send(302, b"", [("Location", "/ok")])
        elif path == "/redirect-fail":
            self._send(301, b"", [("Location", f"http://{host}:{port}/fail")])
        elif path == "/redirect-other":
            # another loopback address: not followed, so never contacted
            self._send(302, b"", [("Location", f"http://127.0.0.2:{port}/ok")])
        elif path == "/loop":
            self._send(302, b"", [("Location", "/loop")])
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/big":
            self._send(200, b"x" * 1_000_000)
        else:
            self._send(404, b"")

    def _send(self, code: int, body: bytes, headers=()):
        try:
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def http_server(tls_dir: str | None = None):
    class Handler(_Handler):
        seen: list[dict] = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if tls_dir:
        files = ensure_tls(tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files.cert, files.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], Handler.seen
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target(port_name: str | None = None, port: int | None = None, cwd: str | None = None,
           env: dict | None = None) -> Target:
    ports = [{"name": port_name, "containerPort": port}] if port_name else []
    return Target("127.0.0.1", {"name": "web", "ports": ports}, env or dict(ENV), cwd)


# ----------------------------------------------------------------------------- httpGet

async def test_http_status_codes_decide():
    with http_server() as (port, seen):
        t = target()
        assert (await probes.http_get({"port": port, "path": "/ok"}, t, 1)).result == SUCCESS
        assert (await probes.http_get({"port": port, "path": "/nocontent"}, t, 1)).result == SUCCESS
        o = await probes.http_get({"port": port, "path": "/fail"}, t, 1)
        assert o == Outcome(FAILURE, "HTTP probe failed with statuscode: 500")
        o = await probes.http_get({"port": port, "path": "/notfound"}, t, 1)
        assert o.message == "HTTP probe failed with statuscode: 404"
        # a large body does not matter: only the status decides, and little of it is read
        assert (await probes.http_get({"port": port, "path": "/big"}, t, 1)).result == SUCCESS


async def test_http_default_and_custom_headers():
    with http_server() as (port, seen):
        t = target()
        await probes.http_get({"port": port, "path": "/ok?x=1"}, t, 1)
        req = seen[-1]
        assert req["path"] == "/ok?x=1"
        major_minor = ".".join(__version__.split(".")[:2])
        assert req["user-agent"] == f"sendo-probe/{major_minor}"
        assert req["accept"] == "*/*"
        assert req["host"] == f"127.0.0.1:{port}"
        assert req["connection"] == "close"

        await probes.http_get({"port": port, "path": "/ok", "httpHeaders": [
            {"name": "X-Custom", "value": "yes"}, {"name": "Host", "value": "example.test"},
            {"name": "User-Agent", "value": "mine/1"}, {"name": "Accept", "value": ""}]}, t, 1)
        req = seen[-1]
        assert req["x-custom"] == "yes"
        assert req["host"] == "example.test"  # a virtual host, the connection still goes to the pod IP
        assert req["user-agent"] == "mine/1"
        assert "accept" not in req  # an empty value removes the default header


async def test_http_port_by_name_and_path_default():
    with http_server() as (port, seen):
        t = target("web-port", port)
        assert (await probes.http_get({"port": "web-port", "path": "/ok"}, t, 1)).result == SUCCESS
        await probes.http_get({"port": "web-port"}, t, 1)
        assert seen[-1]["path"] == "/"
        await probes.http_get({"port": str(port), "path": "ok"}, t, 1)  # numeric string; a path without /
        assert seen[-1]["path"] == "/ok"
        o = await probes.http_get({"port": "nope", "path": "/ok"}, t, 1)
        assert o.result == UNKNOWN and "nope" in o.message


async def test_http_redirects_followed_only_on_the_same_host():
    with http_server() as (port, seen):
        t = target()
        assert (await probes.http_get({"port": port, "path": "/redirect-same"}, t, 1)).result == SUCCESS
        assert [r["path"] for r in seen[-2:]] == ["/redirect-same", "/ok"]
        o = await probes.http_get({"port": port, "path": "/redirect-fail"}, t, 1)
        assert o == Outcome(FAILURE, "HTTP probe failed with statuscode: 500")

        n = len(seen)
        o = await probes.http_get({"port": port, "path": "/redirect-other"}, t, 1)
        assert o.result == WARNING and o.ok and "Probe terminated redirects" in o.message
        assert len(seen) == n + 1  # the other host was not contacted

        n = len(seen)
        o = await probes.http_get({"port": port, "path": "/loop"}, t, 2)
        assert o.result == WARNING
        assert len(seen) - n == probes.MAX_REDIRECTS + 1


async def test_http_refused_and_timeout():
    port = closed_port()
    o = await probes.http_get({"port": port, "path": "/healthz"}, target(), 1)
    assert o.result == FAILURE
    assert o.message == (f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: '
                         f'connect: connection refused')
    with http_server() as (port, seen):
        began = time.monotonic()
        o = await probes.http_get({"port": port, "path": "/slow"}, target(), 0.3)
        assert time.monotonic() - began < 1.2
        assert o.result == FAILURE and "context deadline exceeded" in o.message


async def test_https_without_certificate_verification(tmp_path):
    with http_server(str(tmp_path / "tls")) as (port, seen):
        o = await probes.http_get({"port": port, "path": "/ok", "scheme": "HTTPS"}, target(), 2)
        assert o.result == SUCCESS, o
        o = await probes.http_get({"port": port, "path": "/fail", "scheme": "HTTPS"}, target(), 2)
        assert o.message == "HTTP probe failed with statuscode: 500"
    with http_server() as (port, seen):  # HTTPS to a plain HTTP server: a TLS error, a failure
        o = await probes.http_get({"port": port, "path": "/ok", "scheme": "HTTPS"}, target(), 2)
        assert o.result == FAILURE and "dial tcp" not in o.message, o


# ----------------------------------------------------------------------------- tcpSocket

async def test_tcp_socket():
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        port = lst.getsockname()[1]
        assert (await probes.tcp_socket({"port": port}, target(), 1)).result == SUCCESS
        assert (await probes.tcp_socket({"port": "tcp"}, target("tcp", port), 1)).result == SUCCESS
    port = closed_port()
    o = await probes.tcp_socket({"port": port}, target(), 1)
    assert o == Outcome(FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


# ----------------------------------------------------------------------------- exec

async def test_exec_exit_codes_and_output():
    t = target()
    assert (await probes.exec_command({"command": ["true"]}, t, 1)).result == SUCCESS
    o = await probes.exec_command({"command": ["/bin/sh", "-c", "exit 1"]}, t, 1)
    assert o.result == FAILURE and "exited with code 1" in o.message
    o = await probes.exec_command({"command": ["/bin/sh", "-c", "echo not healthy >&2; exit 3"]}, t, 1)
    assert o == Outcome(FAILURE, "not healthy")
    o = await probes.exec_command({"command": ["no-such-command-here"]}, t, 1)
    assert o.result == FAILURE and "executable file not found" in o.message


async def test_exec_uses_the_container_env_and_working_dir(tmp_path):
    (tmp_path / "marker").write_text("x")
    t = target(cwd=str(tmp_path), env={**ENV, "FOO": "bar"})
    assert (await probes.exec_command({"command": ["/bin/sh", "-c", 'test "$FOO" = bar']}, t, 1)).ok
    assert (await probes.exec_command({"command": ["test", "-f", "marker"]}, t, 1)).ok
    assert (await probes.exec_command({"command": ["test", "$(FOO)", "=", "bar"]}, t, 1)).ok  # $(VAR)
    assert not (await probes.exec_command({"command": ["test", "-f", "other"]}, t, 1)).ok
    # exactly the container's env: nothing of the agent's leaks in
    os.environ["SENDO_PROBE_TEST_LEAK"] = "1"
    try:
        o = await probes.exec_command({"command": ["/bin/sh", "-c", 'test -z "$SENDO_PROBE_TEST_LEAK"']}, t, 1)
        assert o.ok
    finally:
        del os.environ["SENDO_PROBE_TEST_LEAK"]


async def test_exec_timeout_kills_the_command(tmp_path):
    pidfile = tmp_path / "pid"
    began = time.monotonic()
    o = await probes.exec_command(
        {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}, target(), 0.3)
    assert time.monotonic() - began < 2
    assert o.result == FAILURE and "timed out" in o.message
    pid = int(pidfile.read_text())
    await wait_until(lambda: not _alive(pid), 5, what="the timed-out command killed")


async def test_exec_leftovers_are_killed_when_the_command_exits(tmp_path):
    pidfile = tmp_path / "bg"
    o = await probes.exec_command(
        {"command": ["/bin/sh", "-c", f"sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}"]},
        target(), 2)
    assert o.ok
    pid = int(pidfile.read_text())
    await wait_until(lambda: not _alive(pid), 5, what="the background child killed")


async def test_exec_probes_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "EXEC_CONCURRENCY", 2)
    probes._limiters.clear()
    running = tmp_path / "running"
    running.mkdir()
    peak = tmp_path / "peak"
    # ($$ would be Kubernetes' escape for a literal $: the command is expanded like a container's)
    script = f'f=$(mktemp -p {running}); ls {running} | wc -l >> {peak}; sleep 0.2; rm "$f"'

    results = await asyncio.gather(*[probes.exec_command({"command": ["/bin/sh", "-c", script]}, target(), 5)
                                     for _ in range(6)])
    assert all(r.ok for r in results)
    counts = [int(x) for x in peak.read_text().split()]
    assert len(counts) == 6 and max(counts) <= 2


async def test_exec_probe_cancelled_kills_the_command(tmp_path):
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(probes.exec_command(
        {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}, target(), 30))
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, what="command started")
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: not _alive(pid), 5, what="cancelled command killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- dispatch

async def test_run_probe_dispatch_and_grpc_unsupported():
    with http_server() as (port, seen):
        assert (await probes.run_probe({"httpGet": {"port": port, "path": "/ok"}}, target())).ok
    assert (await probes.run_probe({"exec": {"command": ["true"]}}, target())).ok
    o = await probes.run_probe({"grpc": {"port": 9000}}, target())
    assert o.result == UNKNOWN and "grpc" in o.message
    assert (await probes.run_probe({}, target())).result == UNKNOWN


def test_settings_defaults_and_single_success():
    assert probes.settings("readiness", {}) == (0, 10, 1, 1, 3)
    assert probes.settings("readiness", {"successThreshold": 2, "periodSeconds": 1, "timeoutSeconds": 0,
                                         "initialDelaySeconds": 5, "failureThreshold": 1}) == (5, 1, 1, 2, 1)
    assert probes.settings("liveness", {"successThreshold": 3})[3] == 1
    assert probes.settings("startup", {"successThreshold": 3})[3] == 1


# ----------------------------------------------------------------------------- thresholds

def test_threshold_failure_and_success_runs():
    t = Threshold(True, success=1, failure=3)
    assert [t.observe(x) for x in (False, False)] == [False, False] and t.value is True
    assert t.observe(False) is True and t.value is False  # third failure in a row
    assert t.observe(False) is False  # still failed: no change
    assert t.observe(True) is True and t.value is True

    t = Threshold(False, success=2, failure=1)
    assert t.observe(True) is False  # one success is not enough
    assert t.observe(False) is False  # the run is broken, the state was already False
    assert [t.observe(True), t.observe(True)] == [False, True]
    assert t.observe(False) is True  # failureThreshold 1

    t = Threshold(None, success=1, failure=2)  # startup: unknown until decided
    assert t.observe(False) is False
    assert t.observe(True) is True and t.value is True


class Scripted:
    """A check returning scripted outcomes (the last one repeats), timing each call."""

    def __init__(self, *results: str):
        self.results = list(results)
        self.calls: list[float] = []

    async def __call__(self) -> Outcome:
        self.calls.append(time.monotonic())
        r = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        return Outcome(r, {FAILURE: "HTTP probe failed with statuscode: 500", UNKNOWN: "boom",
                           WARNING: "Probe terminated redirects"}.get(r, ""))


def _loop(kind, probe, check, **kw):
    changes, events = [], []
    loop = ProbeLoop(kind, {"periodSeconds": 0.05, **probe}, check, started_at=kw.pop("started_at", time.time()),
                     on_result=lambda k, ok: changes.append((k, ok)),
                     on_event=lambda t, r, m: events.append((t, r, m)), **kw)
    return loop, changes, events


async def test_liveness_fails_after_failure_threshold_then_stops():
    check = Scripted(SUCCESS, FAILURE, FAILURE, SUCCESS, FAILURE, FAILURE, FAILURE)
    loop, changes, events = _loop("liveness", {"failureThreshold": 3}, check)
    await asyncio.wait_for(loop.run(), 5)  # returns by itself once failed
    assert changes == [("liveness", False)]
    assert len(check.calls) == 7  # a success in between restarts the count
    unhealthy = [e for e in events if e[1] == "Unhealthy"]
    assert len(unhealthy) == 5
    assert unhealthy[0] == ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")


async def test_readiness_follows_thresholds_and_keeps_running():
    check = Scripted(FAILURE, SUCCESS, SUCCESS, FAILURE, SUCCESS, SUCCESS, SUCCESS)
    loop, changes, events = _loop("readiness", {"successThreshold": 2, "failureThreshold": 1}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 8, 5, what="8 readiness probes")
    task.cancel()
    assert changes == [("readiness", True), ("readiness", False), ("readiness", True)]
    assert ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500") in events


async def test_period_between_probes():
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {"periodSeconds": 0.2}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 3, 5, what="3 probes")
    task.cancel()
    gaps = [b - a for a, b in zip(check.calls, check.calls[1:])]
    assert all(0.17 <= g <= 0.5 for g in gaps), gaps


async def test_unknown_results_are_thrown_away_and_warnings_count_as_success():
    check = Scripted(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, WARNING)
    loop, changes, events = _loop("liveness", {"failureThreshold": 1}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 6, 5, what="6 probes")
    task.cancel()
    assert changes == []  # never failed: an errored probe does not count
    assert ("Warning", "Unhealthy", "Liveness probe errored: boom") in events
    assert ("Warning", "ProbeWarning", "Liveness probe warning: Probe terminated redirects") in events

    check = Scripted(WARNING)
    loop, changes, events = _loop("readiness", {}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: changes, 5, what="ready")
    task.cancel()
    assert changes == [("readiness", True)]


async def test_startup_success_ends_its_loop_and_failure_reports():
    loop, changes, events = _loop("startup", {"failureThreshold": 2}, Scripted(FAILURE, SUCCESS))
    await asyncio.wait_for(loop.run(), 5)
    assert changes == [("startup", True)]

    loop, changes, events = _loop("startup", {"failureThreshold": 2}, Scripted(FAILURE))
    await asyncio.wait_for(loop.run(), 5)
    assert changes == [("startup", False)]
    assert [e[2] for e in events] == ["Startup probe failed: HTTP probe failed with statuscode: 500"] * 2


async def test_gate_holds_probes_back_until_started():
    gate = asyncio.Event()
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {}, check, gate=gate)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.3)  # several periods pass: nothing may run while the gate is closed
    assert check.calls == [] and changes == []
    opened = time.monotonic()
    gate.set()
    await wait_until(lambda: changes, 5, what="readiness after the gate opened")
    task.cancel()
    assert check.calls[0] - opened < 0.1  # at once, not a period later
    assert changes == [("readiness", True)]


async def test_initial_delay_counts_from_the_container_start():
    check = Scripted(SUCCESS)
    started = time.time()
    loop, changes, events = _loop("readiness", {"initialDelaySeconds": 0.4}, check, started_at=started)
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first probe")
    task.cancel()
    assert check.calls[0] - t0 >= 0.38

    # liveness comes one period after that
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("liveness", {"initialDelaySeconds": 0.2, "periodSeconds": 0.3}, check,
                                  started_at=time.time())
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first liveness probe")
    task.cancel()
    assert check.calls[0] - t0 >= 0.48

    # a container that started long ago (adopted) is probed at once
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {"initialDelaySeconds": 30}, check, started_at=started - 60)
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first probe")
    task.cancel()
    assert check.calls[0] - t0 < 0.2


async def test_probe_loop_against_a_real_server_becomes_ready(tmp_path):
    """End to end in one process: a readiness probe against a server that starts failing."""
    with http_server() as (port, seen):
        t = target()
        probe = {"httpGet": {"port": port, "path": "/fail"}, "periodSeconds": 0.05, "failureThreshold": 2}
        loop, changes, events = _loop("readiness", probe, lambda: probes.run_probe(probe, t), initial=True)
        task = asyncio.create_task(loop.run())
        await wait_until(lambda: changes, 5, what="not ready")
        task.cancel()
        assert changes == [("readiness", False)]
        assert events[0] == ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500")


# ----------------------------------------------------------------------------- hooks

async def test_exec_hook(tmp_path):
    t = target(cwd=str(tmp_path), env={**ENV, "WHO": "hook", "TOKEN": "s3cr3t-value"})
    ok = await hooks.run_handler({"exec": {"command": ["/bin/sh", "-c", "echo $WHO > out"]}}, t,
                                 hook="PostStart", container="web", pod="default/p")
    assert ok is None and (tmp_path / "out").read_text() == "hook\n"
    err = await hooks.run_handler({"exec": {"command": ["/bin/sh", "-c", "echo $TOKEN; exit 2"]}}, t,
                                  hook="PreStop", container="web", pod="default/p")
    assert err and "exited with code 2" in err and "web" in err
    assert "s3cr3t-value" not in err  # command output stays out of messages that become Events


async def test_http_and_sleep_hooks():
    with http_server() as (port, seen):
        t = target()
        assert await hooks.run_handler({"httpGet": {"port": port, "path": "/hook"}}, t,
                                       hook="PreStop", container="web", pod="default/p") is None
        assert seen[-1]["path"] == "/hook" and seen[-1]["user-agent"].startswith("sendo-lifecycle/")
    err = await hooks.run_handler({"httpGet": {"port": closed_port(), "path": "/hook"}}, target(),
                                  hook="PreStop", container="web", pod="default/p")
    assert err and "Http lifecycle hook (/hook)" in err
    began = time.monotonic()
    assert await hooks.run_handler({"sleep": {"seconds": 0.2}}, target(), hook="PreStop", container="web",
                                   pod="default/p") is None
    assert time.monotonic() - began >= 0.19
    err = await hooks.run_handler({"tcpSocket": {"port": 80}}, target(), hook="PreStop", container="web",
                                  pod="default/p")
    assert err and "not supported" in err


async def test_hook_cancelled_kills_its_process(tmp_path):
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(hooks.run_handler(
        {"exec": {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}}, target(),
        hook="PreStop", container="web", pod="default/p"))
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, what="hook started")
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: not _alive(pid), 5, what="hook process killed")


# ----------------------------------------------------------------------------- the pod worker

# A tiny server on $POD_IP:$PORT: /ready answers 500 until the file `ready` exists in its
# working dir. On SIGTERM it appends "sigterm" to the file `lifecycle` and exits.
POD_SERVER = """
import http.server, os, signal
def term(*_):
    with open("lifecycle", "a") as f:
        f.write("sigterm\\n")
    os._exit(0)
signal.signal(signal.SIGTERM, term)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        self.send_response(200 if self.path != "/ready" or os.path.exists("ready") else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()
http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"""


class _StubClient:
    def __init__(self, pod: dict):
        self.pod = pod
        self.statuses: list[dict] = []
        self.deleted = False

    async def patch(self, _kind, ns, name, body, sub=None):
        self.statuses.append(body["status"])
        self.pod = {**self.pod, "status": body["status"]}
        return self.pod

    async def get_or_none(self, *a):
        return None

    async def delete(self, *a, **kw):
        self.deleted = True


class _StubAgent:
    """A PodHost for a real PodWorker: a real process runtime, the rest recorded."""

    def __init__(self, tmp, pod: dict):
        import random

        from sendo.agent.runtime import ProcessRuntime
        self.node_address = "127.0.0.1"
        self.backoff = (0.5, 1.0)
        self.pods_dir, self.logs_dir = str(tmp / "pods"), str(tmp / "logs")
        self.runtime = ProcessRuntime(str(tmp / "containers"))
        self.cidr = f"127.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        self.client = _StubClient(pod)
        self.events: list[tuple[str, str, str]] = []
        self.failed = False

    def runtime_for(self, pod):
        return self.runtime

    def base_env(self, pod, ip):
        return {"PATH": os.environ.get("PATH", os.defpath)}

    async def prepare_pod(self, pod):
        """The real agent waits for the pod's ServiceAccount token here; the stub has none."""

    def event(self, pod, type_, reason, message):
        self.events.append((type_, reason, message))

    def worker_failed(self, w):
        self.failed = True


def _worker_pod(port: int, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "w", "namespace": "default", "uid": "uid-probes-1"},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 3, "containers": [{
                "name": "web", "image": "python:3.11", "command": ["python3", "-c", POD_SERVER],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "PORT", "value": str(port)}],
                "ports": [{"name": "http", "containerPort": port}], **container}]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


async def test_pod_worker_readiness_liveness_and_hooks(tmp_path):
    from sendo.agent.podworker import PodWorker
    port = _free_port()
    pod = _worker_pod(port,
                      readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0.2,
                                      "failureThreshold": 1},
                      livenessProbe={"exec": {"command": ["/bin/sh", "-c", "test ! -f sick"]},
                                     "periodSeconds": 0.2, "failureThreshold": 2},
                      lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", "echo poststart >> lifecycle"]}},
                                 "preStop": {"exec": {"command": ["/bin/sh", "-c", "echo prestop >> lifecycle"]}}})
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    try:
        def cs() -> dict:
            return (agent.client.statuses[-1]["containerStatuses"] if agent.client.statuses else [{}])[0]

        def cond(t: str) -> str | None:
            st = agent.client.statuses[-1] if agent.client.statuses else {}
            return next((c["status"] for c in st.get("conditions", []) if c["type"] == t), None)
        await wait_until(lambda: "running" in cs().get("state", {}), 10, what="running")
        assert cs()["ready"] is False and cs()["started"] is True and cond("Ready") == "False"
        await wait_until(lambda: ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with "
                                  "statuscode: 500") in agent.events, 10, what="readiness failure event")
        # nothing reported Running before postStart completed
        first_running = next(i for i, s in enumerate(agent.client.statuses)
                             if "running" in s["containerStatuses"][0]["state"])
        assert all(s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
                   for s in agent.client.statuses[:first_running])
        pod_dir = tmp_path / "pods" / "uid-probes-1"
        assert (pod_dir / "lifecycle").read_text() == "poststart\n"

        (pod_dir / "ready").write_text("")
        await wait_until(lambda: cs().get("ready") is True and cond("Ready") == "True", 10, what="ready")

        (pod_dir / "sick").write_text("")
        await wait_until(lambda: ("Normal", "Killing", "Container web failed liveness probe, will be restarted")
                         in agent.events, 10, what="liveness kill")
        assert any(m.startswith("Liveness probe failed: ") for _, r, m in agent.events if r == "Unhealthy")
        (pod_dir / "sick").unlink()
        await wait_until(lambda: cs().get("restartCount") == 1 and cs().get("ready") is True, 15,
                         what="restarted and ready again")
        assert (pod_dir / "lifecycle").read_text().splitlines() == ["poststart", "prestop", "sigterm", "poststart"]
        last = cs()["lastState"]["terminated"]
        assert last["exitCode"] == 0, last
        # the ready flag went down while the old run was killed, and up again after the restart
        readies = [s["containerStatuses"][0]["ready"] for s in agent.client.statuses]
        assert readies.count(True) >= 2 and False in readies[readies.index(True):]

        w.removed()  # the pod is gone: preStop, SIGTERM, clean-up
        await asyncio.wait_for(w.task, 15)
        assert not agent.failed
    finally:
        if not w.task.done():
            w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()


async def test_pod_worker_startup_probe_and_failed_post_start(tmp_path):
    from sendo.agent.podworker import PodWorker
    port = _free_port()
    pod = _worker_pod(port,
                      startupProbe={"exec": {"command": ["test", "-f", "started"]}, "periodSeconds": 0.2,
                                    "failureThreshold": 100},
                      readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 0.2})
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    try:
        def cs() -> dict:
            return (agent.client.statuses[-1]["containerStatuses"] if agent.client.statuses else [{}])[0]
        await wait_until(lambda: "running" in cs().get("state", {}), 10, what="running")
        await asyncio.sleep(1.0)  # the server listens: readiness would pass, but must wait for startup
        assert cs()["started"] is False and cs()["ready"] is False
        (tmp_path / "pods" / "uid-probes-1" / "started").write_text("")
        await wait_until(lambda: cs().get("started") and cs().get("ready"), 10, what="started and ready")
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()

    port = _free_port()
    pod = _worker_pod(port, lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", "exit 7"]}}})
    agent = _StubAgent(tmp_path / "second", pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    try:
        await wait_until(lambda: any(r == "FailedPostStartHook" for _, r, _ in agent.events), 10,
                         what="FailedPostStartHook")
        await wait_until(lambda: agent.client.statuses and
                         agent.client.statuses[-1]["containerStatuses"][0]["restartCount"] >= 1, 10,
                         what="restarted after the failed hook")
        assert not any("running" in s["containerStatuses"][0]["state"] for s in agent.client.statuses)
        assert all(s["phase"] == "Pending" for s in agent.client.statuses[:1])
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()


async def test_pod_worker_survives_a_status_the_api_did_not_take(tmp_path):
    """An overloaded API (a 500, a timeout) on a status patch must not end the worker: the
    container keeps running and the status is posted again."""
    from sendo.agent.podworker import PodWorker
    from sendo.client import ApiError
    pod = _worker_pod(_free_port())
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    real_patch, failures = agent.client.patch, []

    async def flaky_patch(*a, **kw):
        if len(failures) < 2:
            failures.append(1)
            raise ApiError(500, {"message": "etcdserver: request timed out"} if failures == [1] else "busy")
        return await real_patch(*a, **kw)
    agent.client.patch = flaky_patch
    w = PodWorker(agent, pod, [])
    try:
        await wait_until(lambda: agent.client.statuses and "running" in
                         agent.client.statuses[-1]["containerStatuses"][0]["state"], 15, what="status posted")
        assert len(failures) == 2 and not agent.failed and not w.task.done()
        assert agent.client.statuses[-1]["containerStatuses"][0]["restartCount"] == 0
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()
