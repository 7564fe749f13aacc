"""What one pod costs on `sendo up`, in CPU and in writes — figures that a loaded,
shared machine does not blur the way it blurs wall-clock times.

`sendo up` (process runtime) starts on a fresh data dir; after it has idled a moment,
N bare pods (`sleep`) are created (at most 20 requests in flight) and the benchmark
waits until a watch has seen every one Running, and 2 s more for the writes that follow; the pods are
deleted (not measured) and the burst repeats (a node holds 110 pods). It prints:

* CPU-seconds per pod (user + system, psutil) of the `sendo up` process (API server +
  agent) and of its `sendo controllers` child (scheduler + controllers), with the CPU
  the two spend idle over the same time (measured before the burst) taken off;
* API requests per pod by verb and resource (the server's own
  `apiserver_request_total` at /metrics, before and after; the benchmark's own create
  calls and watch included, its /metrics reads not) — the writes among them — and
  store writes per pod by operation and type (`etcd_request_duration_seconds_count`).

    .venv/bin/python -m bench.podcpu [--pods 100] [--rounds 5]

With SENDO_PROFILE=<prefix> set, both processes run under cProfile and the benchmark
asks them (SIGUSR2) to write <prefix>.<pid>.<n>.prof; even n cover the bursts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time

import psutil

from bench.harness import start_server, wait_for
from sendo.client import kind

PODS = kind("pods")
LINE = re.compile(r'^(apiserver_request_total|etcd_request_duration_seconds_count)\{(.*)\} ([0-9.e+]+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE", "APPLY"}
STORE_WRITES = {"create", "update", "delete"}
SETTLE_S = 2.0


def log(msg: str) -> None:
    print(f"[podcpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def counters(client) -> dict[tuple, float]:
    """(metric, labels…) → value of the request and store-call counters at /metrics."""
    text = await client.request("GET", "/metrics")
    out: dict[tuple, float] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2)))
        if m.group(1) == "apiserver_request_total":
            res = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            key = ("api", labels["verb"], res)
        else:
            key = ("store", labels["operation"], labels["type"])
        out[key] = out.get(key, 0) + float(m.group(3))
    return out


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def controllers_child(up: psutil.Process) -> psutil.Process:
    for c in up.children():
        try:
            if "controllers" in c.cmdline():
                return c
        except psutil.NoSuchProcess:
            pass
    raise RuntimeError("no `sendo controllers` child of sendo up")


def profile_mark(profiling: bool, *procs: psutil.Process) -> None:
    """Under SENDO_PROFILE each process writes its profile so far and starts a new one: the
    even-numbered files (2, 4, …) cover the bursts, the odd ones start-up and deletions."""
    if profiling:
        for p in procs:
            p.send_signal(signal.SIGUSR2)


def diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


async def burst(client, n: int, r: int) -> float:
    """Create n pods, at most 20 requests at once; seconds until a watch saw all Running."""
    running: set[str] = set()

    async def watch():
        async for _, pod in client.watch(PODS, "default", labelSelector="bench=podcpu", resourceVersion="0"):
            if (pod.get("status") or {}).get("phase") == "Running":
                running.add(pod["metadata"]["name"])
                if len(running) == n:
                    return
    w = asyncio.create_task(watch())
    gate = asyncio.Semaphore(20)

    async def create(i: int):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{r}-{i}", "labels": {"bench": "podcpu"}},
                "spec": {"containers": [{"name": "c", "image": "none", "command": ["sleep", "3600"]}],
                         "terminationGracePeriodSeconds": 1}}
        async with gate:
            await client.create(PODS, body, "default")
    t0 = time.monotonic()
    await asyncio.gather(*[create(i) for i in range(n)])
    await asyncio.wait_for(w, 60 + n)  # bounded: generous on a loaded machine
    return time.monotonic() - t0


def per_pod(d: dict, n: int, kind_: str, verbs: set[str] | None = None) -> dict[str, float]:
    rows = {f"{k[1]} {k[2]}": round(v / n, 2) for k, v in sorted(d.items()) if k[0] == kind_
            and (verbs is None or k[1] in verbs)}
    return {k: v for k, v in rows.items() if v >= 0.01}


async def run(n: int, rounds: int, idle_s: float) -> dict:
    root = tempfile.mkdtemp(prefix="sendo-podcpu-")
    d = os.path.join(root, "up")
    os.makedirs(d)
    c = start_server(d, up=True)
    client = c.client()
    profiling = bool(os.environ.get("SENDO_PROFILE"))
    try:
        up = psutil.Process(c.server.pid)
        ctl = controllers_child(up)
        await asyncio.sleep(2.0)  # the start-up's own tail (first leases, node status)
        i0 = (time.monotonic(), cpu(up), cpu(ctl))
        await asyncio.sleep(idle_s)
        i1 = (time.monotonic(), cpu(up), cpu(ctl))
        idle_up, idle_ctl = ((i1[k] - i0[k]) / (i1[0] - i0[0]) for k in (1, 2))
        log(f"idle: up {idle_up * 100:.1f} % of a core, controllers {idle_ctl * 100:.1f} %")
        m1: dict[tuple, float] = {}
        span = up_s = ctl_s = 0.0
        for r in range(rounds):  # a node holds 110 pods: bursts of n, each cleared before the next
            a = await counters(client)
            profile_mark(profiling, up, ctl)
            t0, up0, ctl0 = time.monotonic(), cpu(up), cpu(ctl)
            seconds = await burst(client, n, r)
            log(f"round {r + 1}: {n} pods Running after {seconds:.1f} s")
            await asyncio.sleep(SETTLE_S)  # the writes that follow Running (events); /metrics is not read
            # inside the measured span: a scrape costs the server more than a pod
            t1, up1, ctl1 = time.monotonic(), cpu(up), cpu(ctl)
            profile_mark(profiling, up, ctl)
            b = await counters(client)
            span, up_s, ctl_s = span + t1 - t0, up_s + up1 - up0, ctl_s + ctl1 - ctl0
            for k, v in diff(b, a).items():
                m1[k] = m1.get(k, 0) + v
            await clear(client)
        n *= rounds
        delta = m1
        writes = sum(v for k, v in delta.items() if k[0] == "api" and k[1] in WRITE_VERBS)
        store_writes = sum(v for k, v in delta.items() if k[0] == "store" and k[1] in STORE_WRITES)
        return {
            "pods": n,
            "up_cpu_ms_per_pod": round((up_s - idle_up * span) / n * 1000, 2),
            "controllers_cpu_ms_per_pod": round((ctl_s - idle_ctl * span) / n * 1000, 2),
            "up_cpu_ms_per_pod_raw": round(up_s / n * 1000, 2),
            "controllers_cpu_ms_per_pod_raw": round(ctl_s / n * 1000, 2),
            "idle_cpu_pct": {"up": round(idle_up * 100, 2), "controllers": round(idle_ctl * 100, 2)},
            "api_writes_per_pod": round(writes / n, 2),
            "store_writes_per_pod": round(store_writes / n, 2),
            "api_writes": per_pod(delta, n, "api", WRITE_VERBS),
            "api_reads": per_pod(delta, n, "api", {k[1] for k in delta} - WRITE_VERBS),
            "store_writes": per_pod(delta, n, "store", STORE_WRITES),
            "measured_s": round(span, 1),
        }
    finally:
        try:
            await clear(client)
        except Exception as e:  # the cluster stops below either way
            log(f"cleanup: {e!r}")
        await client.close()
        c.server.stop()


async def clear(client) -> None:
    await client.request("DELETE", "/api/v1/namespaces/default/pods", params={"labelSelector": "bench=podcpu"})
    await wait_for(lambda: _none_left(client), 120, "pods to go")


async def _none_left(client) -> bool:
    return not (await client.list(PODS, "default", labelSelector="bench=podcpu"))["items"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=100, help="pods per burst (a node holds 110)")
    ap.add_argument("--rounds", type=int, default=5, help="bursts, each cleared before the next")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured before the burst")
    a = ap.parse_args()
    out = asyncio.run(run(max(1, min(a.pods, 100)), max(1, min(a.rounds, 50)), a.idle))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
