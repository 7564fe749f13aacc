"""Node loss: seconds from kill -9 of an agent to all of its replicas Running elsewhere.

`sendo up` (node-a) and a second `sendo agent` (node-b) on this machine, both with the
process runtime; a Deployment of REPLICAS `sleep` pods spread on both. Each round kills
node-b's agent by PID with SIGKILL and measures, from that moment:

* ``unknown_s``: node-b seen Ready=Unknown (grace period + the controller's reaction);
* ``replaced_s``: every replica Ready again, none on node-b (+ toleration, eviction,
  ReplicaSet, scheduler, pod start on node-a).

Run with short flags (grace 5 s, toleration 2 s, node lease 2 s): the figure minus
grace + toleration is what sendo adds. With Kubernetes' defaults (40 s grace, 300 s
toleration, 40 s lease) the same path takes about 340 s plus that overhead; that run
is not part of the suite.

`python -m bench.nodeloss [--rounds N] [--replicas N] [--tiny]` prints a JSON line of
figures. Every process is started here and stopped by PID; traffic stays on loopback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from bench.harness import SENDO, Cluster, start_server, wait_for
from sendo.client import kind

PODS, DEPLOY, NODES = kind("pods"), kind("deployments", "apps"), kind("nodes")
GRACE, TOLERATION, LEASE = 5, 2, 2
FLAGS = ("--node-monitor-grace-period", f"{GRACE}s", "--default-unreachable-toleration-seconds", str(TOLERATION),
         "--default-not-ready-toleration-seconds", str(TOLERATION), "--node-lease-duration-seconds", str(LEASE))


def log(msg: str) -> None:
    print(f"[nodeloss {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_agent(c: Cluster, name: str, data_dir: str) -> subprocess.Popen:
    logf = open(os.path.join(data_dir, f"{name}.log"), "ab")
    try:
        return subprocess.Popen(
            SENDO + ["agent", "--server", c.url, "--ca-cert", os.path.join(c.data_dir, "server", "tls", "ca.crt"),
                     "--node-name", name, "--data-dir", os.path.join(data_dir, name), "--no-ingress",
                     "--no-service-proxy", "--stop-pods", "--node-lease-duration-seconds", str(LEASE)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env={**os.environ, "SENDO_TOKEN": c.node_token})
    finally:
        logf.close()


def deployment(replicas: int) -> dict:
    labels = {"app": "lossy"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "lossy"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                         "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                         "resources": {"requests": {"cpu": "10m"}}}]}}}}


def _ready(p: dict) -> bool:
    return (not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") == "Running"
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or []))


async def _pods(client) -> list[dict]:
    return (await client.list(PODS, "default", labelSelector="app=lossy"))["items"]


async def _node_ready(client, name: str) -> str | None:
    node = await client.get_or_none(NODES, None, name)
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


async def one_round(c: Cluster, client, root: str, replicas: int) -> dict:
    agent = start_agent(c, "node-b", root)
    try:
        await wait_for(lambda: _is(client, "node-b", "True"), 60, "node-b Ready", interval=0.1)
        await client.create(DEPLOY, deployment(replicas), "default")

        async def spread():
            items = [p for p in await _pods(client) if _ready(p)]
            return len(items) == replicas and {p["spec"]["nodeName"] for p in items} == {"node-a", "node-b"}
        await wait_for(spread, 120, "replicas Ready on both nodes", interval=0.1)
        on_b = sum(p["spec"]["nodeName"] == "node-b" for p in await _pods(client))
        os.kill(agent.pid, signal.SIGKILL)
        t0 = time.monotonic()
        agent.wait(10)
        await wait_for(lambda: _is(client, "node-b", "Unknown"), 120, "node-b Unknown", interval=0.05)
        unknown = time.monotonic() - t0

        async def replaced():
            items = [p for p in await _pods(client) if not p["metadata"].get("deletionTimestamp")]
            return len(items) == replicas and all(_ready(p) and p["spec"]["nodeName"] == "node-a" for p in items)
        await wait_for(replaced, 600, "replicas Ready on node-a", interval=0.05)
        out = {"unknown_s": unknown, "replaced_s": time.monotonic() - t0, "moved": on_b}
        log(f"round: {on_b} replicas moved; Unknown after {unknown:.2f}s, all Ready on node-a after "
            f"{out['replaced_s']:.2f}s")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    # the agent comes back (it stops its stale pods), then goes cleanly, stopping its pods
    agent = start_agent(c, "node-b", root)
    try:
        await wait_for(lambda: _is(client, "node-b", "True"), 60, "node-b Ready again", interval=0.1)
        await client.delete(DEPLOY, "default", "lossy", propagationPolicy="Foreground")
        await wait_for(_no_pods(client), 120, "pods gone", interval=0.1)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
    return out


async def _is(client, node: str, status: str) -> bool:
    return await _node_ready(client, node) == status


def _no_pods(client):
    async def check():
        return not await _pods(client) and await client.get_or_none(DEPLOY, "default", "lossy") is None
    return check


def _kill_leftovers(root: str) -> None:
    """Pod processes still alive under our data dir (a failed round), by PID."""
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.cwd().startswith(root + os.sep):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


async def run(rounds: int, replicas: int) -> dict:
    root = tempfile.mkdtemp(prefix="sendo-bench-nodeloss-")
    d = os.path.join(root, "up")
    os.makedirs(d)
    c = start_server(d, up=True, extra=("--node-name", "node-a", "--no-ingress", *FLAGS))
    client = c.client()
    results = []
    try:
        for _ in range(rounds):
            results.append(await one_round(c, client, root, replicas))
    finally:
        await client.close()
        c.server.stop()
        _kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
    med = {k: round(statistics.median(r[k] for r in results), 2) for k in ("unknown_s", "replaced_s")}
    return {"nodeloss_kill_to_unknown_s": med["unknown_s"], "nodeloss_kill_to_replaced_s": med["replaced_s"],
            "nodeloss_overhead_s": round(med["replaced_s"] - GRACE - TOLERATION, 2),
            "nodeloss_max_replaced_s": round(max(r["replaced_s"] for r in results), 2),
            "nodeloss_rounds": rounds, "nodeloss_replicas": replicas,
            "nodeloss_flags": {"grace_s": GRACE, "toleration_s": TOLERATION, "lease_s": LEASE},
            "nodeloss_kubernetes_defaults_estimate_s": round(40 + 300 + med["replaced_s"] - GRACE - TOLERATION, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--tiny", action="store_true", help="one round of 2 replicas (the harness only)")
    a = ap.parse_args()
    rounds, replicas = (1, 2) if a.tiny else (max(1, min(a.rounds, 50)), max(2, min(a.replicas, 100)))
    print(json.dumps(asyncio.run(run(rounds, replicas))), flush=True)


if __name__ == "__main__":
    main()
