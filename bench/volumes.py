"""ConfigMap write → file updated in a running pod: how long a mounted ConfigMap takes to
change inside the pod after the API took the write (p50, p99, max).

`sendo up` (process runtime) runs one pod that mounts a ConfigMap and watches the file
from inside the pod (a small Python loop polling it every 2 ms, printing each new value
with the time it saw it). The benchmark writes the ConfigMap N times, one value at a
time, and reads the times from the pod's log: latency = time seen in the pod − time the
write was sent. Both clocks are this machine's. Every process is started here and
stopped by PID; all traffic is on loopback.

    python -m bench.volumes [--tiny]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

from bench.harness import percentile, start_server, wait_for
from sendo.client import kind

CM, PODS = kind("configmaps"), kind("pods")
GOAL_P99_MS = 2000
WATCHER = r"""
import os, sys, time
path, last = sys.argv[1], None
while True:
    try:
        with open(path) as f:
            v = f.read()
    except OSError:
        v = None
    if v is not None and v != last:
        last = v
        print(v, repr(time.time()), flush=True)
    time.sleep(0.002)
"""


def log(msg: str) -> None:
    print(f"[bench volumes {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def measure(samples: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="sendo-bench-vol-") as root:
        mount = os.path.join(root, "mnt", "cfg")
        os.makedirs(os.path.join(root, "data"))
        c = start_server(os.path.join(root, "data"), up=True)
        client = c.client()
        try:
            await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "bench", "namespace": "default"}, "data": {"v": "start"}})
            await client.create(PODS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "watcher", "namespace": "default"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "w", "image": "python", "command": [sys.executable, "-u", "-c", WATCHER, f"{mount}/v"],
                    "volumeMounts": [{"name": "cfg", "mountPath": mount}]}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "bench"}}]}})
            seen: dict[str, float] = {}

            async def read_log() -> None:
                text = await client.request("GET", "/api/v1/namespaces/default/pods/watcher/log")
                for line in (text if isinstance(text, str) else "").splitlines():
                    value, _, at = line.rpartition(" ")
                    if value:
                        seen.setdefault(value, float(at))

            async def saw(value: str) -> bool:
                try:
                    await read_log()
                except Exception:  # the pod is not up yet
                    return False
                return value in seen
            await wait_for(lambda: saw("start"), 120, "the watcher pod seeing the ConfigMap")
            latencies = []
            for i in range(samples):  # bounded: one write at a time, each waited for
                value = f"value-{i}"
                sent = time.time()
                await client.patch(CM, "default", "bench", {"data": {"v": value}})
                await wait_for(lambda v=value: saw(v), 30, f"{value} in the pod")
                latencies.append((seen[value] - sent) * 1000)
            return {"configmap_to_pod_file_p50_ms": round(percentile(latencies, 50), 1),
                    "configmap_to_pod_file_p99_ms": round(percentile(latencies, 99), 1),
                    "configmap_to_pod_file_max_ms": round(max(latencies), 1), "samples": samples}
        finally:
            try:
                await client.delete(PODS, "default", "watcher", gracePeriodSeconds=0)
            except Exception:
                pass
            await client.close()
            c.server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="3 samples, to check the harness works")
    ap.add_argument("--samples", type=int, default=100)
    a = ap.parse_args()
    figures = asyncio.run(measure(3 if a.tiny else a.samples))
    print(f"| figure | value | goal |\n| --- | --- | --- |\n"
          f"| configmap_to_pod_file_p99_ms | {figures['configmap_to_pod_file_p99_ms']} | ≤ {GOAL_P99_MS} |\n"
          f"| configmap_to_pod_file_p50_ms | {figures['configmap_to_pod_file_p50_ms']} | |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
