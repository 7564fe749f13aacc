"""etcd members on loopback, started and stopped by PID: for tests, benchmarks and a local cluster.

Debian's ``etcd-server`` (``scripts/setup-containers.sh`` installs it) runs one process
per member; each gets free loopback ports and its own directory. ``url`` is the
``--datastore`` URL that names every member.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

from ..serving import free_port
from ..tasks import die_with_parent

ETCD = "etcd"


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalEtcd:
    """``n`` members in ``base_dir``; ``start()`` returns once every member answers /health."""

    base_dir: str
    n: int = 1
    members: list[Member] = field(default_factory=list)
    with_parent: bool = False  # members get SIGTERM when this process dies (a supervisor's children)

    def __post_init__(self):
        if not self.members:
            self.members = [Member(f"m{i}", free_port(), free_port(), os.path.join(self.base_dir, f"m{i}"))
                            for i in range(self.n)]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def start(self, timeout: float = 60.0) -> "LocalEtcd":
        if shutil.which(ETCD) is None:
            raise RuntimeError("etcd is not installed: run scripts/setup-containers.sh (Debian etcd-server)")
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            self.start_member(m, cluster)
        deadline = time.monotonic() + timeout
        for m in self.members:
            self.wait_healthy(m, deadline)
        return self

    def start_member(self, m: Member, cluster: str | None = None) -> None:
        os.makedirs(self.base_dir, exist_ok=True)
        cluster = cluster or ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        log = open(os.path.join(self.base_dir, f"{m.name}.log"), "ab")
        m.proc = subprocess.Popen(
            [ETCD, "--name", m.name, "--data-dir", m.data_dir,
             "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
             "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
             "--initial-cluster", cluster, "--initial-cluster-state", "new",
             "--initial-cluster-token", f"sendo-{os.getpid()}-{id(self)}",
             "--logger", "zap", "--log-level", "error"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent if self.with_parent else None)
        log.close()

    def wait_healthy(self, m: Member, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if not m.running:
                raise RuntimeError(f"etcd member {m.name} exited; see {self.base_dir}/{m.name}.log")
            try:
                with urllib.request.urlopen(m.client_url + "/health", timeout=2) as r:
                    body = r.read()
                if b'"true"' in body:
                    return
                last = body.decode(errors="replace")
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise RuntimeError(f"etcd member {m.name} not healthy in time ({last})")

    def kill(self, m: Member) -> None:
        """kill -9 one member (its data stays: ``start_member`` brings it back)."""
        if m.running:
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait()

    def stop(self) -> None:
        for m in self.members:
            if m.running:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()
