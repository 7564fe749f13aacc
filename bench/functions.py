"""Functions benchmark: cold start, warm overhead and throughput of a trivial function.

On one `sendo up` (process runtime), a function whose handler returns a small dict:

* fn_cold_start_p50_ms / _p99_ms: from a request sent to the Service of a function with
  no instance (scaled to zero, `scaleToZeroAfterSeconds: 1`) to its answer: the
  activator holds the request, takes a generic worker from the warm pool, gives it the
  function's code and forwards the request. Repeated `cold` times, each after the
  function is back at zero and the pool has a ready worker again.
* fn_warm_overhead_p50_ms: the p50 of a sequential request through the Service (service
  proxy → invoker → handler on a thread) minus the p50 of calling the handler in-process.
* fn_invocations_per_s: `clients` concurrent clients, each sending requests one after
  another through the Service for a bounded count, `maxScale: 2`, `concurrency: 50`.

Usage: python -m bench.functions [--tiny]; prints the figures (JSON last).
Every process is started here and stopped by PID; every request goes to a loopback address.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import tempfile
import time

import aiohttp

from bench.harness import percentile, report, start_server
from sendo.client import kind
from sendo.kinds.function import FUNCTION_RESOURCE
from sendo.serving import free_port

PODS, SERVICES = kind("pods"), kind("services")
FULL = dict(cold=20, warm=300, clients=50, requests=4000)
TINY = dict(cold=2, warm=20, clients=5, requests=100)
GOALS = {"fn_cold_start_p99_ms": ("≤", 100), "fn_warm_overhead_p50_ms": ("≤", 1)}
SOURCE = "def handle(event, context):\n    return {'ok': True}\n"
PORT = free_port("0.0.0.0")  # the Services' port: free here, as other sendos on this machine hand out the same cluster IPs


def log(msg: str) -> None:
    print(f"[bench.functions {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def function(name: str, **spec) -> dict:
    return {"apiVersion": "sendo.dev/v1alpha1", "kind": "Function", "metadata": {"name": name, "namespace": "default"},
            "spec": {"handler": "main.handle", "source": {"inline": SOURCE}, "triggers": [{"http": {"port": PORT}}],
                     **spec}}


async def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = await cond()
        if r:
            return r
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def run(size: dict) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="sendo-bench-fn-") as data_dir:
        c = start_server(data_dir, up=True)
        client = c.client()
        try:
            async with aiohttp.ClientSession(trust_env=False) as http:
                await cold_starts(client, http, size, figures)
                await warm(client, http, size, figures)
        finally:
            await client.close()
            c.server.stop()
    return figures


async def service_url(client, name: str) -> str:
    svc = await wait_for(lambda: client.get_or_none(SERVICES, "default", name), 60, f"service {name}")
    ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip).is_loopback, ip  # network safety: loopback only
    return f"http://{ip}:{PORT}/"


async def pods_of(client, name: str) -> list[dict]:
    return (await client.list(PODS, "default", labelSelector=f"sendo.dev/function={name}"))["items"]


async def cold_starts(client, http: aiohttp.ClientSession, size: dict, figures: dict) -> None:
    await client.create(FUNCTION_RESOURCE, function("cold", minScale=0, scaleToZeroAfterSeconds=1,
                                                    autoscaling={"stableWindowSeconds": 1, "panicWindowSeconds": 1}))
    url = await service_url(client, "cold")
    times: list[float] = []
    attempts = 0
    while len(times) < size["cold"] and attempts < 2 * size["cold"]:  # bounded
        attempts += 1
        seen: dict = {}

        async def at_zero():
            fn = await client.get(FUNCTION_RESOURCE, "default", "cold")
            status = fn.get("status") or {}
            if not status.get("url") or status.get("readyInstances") or status.get("warmWorker") \
                    or await pods_of(client, "cold"):
                return False
            bridges = await client.list(PODS, "kube-system", labelSelector="sendo.dev/function-bridge=default.cold")
            if bridges["items"]:
                return False
            pool = (await client.list(PODS, "kube-system", labelSelector="sendo.dev/function-pool=true"))["items"]
            seen["cold"] = int(status.get("coldStarts") or 0)
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for p in pool for c in (p.get("status") or {}).get("conditions") or [])
        await wait_for(at_zero, 120, "the function at zero", interval=0.2)
        t0 = time.perf_counter()
        async with http.post(url, json={}, timeout=aiohttp.ClientTimeout(total=120)) as r:
            await r.read()
            assert r.status == 200, r.status
        took = (time.perf_counter() - t0) * 1000

        async def counted():
            fn = await client.get(FUNCTION_RESOURCE, "default", "cold")
            return int((fn.get("status") or {}).get("coldStarts") or 0) > seen["cold"]
        try:  # only a request the controller counts as a cold start is one (a stale status may fool at_zero)
            await wait_for(counted, 5, "the cold start counted", interval=0.1)
        except TimeoutError:
            log(f"not a cold start ({took:.0f} ms): left out")
            continue
        times.append(took)
        log(f"cold start {len(times)}/{size['cold']}: {times[-1]:.0f} ms")
    figures["fn_cold_start_p50_ms"] = round(percentile(times, 50), 1)
    figures["fn_cold_start_p99_ms"] = round(percentile(times, 99), 1)
    await client.delete(FUNCTION_RESOURCE, "default", "cold")


async def warm(client, http: aiohttp.ClientSession, size: dict, figures: dict) -> None:
    await client.create(FUNCTION_RESOURCE, function("warm", minScale=1, maxScale=2, concurrency=50))
    url = await service_url(client, "warm")

    async def answered():
        try:
            async with http.post(url, json={}, timeout=aiohttp.ClientTimeout(total=60)) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False
    await wait_for(answered, 120, "the warm function")
    # in-process: the same handler, called the way the invoker calls it (on the loop's thread here)
    ns: dict = {}
    exec(compile(SOURCE, "main.py", "exec"), ns)
    local = []
    for _ in range(size["warm"]):
        t0 = time.perf_counter()
        ns["handle"]({"json": {}}, None)
        local.append((time.perf_counter() - t0) * 1000)
    remote = []
    for _ in range(size["warm"]):
        t0 = time.perf_counter()
        async with http.post(url, json={}) as r:
            await r.read()
        remote.append((time.perf_counter() - t0) * 1000)
    figures["fn_warm_p50_ms"] = round(percentile(remote, 50), 3)
    pod_ip = (await pods_of(client, "warm"))[0]["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip).is_loopback, pod_ip  # network safety: loopback only
    direct = []
    for _ in range(size["warm"]):  # straight to the invoker: the service proxy's share is the difference
        t0 = time.perf_counter()
        async with http.post(f"http://{pod_ip}:8080/", json={}) as r:
            await r.read()
        direct.append((time.perf_counter() - t0) * 1000)
    figures["fn_warm_direct_p50_ms"] = round(percentile(direct, 50), 3)
    figures["fn_warm_overhead_p50_ms"] = round(percentile(remote, 50) - percentile(local, 50), 3)

    count = {"ok": 0, "other": 0}
    per_client = size["requests"] // size["clients"]
    conn = aiohttp.TCPConnector(limit=size["clients"])
    async with aiohttp.ClientSession(connector=conn, trust_env=False) as s:
        async def one_client():
            for _ in range(per_client):  # bounded: requests / clients each
                async with s.post(url, json={}) as r:
                    await r.read()
                    count["ok" if r.status == 200 else "other"] += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(size["clients"])))
        elapsed = time.perf_counter() - t0
    figures["fn_invocations_per_s"] = round(count["ok"] / elapsed, 1)
    figures["fn_invocations_non_200"] = count["other"]
    await client.delete(FUNCTION_RESOURCE, "default", "warm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, to check the harness works")
    a = ap.parse_args()
    figures = asyncio.run(run(TINY if a.tiny else FULL))
    report(figures, GOALS, None if a.tiny else "functions")


if __name__ == "__main__":
    main()
