"""What one pod of the hollow-node scale run costs, in CPU per process and in requests —
the figures of `pods_10k_on_1k_hollow_nodes_s` that a loaded, shared machine does not blur.

`sendo server` (with its `sendo controllers` child: scheduler and control loops) and
`sendo agent --hollow N` start as in `bench.run --only scale`; after they idle a moment,
D Deployments × R replicas are created (32 requests in flight) and the benchmark waits
until a watch has seen every pod Running, and 2 s more for the writes that follow. It
prints CPU-milliseconds per pod (user + system, psutil) of the server, the controllers
and the hollow agent (their idle CPU over the same time taken off), the benchmark's own
(its one watch and the creates), and API requests and store writes per pod (the
server's /metrics, before and after).

    .venv/bin/python -m bench.scalecpu [--nodes 200] [--deployments 20] [--replicas 100]

With SENDO_PROFILE=<prefix> set, the three processes run under cProfile and the
benchmark asks them (SIGUSR2) to write <prefix>.<pid>.<n>.prof; n = 2 covers the run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

import psutil

from bench.harness import start_hollow, start_server
from bench.podcpu import STORE_WRITES, WRITE_VERBS, controllers_child, counters, cpu, diff, per_pod, profile_mark
from sendo.client import kind

PODS = kind("pods")
DEPLOY = kind("deployments", "apps")
SETTLE_S = 2.0


def log(msg: str) -> None:
    print(f"[scalecpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def pods_running(client, deployments: int, replicas: int) -> float:
    """Create the Deployments; seconds until a watch saw every pod Running."""
    total = deployments * replicas
    running: set[str] = set()
    done = asyncio.Event()

    async def watch():
        async for _, pod in client.watch(PODS, "default", resourceVersion="0"):
            if (pod.get("status") or {}).get("phase") == "Running":
                running.add(pod["metadata"]["name"])
                if len(running) >= total:
                    done.set()
                    return
    w = asyncio.create_task(watch())
    sem = asyncio.Semaphore(32)

    async def create(i: int):
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"d{i}"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": f"d{i}"}},
                         "template": {"metadata": {"labels": {"app": f"d{i}"}},
                                      "spec": {"containers": [{"name": "c", "image": "none", "command": ["x"],
                                                               "resources": {"requests": {"cpu": "10m"}}}]}}}}
        async with sem:
            await client.create(DEPLOY, body, "default")
    t0 = time.monotonic()
    await asyncio.gather(*[create(i) for i in range(deployments)])
    last = (0, time.monotonic())
    while not done.is_set():  # bounded: gives up after 120 s without progress
        try:
            await asyncio.wait_for(done.wait(), 10)
        except asyncio.TimeoutError:
            log(f"  {len(running)}/{total} pods Running after {time.monotonic() - t0:.0f} s")
            if len(running) != last[0]:
                last = (len(running), time.monotonic())
            elif time.monotonic() - last[1] > 120:
                raise TimeoutError(f"stuck at {len(running)}/{total} Running pods")
    w.cancel()
    return time.monotonic() - t0


async def run(nodes: int, deployments: int, replicas: int, idle_s: float) -> dict:
    root = tempfile.mkdtemp(prefix="sendo-scalecpu-")
    c = start_server(root)
    client = c.client()
    hollow = None
    profiling = bool(os.environ.get("SENDO_PROFILE"))
    me = psutil.Process()
    try:
        hollow = start_hollow(c, nodes, root)
        srv = psutil.Process(c.server.pid)
        procs = {"server": srv, "controllers": controllers_child(srv), "hollow": psutil.Process(hollow.pid)}
        await asyncio.sleep(2.0)  # the start-up's tail (first leases, node status)
        t0, c0 = time.monotonic(), {k: cpu(p) for k, p in procs.items()}
        await asyncio.sleep(idle_s)
        t1, c1 = time.monotonic(), {k: cpu(p) for k, p in procs.items()}
        idle = {k: (c1[k] - c0[k]) / (t1 - t0) for k in procs}
        log("idle (% of a core): " + ", ".join(f"{k} {v * 100:.1f}" for k, v in idle.items()))
        a = await counters(client)
        profile_mark(profiling, *procs.values())
        t0, c0, b0 = time.monotonic(), {k: cpu(p) for k, p in procs.items()}, cpu(me)
        took = await pods_running(client, deployments, replicas)
        await asyncio.sleep(SETTLE_S)
        t1, c1, b1 = time.monotonic(), {k: cpu(p) for k, p in procs.items()}, cpu(me)
        profile_mark(profiling, *procs.values())
        b = await counters(client)
        n = deployments * replicas
        span = t1 - t0
        ms = {k: round((c1[k] - c0[k] - idle[k] * span) / n * 1000, 3) for k in procs}
        ms["bench"] = round((b1 - b0) / n * 1000, 3)
        delta = diff(b, a)
        out = {
            "pods": n, "nodes": nodes, "running_after_s": round(took, 2),
            "cpu_ms_per_pod": ms,
            "cpu_ms_per_pod_total_sendo": round(sum(v for k, v in ms.items() if k != "bench"), 3),
            "idle_cpu_pct": {k: round(v * 100, 2) for k, v in idle.items()},
            "rss_mb": {k: round(p.memory_info().rss / 2**20, 1) for k, p in procs.items()},
            "api_writes_per_pod": round(sum(v for k, v in delta.items() if k[0] == "api" and k[1] in WRITE_VERBS) / n, 2),
            "store_writes_per_pod": round(sum(v for k, v in delta.items() if k[0] == "store" and k[1] in STORE_WRITES) / n, 2),
            "api_writes": per_pod(delta, n, "api", WRITE_VERBS),
            "api_reads": per_pod(delta, n, "api", {k[1] for k in delta} - WRITE_VERBS),
            "store_writes": per_pod(delta, n, "store", STORE_WRITES),
            "load_average_start": os.getloadavg()[0],
        }
        log(f"{n} pods Running on {nodes} hollow nodes after {took:.1f} s")
        return out
    finally:
        await client.close()
        if hollow:
            hollow.stop()
        c.server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--deployments", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured before the run")
    a = ap.parse_args()
    out = asyncio.run(run(max(1, min(a.nodes, 5000)), max(1, min(a.deployments, 1000)),
                          max(1, min(a.replicas, 1000)), a.idle))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
