"""End-to-end harness: a real `sendo up` subprocess driven by clients we did not write.

`cluster` (function scope) starts `python -m sendo.cli.main up` on a tmp data dir and a
free port, waits for its `export KUBECONFIG=` line and hands the test a `Cluster`:

* `kubectl(*args)` runs the real kubectl binary (.venv/bin/kubectl) with the cluster's
  kubeconfig and a HOME of the test's own (kubectl caches discovery under ~/.kube);
* `api()` is a configured official `kubernetes` client;
* `restart()` (SIGTERM, wait, start again on the same data dir), `stop()`, `start()`,
  `crash()` (kill -9, no clean-up);
* `pod_processes()` finds the processes of this cluster's pods: the process runtime
  starts every container in its pod's own directory under the data dir, so a
  process whose working directory is under this test's data dir is one of ours.

Teardown stops sendo by PID (SIGTERM, then SIGKILL after a deadline) and kills, by PID,
every pod process of this test that is still alive, and any child of sendo up left
behind (found by our data dir in its command line). Nothing is killed by name.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psutil

from sendo.server import free_port
from tests.waiting import poll  # noqa: F401  (e2e tests import it from here)

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
START_DEADLINE = 120.0  # 2 s on a quiet machine; over 30 s at a load average of 30
STOP_DEADLINE = 20.0
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
               "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


# ---------------------------------------------------------------------------- HTTP to pods

_no_proxy_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(ip: str, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """GET from a pod. Only loopback addresses are ever contacted (network safety rule)."""
    if not ipaddress.ip_address(ip).is_loopback:
        raise AssertionError(f"refusing to send traffic to non-loopback address {ip!r}")
    with _no_proxy_opener.open(f"http://{ip}:{port}{path}", timeout=timeout) as r:
        return r.status, r.read()


def answers(ip: str, port: int) -> bool:
    try:
        return http_get(ip, port)[0] == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------- the cluster

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS and k != "KUBECONFIG"}
    env.update(extra)
    return env


class Cluster:
    def __init__(self, base: Path, extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None):
        self.base = base
        self.extra_args = tuple(extra_args)  # more `sendo up` options, e.g. ("--runtime", "docker")
        self.extra_env = dict(extra_env or {})  # more environment for `sendo up`, e.g. a short Job back-off
        self.data_dir = base / "data"
        self.home = base / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.data_dir / "kubeconfig"
        self.log_path = base / "sendo.log"
        self.port = free_port()
        self.started_once = False  # a restart keeps its port; only a first start may move to another
        self.start_deadline = START_DEADLINE  # seconds until `export KUBECONFIG=` (more for `--servers 3`)
        self.proc: subprocess.Popen | None = None
        self.stdout_lines: list[str] = []
        self._ready = threading.Event()
        self._clients: list[Any] = []
        self._helpers: list[subprocess.Popen] = []

    # ---- sendo up ------------------------------------------------------------
    def start(self) -> None:
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:  # free_port() is a probe: another test may bind the port before sendo does
                if self.started_once or attempt == 2:
                    raise
                self.port = free_port()

    def _start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "sendo is already running"
        self.stdout_lines = []
        self._ready = threading.Event()
        log = open(self.log_path, "ab")
        log.write(f"\n===== sendo up (port {self.port}) =====\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sendo.cli.main", "up", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=str(REPO),
                env=_env(HOME=str(self.home), COLUMNS="200", **self.extra_env))
        finally:
            log.close()
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + self.start_deadline
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None:
                tail = self.log_tail()
                error = PortTaken if f"cannot listen on 127.0.0.1:{self.port}: Address already in use" in tail \
                    else AssertionError
                raise error(f"sendo up exited with {self.proc.returncode} before it was ready:\n" + tail)
            if time.monotonic() > deadline:
                raise AssertionError(f"sendo up printed no `export KUBECONFIG=` line in {self.start_deadline}s:\n"
                                     + self.log_tail())
        line = next(l for l in self.stdout_lines if l.startswith("export KUBECONFIG="))
        assert Path(line.split("=", 1)[1]) == self.kubeconfig, line
        self.started_once = True

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:  # drained until sendo exits, so the pipe never fills up
            line = raw.decode(errors="replace").rstrip("\n")
            self.stdout_lines.append(line)
            if line.startswith("export KUBECONFIG="):
                self._ready.set()
        proc.stdout.close()

    def stop(self, deadline: float = STOP_DEADLINE) -> int | None:
        """SIGTERM sendo (by PID) and wait; SIGKILL if it does not stop in time."""
        p = self.proc
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(deadline)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGUSR1)  # what each task waits for, into the log: why it did not stop
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                pass
            p.kill()
            p.wait(10)
            raise AssertionError(f"sendo up did not stop within {deadline}s of SIGTERM:\n" + self.log_tail(200))

    def restart(self) -> None:
        rc = self.stop()
        assert rc == 0, f"sendo up exited with {rc} on SIGTERM:\n" + self.log_tail()
        self.start()

    def crash(self) -> None:
        """kill -9 sendo up: no clean-up; its pod processes keep running."""
        p = self.proc
        assert p is not None and p.poll() is None, "sendo is not running"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # ---- clients ---------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return _env(KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess:
        r = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True,
                           env=self.env(), timeout=timeout, cwd=str(REPO))
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def kubectl_popen(self, *args: str) -> subprocess.Popen:
        """A long-running kubectl (e.g. logs -f); terminated by PID at teardown at the latest."""
        p = subprocess.Popen([str(KUBECTL), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env(), cwd=str(REPO))
        self._helpers.append(p)
        return p

    def api(self):
        """A configured official kubernetes.client.ApiClient for this cluster."""
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        c = client.ApiClient(cfg)
        self._clients.append(c)
        return c

    def kubeconfig_data(self) -> dict:
        import yaml
        return yaml.safe_load(self.kubeconfig.read_text())

    # ---- pod processes -----------------------------------------------------------
    def pod_processes(self, cmdline_contains: str | None = None) -> list[psutil.Process]:
        """Live processes of this cluster's pods (their working dir is under our data dir)."""
        root = str(self.data_dir) + os.sep
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if not p.cwd().startswith(root):
                    continue
                cmd = p.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if p.pid == os.getpid() or (self.proc is not None and p.pid == self.proc.pid):
                continue
            if cmdline_contains is not None and cmdline_contains not in " ".join(cmd):
                continue
            out.append(p)
        return out

    def pod_pid(self, pod_ip: str) -> int:
        """PID of the one process serving on pod_ip (its command has `--bind <podIP>`)."""
        procs = [p for p in self.pod_processes() if _binds(p, pod_ip)]
        assert len(procs) == 1, f"expected one process bound to {pod_ip}, found {[p.pid for p in procs]}"
        return procs[0].pid

    def _cleanup(self) -> None:
        for p in self._helpers:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.kill_pod_processes()

    def control_processes(self) -> list[psutil.Process]:
        """Live processes other than pods that run for this cluster: `sendo up` itself and
        the children it starts (`sendo controllers`); their command lines name our data dir."""
        root = str(self.data_dir)
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if any(a == root or a.startswith(root + os.sep) for a in p.cmdline()):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    def kill_pod_processes(self) -> list[int]:
        """SIGKILL, by PID, every process of this cluster (pods, leftover children of
        sendo up) that is still alive."""
        procs = {p.pid: p for p in self.pod_processes() + self.control_processes()}.values()
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(procs), timeout=5)
        return [p.pid for p in procs]


