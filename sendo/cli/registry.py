"""`sendo up --registry [PORT]`: a local OCI image registry beside the cluster.

It is Debian's `docker-registry` (the CNCF distribution registry), installed by
scripts/setup-containers.sh, listening on loopback only, with its images under
DATA_DIR/registry (kept across restarts). Images are pushed with
`podman push --tls-verify=false 127.0.0.1:PORT/name:tag`; the docker runtime pulls
from a registry on loopback over plain HTTP, as Docker does. The registry is a child
of `sendo up`, stopped (by its PID) when the cluster stops.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from ..agent.runtime.engine import stop_child
from ..tasks import die_with_parent

DEFAULT_PORT = 5000
AUTO = "auto"  # `--registry` with no value: port 5000, or the next free one
START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
BINARY = "docker-registry"
IDENTITY_HEADER = "X-Sendo-Registry"


class RegistryError(Exception):
    """The registry cannot run: the message says why and what to do."""


def parse_address(value: str) -> tuple[str, int, bool]:
    """(host, port, whether another port may be taken) from the option's value: `auto`,
    a port, or a loopback `host:port`. Only loopback: the registry has no TLS or auth."""
    if value == AUTO:
        return "127.0.0.1", DEFAULT_PORT, True
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise RegistryError(f"{host} is not a loopback address: the registry listens on loopback only")
    except ValueError:
        if host != "localhost":
            raise RegistryError(f"{value!r}: give a port or 127.0.0.1:PORT") from None
        host = "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RegistryError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port), False


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, port: int, fallback: bool) -> int:
    if _free(host, port):
        return port
    if not fallback:
        raise RegistryError(f"{host}:{port} is taken by another process; give another port: --registry PORT")
    for candidate in range(port + 1, port + 100):
        if _free(host, candidate):
            return candidate
    raise RegistryError(f"no free port from {host}:{port} to {port + 99}; give one: --registry PORT")


class _LostPort(Exception):
    """The registry could not bind its port: another process took it after the probe."""


@dataclass
class LocalRegistry:
    address: str  # host:port
    proc: subprocess.Popen
    root: str
    identity: str = ""

    @classmethod
    def start(cls, data_dir: str, value: str) -> "LocalRegistry":
        """Start the registry and wait (bounded) until it listens; RegistryError if it cannot.
        A port another process took between the probe and the bind moves it to the next
        free one (when no port was given)."""
        binary = shutil.which(BINARY)
        if binary is None:
            raise RegistryError(f"`{BINARY}` is not installed: run scripts/setup-containers.sh as root "
                                f"(it installs the Debian package {BINARY})")
        host, port, fallback = parse_address(value)
        for _attempt in range(5):
            port = _pick_port(host, port, fallback)
            try:
                return cls._start_on(data_dir, binary, host, port)
            except _LostPort:
                if not fallback:
                    raise RegistryError(f"{host}:{port} is taken by another process; give another port: "
                                        "--registry PORT") from None
                port += 1
        raise RegistryError(f"{host}:{port} and the ports below it were taken while {BINARY} started")

    @classmethod
    def _start_on(cls, data_dir: str, binary: str, host: str, port: int) -> "LocalRegistry":
        root = os.path.join(data_dir, "registry")
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        config = os.path.join(root, "config.yml")
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        identity = secrets.token_hex(8)  # answered in a header: the listener found is this one, not another's
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {os.path.join(root, 'data')}\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {listen}\n  headers:\n    {IDENTITY_HEADER}: [{identity}]\n")
        log_path = os.path.join(root, "registry.log")
        with open(log_path, "ab") as log:
            # a new session (Ctrl-C is for sendo, which stops it), ended with sendo even by kill -9
            proc = subprocess.Popen([binary, "serve", config], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, preexec_fn=die_with_parent)
        reg = cls(listen, proc, root, identity)
        deadline = time.monotonic() + START_DEADLINE
        while not reg.listening():
            if proc.poll() is not None or time.monotonic() > deadline:
                reg.stop()
                with open(log_path, "rb") as f:
                    tail = f.read()[-600:].decode(errors="replace")
                if "address already in use" in tail.lower():
                    raise _LostPort()
                raise RegistryError(f"{BINARY} did not start listening on {listen} (see {log_path}):\n{tail}")
            time.sleep(0.05)  # poll interval of a deadline-bounded wait for the listener
        return reg

    def listening(self) -> bool:
        """Whether this registry (its identity header, not another process on the port) answers."""
        host, _, port = self.address.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=1)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().getheader(IDENTITY_HEADER) == self.identity
        except OSError:
            return False
        finally:
            conn.close()

    def describe(self) -> str:
        """The lines for the "what next" text: where it is, how to push, how to use it."""
        a = self.address
        return (f"Image registry at {a} (images in {os.path.join(self.root, 'data')}):\n"
                f"  podman build -t {a}/hello:1 . && podman push --tls-verify=false {a}/hello:1\n"
                f"  then `image: {a}/hello:1` in a pod (runtime docker, or runtimeClassName: docker)")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not exit in time."""
        stop_child(self.proc, STOP_DEADLINE)
