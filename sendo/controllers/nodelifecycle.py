"""Node lifecycle: notice nodes whose agent went silent.

An agent renews the Lease named after its node in ``kube-node-lease`` and posts the
Node's status. When neither has changed for ``grace_seconds``, this controller sets
the node's conditions to Unknown ("Kubelet stopped posting node status."), and
marks the pods there not Ready, so Services stop sending them traffic.

Taints follow the Ready condition (as kube's TaintNodesByCondition): Unknown ->
``node.kubernetes.io/unreachable:NoSchedule``, False -> ``node.kubernetes.io/not-ready:NoSchedule``,
True -> neither. When the agent is back it sets Ready itself and the taint goes.

Silence is measured on this process's clock from the moment a change was seen, not
from timestamps the agent wrote, so clock skew between hosts cannot fake a dead
node, and a restarted controller gives every node a full grace period.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ..client import ApiError, Client, kind
from ..client.informer import obj_key
from ..kinds.meta import now_rfc3339
from .base import Controller, InformerFactory

log = logging.getLogger(__name__)
Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
CONDITION_TAINTS = {"Unknown": UNREACHABLE, "False": NOT_READY}
MAX_CONFLICT_RETRIES = 5


def ready_status(node: Obj) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def _heartbeat(node: Obj) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("lastHeartbeatTime")
    return None


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, grace_seconds: float = 40.0):
        self.grace = grace_seconds
        super().__init__(client, informers)

    def setup(self) -> None:
        self.node_kind, self.pod_kind = kind("nodes"), kind("pods")
        self.lease_kind = kind("leases", "coordination.k8s.io")
        self.node_inf = self.informers.get(self.node_kind)
        self.lease_inf = self.informers.get(self.lease_kind, LEASE_NAMESPACE)
        self.pod_inf = self.informers.get(self.pod_kind)
        # node -> (last lease renewTime, last Ready heartbeat, when either was seen to change)
        self._seen: dict[str, tuple[Any, Any, float]] = {}
        self._pods_on: dict[str, set[str]] = {}  # node name -> pod keys bound there
        self.node_inf.add_handler(self._on_node)
        self.lease_inf.add_handler(lambda typ, lease, old: self.queue.add(lease["metadata"]["name"]))
        self.pod_inf.add_handler(self._on_pod)

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if typ == "DELETED":
            self._seen.pop(name, None)
        self.queue.add(name)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        key = obj_key(pod)
        before = ((old or {}).get("spec") or {}).get("nodeName")
        node = (pod.get("spec") or {}).get("nodeName")
        if before and (before != node or typ == "DELETED"):
            pods = self._pods_on.get(before)
            if pods is not None:
                pods.discard(key)
                if not pods:
                    del self._pods_on[before]
        if node and typ != "DELETED":
            self._pods_on.setdefault(node, set()).add(key)
            n = self.node_inf.get(node)
            if n is not None and ready_status(n) == "Unknown" and _pod_ready(pod):
                self.queue.add(node)

    def _silence(self, name: str, node: Obj) -> float:
        """Seconds since the agent was last heard from (lease renewed or status posted)."""
        lease = self.lease_inf.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        beat = _heartbeat(node)
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is None or seen[0] != renew or seen[1] != beat:
            self._seen[name] = (renew, beat, now)
            return 0.0
        return now - seen[2]

    async def reconcile(self, name: str) -> float | None:
        node = self.node_inf.get(name)
        if node is None:
            self._seen.pop(name, None)
            return None
        silent = self._silence(name, node)
        status = ready_status(node)
        if silent >= self.grace and status != "Unknown":
            log.info("%s: node %s silent for %.1fs: marking it Unknown", self.name, name, silent)
            await self._mark_unknown(node)
            status = "Unknown"
        if status == "Unknown":
            await self._mark_pods_not_ready(name)
        await self._sync_taints(name, status)
        return max(self.grace - silent, 0.0) + 0.05 if silent < self.grace else None

    async def _mark_unknown(self, node: Obj) -> None:
        now = now_rfc3339()
        conds = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type")]
        if not any(c["type"] == "Ready" for c in conds):
            conds.append({"type": "Ready"})
        patch = []
        for c in conds:
            if c.get("status") == "Unknown":
                continue
            patch.append({"type": c["type"], "status": "Unknown", "reason": "NodeStatusUnknown",
                          "message": "Kubelet stopped posting node status.", "lastTransitionTime": now,
                          "lastHeartbeatTime": c.get("lastHeartbeatTime")})  # unchanged: not a heartbeat
        await self.client.patch(self.node_kind, None, node["metadata"]["name"], {"status": {"conditions": patch}},
                                type="strategic", sub="status")

    async def _mark_pods_not_ready(self, node: str) -> None:
        now = now_rfc3339()
        for key in list(self._pods_on.get(node, ())):
            pod = self.pod_inf.get(key)
            if pod is None or not _pod_ready(pod) or (pod.get("spec") or {}).get("nodeName") != node:
                continue
            patch = {"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}]}}
            try:
                await self.client.patch(self.pod_kind, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                        patch, type="strategic", sub="status")
            except ApiError as e:
                if e.status != 404:
                    raise

    async def _sync_taints(self, name: str, status: str | None) -> None:
        """Keep exactly the taint the Ready condition calls for (none when Ready)."""
        want = CONDITION_TAINTS.get(status) if status else None  # a node that never reported: no verdict yet
        node = self.node_inf.get(name)
        if node is None or _condition_taints(node) == ({want} if want else set()):
            return
        for _ in range(MAX_CONFLICT_RETRIES):
            node = await self.client.get_or_none(self.node_kind, None, name)
            if node is None:
                return
            taints = [t for t in (node.get("spec") or {}).get("taints") or []
                      if not (t.get("key") in CONDITION_TAINTS.values() and t.get("effect") == "NoSchedule")]
            if want:
                taints.append({"key": want, "effect": "NoSchedule", "timeAdded": now_rfc3339()})
            if taints == ((node.get("spec") or {}).get("taints") or []):
                return
            patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                     "spec": {"taints": taints or None}}
            try:
                await self.client.patch(self.node_kind, None, name, patch)
                return
            except ApiError as e:
                if e.status != 409:
                    raise
        raise ApiError(409, {"reason": "Conflict", "message": f"node {name} keeps changing"})


def _pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") != "False"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _condition_taints(node: Obj) -> set[str]:
    return {t.get("key") for t in (node.get("spec") or {}).get("taints") or []
            if t.get("key") in CONDITION_TAINTS.values() and t.get("effect") == "NoSchedule"}
