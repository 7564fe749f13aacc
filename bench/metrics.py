"""What seeing costs: the agent's usage sampling with many pods, and the API server's
per-request instrumentation.

* sampling: N pods of the process runtime's shape (a `sleep` in its own session, as the
  runtime starts containers) sampled by the agent's `UsageSampler` as it runs at its
  cadence; the figure is the CPU time of one sample (thread time, so other load on the
  machine does not count) and what that is as a share of one core at a 15 s cadence;
* per request: what `APIMetrics.request` (counter + histogram, label children cached)
  and the timed store wrapper add to one API call, in microseconds (with the time of an
  empty Python call beside them, to read them on a loaded machine).

    .venv/bin/python -m bench.metrics [--pods 100] [--samples 20]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

from sendo.agent.usage import RunningContainer, UsageSampler
from sendo.api.apimetrics import APIMetrics
from sendo.kinds.registry import builtin_registry


def start_pods(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
            for _ in range(n)]


async def sampling(n_pods: int, samples: int) -> dict:
    procs = start_pods(n_pods)
    try:
        now = time.time()
        running = [RunningContainer("bench", f"pod-{i}", f"uid-{i}", "c", f"run-{i}", p.pid, "proctree", now)
                   for i, p in enumerate(procs)]
        s = UsageSampler("bench-node", lambda: running, interval=15.0)
        await s.sample()  # warm-up (imports, first /proc pass)
        s.sample_seconds, s.samples = 0.0, 0
        for _ in range(samples):
            await s.sample()
        per_sample = s.sample_seconds / s.samples
        t0 = time.thread_time()
        for _ in range(samples):
            s.summary()
        summary = (time.thread_time() - t0) / samples
        n_proc = sum(1 for d in os.listdir("/proc") if d.isdigit())
        assert len(s.usage) == n_pods, f"sampled {len(s.usage)} of {n_pods} containers"
        return {"pods": n_pods, "processes_on_machine": n_proc,
                "sample_cpu_ms": round(per_sample * 1000, 2),
                "summary_cpu_ms": round(summary * 1000, 2),
                "core_share_at_15s_pct": round(per_sample / 15.0 * 100, 3),
                "core_share_at_1s_pct": round(per_sample / 1.0 * 100, 2)}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def per_request(n: int = 200_000) -> dict:
    m = APIMetrics(builtin_registry())
    labels = ("POST", "", "v1", "configmaps", "", "namespace", "apiserver")
    t0 = time.perf_counter()
    for _ in range(n):
        m.inflight["mutating"] += 1
        m.inflight["mutating"] -= 1
        m.request("POST", labels, 201, 0.001)
    req_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        m.store_call("create", "/registry/core/configmaps/default/x", 0.0005)
    store_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        _nothing("POST", labels, 201, 0.001)
    call_us = (time.perf_counter() - t0) / n * 1e6
    return {"request_record_us": round(req_us, 2), "store_call_record_us": round(store_us, 2),
            "empty_call_us": round(call_us, 2)}  # the machine's speed: a Python call doing nothing


def _nothing(*_args) -> None:
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--samples", type=int, default=20)
    a = ap.parse_args()
    figures = {**asyncio.run(sampling(a.pods, a.samples)), **per_request()}
    for k, v in figures.items():
        print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
