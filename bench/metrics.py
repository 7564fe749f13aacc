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


def start_pods(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
            for _ in range(n)]


async def sampling(n_pods: int, samples: int) -> dict:
    from sendo.agent.usage import RunningContainer, UsageSampler
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
    from sendo.api.apimetrics import APIMetrics
    from sendo.kinds.registry import builtin_registry
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


async def api_writes(n: int, writers: int = 32) -> dict:
    """ConfigMap creates through the API server's ASGI entry in this process (no TLS, no
    sockets: what is left is the request path itself, instrumentation included); the
    CPU time per write is the figure that load on the machine does not change much."""
    import tempfile

    import orjson

    from sendo.api.app import APIServer, User
    from sendo.kinds.registry import builtin_registry
    from sendo.store import default_url, open_store
    with tempfile.TemporaryDirectory(prefix="sendo-bench-api-") as d:
        store = open_store(default_url(os.path.join(d, "state.db")))
        await store.start()
        registry = builtin_registry()
        api = APIServer(store, registry, {"t": User("admin", ["system:masters"])})
        await api.api.create(registry.get("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})
        headers = [(b"authorization", b"Bearer t"), (b"content-type", b"application/json")]
        codes: dict[int, int] = {}

        async def one(i: int) -> None:
            body = orjson.dumps({"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
            scope = {"type": "http", "method": "POST", "path": "/api/v1/namespaces/default/configmaps",
                     "query_string": b"", "headers": headers}
            sent = False

            async def receive():
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                if message["type"] == "http.response.start":
                    codes[message["status"]] = codes.get(message["status"], 0) + 1
            await api.asgi(scope, receive, send)

        async def writer(k: int) -> None:
            for i in range(k, n, writers):
                await one(i)
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(writer(k) for k in range(writers)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        await store.close()
    assert codes == {201: n}, codes
    return {"api_writes": n, "api_writes_per_s": round(n / wall), "api_cpu_us_per_write": round(cpu / n * 1e6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--writes", type=int, default=5000)
    ap.add_argument("--api-only", action="store_true", help="only the in-process API write figure (to compare "
                    "two trees: PYTHONPATH=<tree> python bench/metrics.py --api-only)")
    a = ap.parse_args()
    if a.api_only:
        figures = asyncio.run(api_writes(a.writes))
    else:
        figures = {**asyncio.run(sampling(a.pods, a.samples)), **per_request(), **asyncio.run(api_writes(a.writes))}
    for k, v in figures.items():
        print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