def _binds(p: psutil.Process, ip: str) -> bool:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return any(a == "--bind" and b == ip for a, b in zip(cmd, cmd[1:]))


# ---------------------------------------------------------------------------- objects

class PortTaken(AssertionError):
    """`sendo up` could not listen on the port the test picked (taken since it was probed)."""


def unique_port() -> int:
    """A port free on every address (bound on 0.0.0.0), so a pod may bind it on its 127.x IP."""
    return free_port("0.0.0.0")


def web_deployment(name: str, port: int, replicas: int = 3, env: dict[str, str] | None = None) -> dict:
    """hello-web (examples/hello-web.yaml) on a port of the test's own, so tests in
    parallel clusters (whose first pod IPs are the same) never collide."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "web", "image": "python:3.11",
                    "command": ["python3", "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            *({"name": k, "value": v} for k, v in (env or {}).items())],
                    "ports": [{"name": "http", "containerPort": port}],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                }]},
            },
        },
    }


def to_yaml(*objs: dict) -> str:
    import yaml
    return yaml.safe_dump_all(list(objs), sort_keys=False)


def is_ready(pod: dict) -> bool:
    st = pod.get("status") or {}
    return (not pod["metadata"].get("deletionTimestamp") and st.get("phase") == "Running"
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []))


def pods(cluster: Cluster, selector: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-l", selector)["items"]


def ready_pods(cluster: Cluster, selector: str, n: int, port: int | None = None) -> list[dict] | None:
    """The pods of selector if there are exactly n, all Running and Ready (and, given a
    port, all answering HTTP on their pod IP); else None (for poll)."""
    items = pods(cluster, selector)
    if len(items) != n or not all(is_ready(p) for p in items):
        return None
    if port is not None and not all(answers(p["status"]["podIP"], port) for p in items):
        return None
    return items


class LineReader:
    """Reads a subprocess's stdout in a thread so a test can wait for a line with a deadline."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self._eof = False
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream) -> None:
        try:
            for raw in stream:
                with self._cv:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._cv.notify_all()
        except (OSError, ValueError):
            pass
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no line containing {text!r} within {timeout}s "
                                         f"(eof={self._eof}); got {self.lines!r}")
                self._cv.wait(left)


@contextlib.contextmanager
def shared_cluster(directory: Path, extra_args: tuple[str, ...] = (),
                   extra_env: dict[str, str] | None = None) -> Iterator["Cluster"]:
    """One `sendo up` for a whole test module (for module-scoped fixtures)."""
    c = Cluster(directory, extra_args, extra_env)
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


class Agent:
    """One more `sendo agent` of this machine joining `cluster` (stopped by PID): `args`
    come after the connection flags; the node token is used unless another token file
    of the server's data dir is named (hollow nodes need the admin token)."""

    def __init__(self, cluster: "Cluster", *args: str, token_file: str = "node-token", log: Path | None = None):
        server_dir = cluster.data_dir / "server"
        out = open(log, "ab") if log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sendo.cli.main", "agent", "--server", f"https://127.0.0.1:{cluster.port}",
                 "--token", (server_dir / token_file).read_text().strip(),
                 "--ca-cert", str(server_dir / "tls" / "ca.crt"), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(REPO))
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
