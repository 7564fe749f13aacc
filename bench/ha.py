"""Leader failover of an HA cluster on one machine (`sendo up --servers 3`'s parts).

    python -m bench.ha [--tiny] [--kills N]

Three etcd members and three `sendo server`s on loopback behind the TCP balancer, started
here with `HACluster` (what `sendo up --servers 3` runs, without the agent). Each round
kill -9s the server whose controllers hold the Lease, and those controllers (nothing is
handed over cleanly), creates a Deployment at once through the balancer, and measures:

* takeover: kill → another server's controllers hold the Lease;
* first action: kill → the new leader's deployment controller made the Deployment's
  ReplicaSet (the loops run again);
* requests failed through the balancer: GETs on a fresh connection every 20 ms from the
  kill until the first action (what one kubectl command a user types meanwhile sees).

Then the killed server is started again and is ready before the next round. At most 5
kills (`--kills`). All traffic stays on loopback; processes are stopped by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time

import aiohttp
import psutil

from bench.harness import percentile
from bench.run import log
from sendo.cli.ha import HACluster, HAOptions
from sendo.client import ApiError, Client, kind
from sendo.pki import client_context

LEASES = kind("leases", "coordination.k8s.io")
PROBE_INTERVAL = 0.02


def deployment(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]}}}}


async def holder(c: Client) -> str:
    try:
        lease = await c.get_or_none(LEASES, "kube-system", "sendo-controller-manager")
    except (ApiError, aiohttp.ClientError, asyncio.TimeoutError):
        return ""
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


async def until(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := await cond():
            return got
        await asyncio.sleep(0.02)  # poll interval while measuring (bounded by the deadline)
    raise RuntimeError(f"no {what} within {timeout}s")


class Prober:
    """GET /api/v1/namespaces/default through the balancer on a fresh connection, every 20 ms."""

    def __init__(self, url: str, token: str, ca: bytes):
        self.url, self.token, self.ca = url, token, ca
        self.ok = self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        conn = aiohttp.TCPConnector(ssl=client_context(self.ca), force_close=True)
        async with aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {self.token}"}) as s:
            while not stop.is_set():
                try:
                    async with s.get(self.url + "/api/v1/namespaces/default",
                                     timeout=aiohttp.ClientTimeout(total=5)) as r:
                        await r.read()
                        if r.status == 200:
                            self.ok += 1
                        else:
                            self.failed += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    self.failed += 1
                await asyncio.sleep(PROBE_INTERVAL)  # the probe's period


async def one_kill(cluster: HACluster, c: Client, ca: bytes, round_no: int) -> dict:
    ident = await until(lambda: holder(c), 60, "Lease holder")
    controllers = psutil.Process(int(ident.split("_")[-2]))
    server_pid = controllers.ppid()
    victim = next(s for s in cluster.servers if s.proc is not None and s.proc.pid == server_pid)
    stop = asyncio.Event()
    prober = Prober(cluster.url, cluster.token("admin-token"), ca)
    probing = asyncio.create_task(prober.run(stop))
    for pid in (controllers.pid, server_pid):
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    name = f"after-kill-{round_no}"
    await until(lambda: _create(c, name), 30, "Deployment created")

    async def taken():
        h = await holder(c)
        return h and h != ident and time.monotonic()
    took = await until(taken, 60, "new Lease holder") - t0

    async def acted():
        rs = await c.list(kind("replicasets", "apps"), "default", labelSelector=f"app={name}")
        return rs["items"] and time.monotonic()
    first = await until(acted, 60, "ReplicaSet from the new leader") - t0
    stop.set()
    await probing
    assert victim.proc is not None
    await victim.proc.wait()
    await cluster._spawn(victim)  # back to three before the next round
    await cluster._wait_ready(victim, ca)
    assert cluster.balancer is not None
    await cluster.balancer.check_all()
    log(f"kill {round_no}: {victim.name} — takeover {took:.2f}s, first action {first:.2f}s, "
        f"requests through the balancer {prober.ok} ok / {prober.failed} failed")
    return {"takeover": took, "first_action": first, "ok": prober.ok, "failed": prober.failed}


async def _create(c: Client, name: str) -> bool:
    try:
        await c.create(kind("deployments", "apps"), deployment(name))
        return True
    except ApiError as e:
        return e.status == 409
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


async def run(kills: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="sendo-bench-ha-") as root:
        cluster = HACluster(root, HAOptions(3, "127.0.0.1", 0, False, None))
        try:
            await cluster.start()
            with open(cluster.ca_file, "rb") as f:
                ca = f.read()
            c = Client(cluster.url, cluster.token("admin-token"), ca, timeout=10)
            try:
                rounds = [await one_kill(cluster, c, ca, i) for i in range(kills)]
            finally:
                await c.close()
        finally:
            await cluster.stop()
    take = [r["takeover"] for r in rounds]
    first = [r["first_action"] for r in rounds]
    return {"kills": kills,
            "takeover_p50_s": round(percentile(take, 50), 2), "takeover_p99_s": round(percentile(take, 99), 2),
            "first_action_p50_s": round(percentile(first, 50), 2),
            "first_action_p99_s": round(percentile(first, 99), 2),
            "balancer_requests_ok": sum(r["ok"] for r in rounds),
            "balancer_requests_failed": sum(r["failed"] for r in rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="one kill, to check the harness works")
    ap.add_argument("--kills", type=int, default=5, help="rounds (at most 5)")
    a = ap.parse_args()
    kills = 1 if a.tiny else max(1, min(a.kills, 5))
    figures = asyncio.run(run(kills))
    print(f"| figure ({kills} kills) | p50 | p99 |\n| --- | --- | --- |")
    print(f"| kill -9 → new Lease holder | {figures['takeover_p50_s']} s | {figures['takeover_p99_s']} s |")
    print(f"| kill -9 → new leader's first action | {figures['first_action_p50_s']} s | "
          f"{figures['first_action_p99_s']} s |")
    print(f"requests through the balancer during failovers: {figures['balancer_requests_ok']} ok, "
          f"{figures['balancer_requests_failed']} failed")
    print(json.dumps(figures), file=sys.stdout if a.tiny else sys.stderr)


if __name__ == "__main__":
    main()
