"""Start and stop sendo processes for benchmarks; measure their memory.

Every process is started here and stopped by its PID. All traffic is on loopback.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil

from sendo.client import Client
from sendo.server import free_port

SENDO = [sys.executable, "-m", "sendo.cli.main"]


def tree_rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and every process they started, in MB."""
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total / 2**20


@dataclass
class Proc:
    popen: subprocess.Popen
    log: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def tree_rss_mb(self) -> float:
        """The process and every process it started (a `sendo server`'s controllers):
        what the component costs as an operator sees it in `ps`."""
        return tree_rss_mb([self.pid])


    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _start(args: list[str], log_path: str, ready_text: str, timeout: float = 120.0) -> Proc:
    """Start a sendo command; wait until ready_text appears on its stdout."""
    log = open(log_path, "wb")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    os.set_blocking(p.stdout.fileno(), True)
    buf = b""
    while ready_text.encode() not in buf:
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            raise RuntimeError(f"{' '.join(args[2:4])} did not become ready; see {log_path}")
        line = p.stdout.readline()
        buf += line
    return Proc(p, log_path)


@dataclass
class Cluster:
    server: Proc
    url: str
    admin_token: str
    node_token: str
    ca_pem: bytes
    data_dir: str

    def client(self) -> Client:
        return Client(self.url, self.admin_token, self.ca_pem, timeout=120)


def start_server(data_dir: str, up: bool = False, extra: tuple[str, ...] = ()) -> Cluster:
    """`sendo server` (or `sendo up`, with an agent) on a free port; ``extra``: more options."""
    port = free_port()
    cmd = "up" if up else "server"
    proc = _start(SENDO + [cmd, "--data-dir", data_dir, "--port", str(port), *extra],
                  os.path.join(data_dir, f"{cmd}.log") if os.path.isdir(data_dir) else f"/tmp/sendo-bench-{cmd}.log",
                  "export KUBECONFIG=")
    sdir = os.path.join(data_dir, "server")
    read = lambda n: open(os.path.join(sdir, n)).read().strip()  # noqa: E731
    ca = open(os.path.join(sdir, "tls", "ca.crt"), "rb").read()
    return Cluster(proc, f"https://127.0.0.1:{port}", read("admin-token"), read("node-token"), ca, data_dir)


def start_hollow(c: Cluster, nodes: int, log_dir: str, delay_ms: float = 0) -> Proc:
    return hollow_agent(c.url, c.admin_token, os.path.join(c.data_dir, "server", "tls", "ca.crt"), nodes,
                        os.path.join(log_dir, "hollow.log"), delay_ms=delay_ms)


def hollow_agent(server: str, token: str, ca_file: str, nodes: int, log_path: str, prefix: str = "hollow",
                 delay_ms: float = 0) -> Proc:
    """`sendo agent --hollow NODES` against ``server`` (a URL or a comma-separated list, the
    first preferred); its nodes are named PREFIX-0000…"""
    # hollow nodes act for many nodes at once: the node token speaks for one node only
    return _start(SENDO + ["agent", "--hollow", str(nodes), "--server", server, "--token", token,
                           "--ca-cert", ca_file, "--node-name", prefix, "--pod-start-delay", str(delay_ms)],
                  log_path, "hollow nodes ready", timeout=600)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


async def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)  # poll interval of a deadline-bounded wait


def report(figures: dict, goals: dict, results_name: str | None) -> None:
    """Print each figure that has a goal, write bench/results/<results_name>.json (unless None),
    then the figures as JSON on the last line."""
    import json
    for k, (op, goal) in goals.items():
        if k in figures:
            print(f"{k}: {figures[k]} (goal {op} {goal})")
    if results_name:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{results_name}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump({"figures": figures}, f, indent=2)
    print(json.dumps({"figures": figures}))
