"""HPA reaction: load start → the HPA's scale-up → the new replica Ready, with Kubernetes'
cadences (usage sampled every 15 s, HPAs synced every 15 s).

`sendo up` (process runtime) runs the README's autoscaling walkthrough: examples/autoscale.yaml
(a web server that spends ~10 ms of CPU per request, requests 100m, HPA at 50 % CPU, 1-4
replicas), then, once the HPA has measured it idle at one replica, examples/autoscale-load.yaml (a pod
sending requests one after another, for ten minutes at most; deleted after each run). Per
run: the seconds from the load pod's create to the Deployment's replicas raised by the HPA,
and to a second replica Ready. Each run starts from fresh objects. Every process is started
here and stopped by PID (`sendo up` stops its pods); all traffic is on loopback.

    python -m bench.hpa [--runs 3] [--tiny]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import percentile, start_server, wait_for
from sendo.client import kind

REPO = Path(__file__).resolve().parents[1]
KUBECTL = Path(sys.executable).parent / "kubectl"
DEPLOY, HPA = kind("deployments", "apps"), kind("horizontalpodautoscalers", "autoscaling", "v2")
GOAL = "— (none set; with 15 s samples and syncs, Kubernetes takes 15-45 s plus a pod start)"


def log(msg: str) -> None:
    print(f"[bench hpa {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kubectl(data_dir: str, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": os.path.join(data_dir, "kubeconfig")}
    return subprocess.run([str(KUBECTL), *args], env=env, cwd=str(REPO), check=True, capture_output=True,
                          text=True, timeout=120).stdout


async def one_run(client, data_dir: str) -> tuple[float, float]:
    kubectl(data_dir, "apply", "-f", "examples/autoscale.yaml")

    async def idle() -> bool:  # measured below target at one replica (a start-up burst is over)
        st = (await client.get(HPA, "default", "busy")).get("status") or {}
        cpu = [m["resource"]["current"].get("averageUtilization") for m in st.get("currentMetrics") or []
               if m.get("type") == "Resource"]
        return bool(cpu) and cpu[0] is not None and cpu[0] < 50 and st.get("desiredReplicas") == 1
    await wait_for(idle, 180, "the HPA measuring busy idle at one replica", interval=0.5)
    start = time.monotonic()
    kubectl(data_dir, "apply", "-f", "examples/autoscale-load.yaml")
    decided = None
    try:
        while True:  # bounded by the deadline below
            d = await client.get(DEPLOY, "default", "busy")
            if decided is None and d["spec"]["replicas"] > 1:
                decided = time.monotonic() - start
            if (d.get("status") or {}).get("readyReplicas", 0) >= 2:
                return decided if decided is not None else time.monotonic() - start, time.monotonic() - start
            if time.monotonic() - start > 300:
                raise TimeoutError("busy was not scaled up within 300 s of the load")
            await asyncio.sleep(0.2)
    finally:
        kubectl(data_dir, "delete", "pod", "load", "--wait=true")
        kubectl(data_dir, "delete", "-f", "examples/autoscale.yaml", "--wait=true")


async def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="sendo-bench-hpa-") as root:
        data_dir = os.path.join(root, "data")
        os.makedirs(data_dir)
        c = start_server(data_dir, up=True, extra=("--metrics-interval", "15", "--hpa-sync-period", "15"))
        client = c.client()
        decisions, readies = [], []
        try:
            for i in range(runs):
                decided, ready = await one_run(client, data_dir)
                log(f"run {i + 1}: scaled up {decided:.1f} s, new replica Ready {ready:.1f} s after the load")
                decisions.append(decided)
                readies.append(ready)
        finally:
            await client.close()
            c.server.stop()
    return {"hpa_load_to_scale_up_p50_s": round(percentile(decisions, 50), 1),
            "hpa_load_to_scale_up_max_s": round(max(decisions), 1),
            "hpa_load_to_replica_ready_p50_s": round(percentile(readies, 50), 1),
            "hpa_load_to_replica_ready_max_s": round(max(readies), 1), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="one run, to check the harness works")
    a = ap.parse_args()
    figures = asyncio.run(measure(1 if a.tiny else a.runs))
    print(f"| figure | value | goal |\n| --- | --- | --- |\n"
          f"| load → replica Ready, median / max | {figures['hpa_load_to_replica_ready_p50_s']} / "
          f"{figures['hpa_load_to_replica_ready_max_s']} s | {GOAL} |\n"
          f"| load → HPA scales up, median / max | {figures['hpa_load_to_scale_up_p50_s']} / "
          f"{figures['hpa_load_to_scale_up_max_s']} s | |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
