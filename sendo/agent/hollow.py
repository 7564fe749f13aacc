"""Hollow nodes (the kwok idea): many fake nodes from one process, for measuring the
control plane. Each node registers, heartbeats its Lease, and moves the pods bound
to it through the real status transitions without starting any process.

It speaks the same REST API as a real agent; only the runtime is missing.

A pod that may finish (restartPolicy Never or OnFailure) and is annotated
`hollow.sendo.dev/run-seconds` stops after that long with the exit code in
`hollow.sendo.dev/exit-code` (default 0): Succeeded or Failed, as a kubelet reports
it. Jobs put the annotations on their pod template to be measured on hollow nodes.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from typing import Any

import aiohttp

from ..client import ApiError, Client, Informer, kind
from ..client.informer import obj_key
from ..kinds.meta import now_rfc3339
from .lease import RENEW_EVERY, renew_node_lease

log = logging.getLogger(__name__)
Obj = dict[str, Any]
CONCURRENCY = 64  # API requests in flight at once
RUN_SECONDS = "hollow.sendo.dev/run-seconds"
EXIT_CODE = "hollow.sendo.dev/exit-code"
RETRIES, RETRY_DELAY = 10, 0.2  # a status write's attempts (~30 s in all) when the API says the failure is passing


class HollowNodes:
    def __init__(self, server: str, token: str, ca_pem: bytes | None, count: int, prefix: str = "hollow",
                 pod_start_delay: float = 0.0, cpu: str = "32", memory: str = "256Gi", pods: str = "110"):
        self.client = Client(server, token, ca_pem, user_agent="sendo-hollow")
        self.names = [f"{prefix}-{i:04d}" for i in range(count)]
        self.mine = set(self.names)
        self.delay = pod_start_delay
        self.resources = {"cpu": cpu, "memory": memory, "pods": pods}
        self.cidrs: dict[str, ipaddress.IPv4Network] = {}
        self.next_ip: dict[str, int] = {}
        self.uids: dict[str, str] = {}  # node name -> uid, the owner of its Lease
        self.sem = asyncio.Semaphore(CONCURRENCY)
        self.pods: Informer | None = None
        self.handled: set[str] = set()  # pod uids already started
        self._tasks: list[asyncio.Task] = []
        self._inflight: set[asyncio.Task] = set()

    async def _call(self, coro):
        async with self.sem:
            return await coro

    async def start(self) -> None:
        await asyncio.gather(*[retry_transient(lambda n=n: self._register(n)) for n in self.names])
        self.pods = Informer(self.client, kind("pods"))
        self.pods.add_handler(self._on_pod)
        self.pods.start()
        await asyncio.wait_for(self.pods.synced.wait(), 60)
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="hollow-leases"))

    async def stop(self) -> None:
        for t in self._tasks + list(self._inflight):
            t.cancel()
        if self.pods:
            await self.pods.stop()
        await self.client.close()

    # ----------------------------------------------------------------- nodes
    def _status(self, name: str) -> Obj:
        now = now_rfc3339()
        return {"capacity": self.resources, "allocatable": self.resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "hollow node is ready", "lastHeartbeatTime": now,
                                "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.37.0-sendo-hollow", "operatingSystem": "linux",
                             "architecture": "amd64", "containerRuntimeVersion": "hollow://0"}}

    async def _register(self, name: str) -> None:
        nodes = kind("nodes")
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "type": "hollow"}}}
        try:
            node = await self._call(self.client.create(nodes, body))
        except ApiError as e:
            if e.status != 409:
                raise
            node = await self._call(self.client.get(nodes, None, name))
        node = await self._call(self.client.patch(nodes, None, name, {"status": self._status(name)}, sub="status"))
        self.cidrs[name] = ipaddress.ip_network(node["spec"]["podCIDR"])
        self.uids[name] = node["metadata"]["uid"]
        self.next_ip[name] = 2
        await self._renew(name)

    async def _renew(self, name: str) -> None:
        await self._call(renew_node_lease(self.client, name, self.uids[name]))

    async def _heartbeat(self) -> None:
        while True:
            # spread renewals over the period instead of a burst every 10 s
            step = RENEW_EVERY / max(len(self.names), 1)
            for name in self.names:
                t = asyncio.create_task(self._renew_quietly(name))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)
                await asyncio.sleep(step)  # pacing of lease renewals

    async def _renew_quietly(self, name: str) -> None:
        try:
            await self._renew(name)
        except Exception as e:
            log.warning("lease renewal of %s failed: %s", name, e)

    # ----------------------------------------------------------------- pods
    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.mine or typ == "DELETED":
            return
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            self._spawn(self._delete(pod))
        elif uid not in self.handled:
            self.handled.add(uid)
            self._spawn(self._run(pod, node))

    def _spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self._inflight.add(t)
        t.add_done_callback(self._inflight.discard)

    def _ip(self, node: str) -> str:
        net = self.cidrs[node]
        n = self.next_ip[node]
        self.next_ip[node] = 2 + (n - 1) % (net.num_addresses - 3)
        return str(net.network_address + n)

    async def _run(self, pod: Obj, node: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay * random.uniform(0.5, 1.5))  # simulated container start time
        now = now_rfc3339()
        ip = self._ip(node)
        conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                 for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
        statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
                     "restartCount": 0, "state": {"running": {"startedAt": now}},
                     "containerID": f"hollow://{pod['metadata']['uid']}-{c['name']}"}
                    for c in pod["spec"].get("containers") or []]
        status = {"phase": "Running", "conditions": conds, "hostIP": "127.0.0.1", "podIP": ip,
                  "podIPs": [{"ip": ip}], "startTime": now, "containerStatuses": statuses}
        if not await self._patch_status(pod, status):
            return
        run = _finite_run(pod)
        if run is None:
            return
        await asyncio.sleep(run)  # the simulated container's run time
        code = _exit_code(pod)
        end = now_rfc3339()
        for st in statuses:
            st.update(ready=False, started=False, state={"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": now,
                "finishedAt": end}})
        for c in conds:
            if c["type"] in ("Ready", "ContainersReady"):
                c.update(status="False", lastTransitionTime=end, reason="PodCompleted")
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        await self._patch_status(pod, status)

    async def _patch_status(self, pod: Obj, status: Obj) -> bool:
        """Write the pod's status; a failure the API calls passing (an etcd leader change's
        503, a 429, a dropped connection) is retried, as a kubelet's status manager does:
        a pod whose one status write failed would otherwise stay Pending for good."""
        try:
            await retry_transient(lambda: self._call(self.client.patch(
                kind("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": status},
                sub="status")))
            return True
        except ApiError as e:
            if e.status != 404:
                log.warning("hollow pod %s: %s", obj_key(pod), e)
            return False
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("hollow pod %s: %s", obj_key(pod), e)
            return False

    async def _delete(self, pod: Obj) -> None:
        try:
            await self._call(self.client.delete(kind("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"],
                                                gracePeriodSeconds=0,
                                                preconditions={"uid": pod["metadata"]["uid"]}))
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("hollow pod delete %s: %s", obj_key(pod), e)
        self.handled.discard(pod["metadata"]["uid"])


async def retry_transient(call, attempts: int = RETRIES, delay: float = RETRY_DELAY):
    """``await call()``, again after a transient failure (5xx, 429, a connection error),
    at most ``attempts`` times in all, waiting ``delay`` s doubling up to 5 s in between."""
    for attempt in range(attempts):
        try:
            return await call()
        except ApiError as e:
            if (e.status < 500 and e.status != 429) or attempt == attempts - 1:
                raise
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError):
            if attempt == attempts - 1:
                raise
        await asyncio.sleep(min(delay * 2 ** attempt, 5.0))  # back-off between attempts (bounded)


def _finite_run(pod: Obj) -> float | None:
    """How long a pod that may finish runs (its annotation), or None to run until deleted."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if policy == "Always" or (policy == "OnFailure" and _exit_code(pod) != 0):
        return None  # a kubelet would restart it in place: it never finishes here
    raw = (pod["metadata"].get("annotations") or {}).get(RUN_SECONDS)
    try:
        return max(float(raw), 0.0) if raw is not None else None
    except ValueError:
        return None


def _exit_code(pod: Obj) -> int:
    try:
        return int((pod["metadata"].get("annotations") or {}).get(EXIT_CODE, "0"))
    except ValueError:
        return 1
