"""Node lifecycle: notice nodes whose agent went silent.

An agent renews the Lease named after its node in ``kube-node-lease`` and posts the
Node's status. When neither has changed for ``grace_seconds``, this controller sets
the node's conditions to Unknown ("Kubelet stopped posting node status."), and
marks the pods there not Ready, so Services stop sending them traffic.

Taints follow the Ready condition: Unknown -> ``node.kubernetes.io/unreachable``, False ->
``node.kubernetes.io/not-ready``, True -> neither; each with effect NoSchedule (as kube's
TaintNodesByCondition: no new pods there) and NoExecute (as its taint-based eviction: the
taint eviction controller, tainteviction.py, deletes the pods there once their toleration
runs out, and their owners replace them on healthy nodes). When the agent is back it sets
Ready itself and the taints go.

The grace period is kube-controller-manager's ``--node-monitor-grace-period`` (40 s),
a flag of `sendo controllers`, `sendo server` and `sendo up`.

As Kubernetes does, NoExecute taints (so evictions) stop when a whole zone looks down
(nodes grouped by ``topology.kubernetes.io/zone``; one zone when unlabelled): with no Ready
node in it (full disruption) the control plane is more likely cut off than every machine
dead, and with more than 2 and at least 55 % of its nodes not Ready in a cluster of at most
50 nodes (partial disruption, where Kubernetes' eviction rate for small clusters is 0).
Then only NoSchedule is kept, and the NoExecute taints come back once the zone is healthy
again. So a lone `sendo up` node whose agent stalls never has its pods evicted.

Silence is measured on this process's clock from the moment a change was seen, not
from timestamps the agent wrote, so clock skew between hosts cannot fake a dead
node, and a restarted controller gives every node a full grace period.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ..client import ApiError, Client, kind
from ..kinds.meta import now_rfc3339
from ..kinds.taints import NOT_READY_TAINT, UNREACHABLE_TAINT
from .base import Controller, InformerFactory
from .podutil import PodsByNode

log = logging.getLogger(__name__)
Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE, NOT_READY = UNREACHABLE_TAINT, NOT_READY_TAINT
CONDITION_TAINTS = {"Unknown": UNREACHABLE, "False": NOT_READY}
EFFECTS = ("NoSchedule", "NoExecute")  # the effects each condition taint is set with
DEFAULT_GRACE_SECONDS = 40.0
ZONE_LABEL = "topology.kubernetes.io/zone"
UNHEALTHY_ZONE_THRESHOLD = 0.55  # kube-controller-manager's --unhealthy-zone-threshold
LARGE_CLUSTER_SIZE = 50  # --large-cluster-size-threshold: below it a partially disrupted zone evicts nothing
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

    def __init__(self, client: Client, informers: InformerFactory, grace_seconds: float = DEFAULT_GRACE_SECONDS):
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
        self._pods_on = PodsByNode()
        self._zones: dict[str, dict[str, bool]] = {}  # zone -> node name -> Ready (as the cache shows it)
        self.node_inf.add_handler(self._on_node)
        self.lease_inf.add_handler(lambda typ, lease, old: self.queue.add(lease["metadata"]["name"]))
        self.pod_inf.add_handler(self._on_pod)

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if typ == "DELETED":
            self._seen.pop(name, None)
        self.queue.add(name)
        if old is not None:
            self._zones.get(_zone(old), {}).pop(name, None)
        zone = self._zones.setdefault(_zone(node), {})
        if typ == "DELETED":
            zone.pop(name, None)
        else:
            zone[name] = ready_status(node) == "True"
        if typ == "DELETED" or old is None or ready_status(old) != ready_status(node):
            # the zone's health changed: its unhealthy nodes may need their NoExecute taint (or not)
            for other, ready in zone.items():
                if not ready:
                    self.queue.add(other)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        self._pods_on.update(typ, pod, old)
        node = (pod.get("spec") or {}).get("nodeName")
        if node and typ != "DELETED":
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

    def evictions_halted(self, name: str, status: str | None) -> bool:
        """Whether the zone of node ``name`` (whose Ready status is ``status``) is disrupted
        (see the module's doc): then its nodes get no NoExecute taints."""
        zone = self._zones.get(_zone(self.node_inf.get(name) or {}), {})
        ready = sum(ok for n, ok in zone.items() if n != name) + (status == "True")
        not_ready = len(zone) + (name not in zone) - ready
        if ready == 0:
            return not_ready > 0
        return (not_ready > 2 and not_ready / (ready + not_ready) >= UNHEALTHY_ZONE_THRESHOLD
                and ready + not_ready <= LARGE_CLUSTER_SIZE)

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
        for key in self._pods_on.keys(node):
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
        """Keep exactly the taints the Ready condition calls for (none when Ready)."""
        key = CONDITION_TAINTS.get(status) if status else None  # a node that never reported: no verdict yet
        want = {(key, effect) for effect in EFFECTS} if key else set()
        if want and self.evictions_halted(name, status):
            want.discard((key, "NoExecute"))
        node = self.node_inf.get(name)
        if node is None or _condition_taints(node) == want:
            return
        for _ in range(MAX_CONFLICT_RETRIES):
            node = await self.client.get_or_none(self.node_kind, None, name)
            if node is None:
                return
            old = (node.get("spec") or {}).get("taints") or []
            taints = [t for t in old if not _is_condition_taint(t) or (t.get("key"), t.get("effect")) in want]
            have = {(t.get("key"), t.get("effect")) for t in taints}
            taints += [{"key": k, "effect": e, "timeAdded": now_rfc3339()}
                       for k, e in sorted(want - have, key=lambda ke: EFFECTS.index(ke[1]))]
            if taints == old:
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


def _zone(node: Obj) -> str:
    return ((node.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL, "")


def _is_condition_taint(t: Obj) -> bool:
    return t.get("key") in CONDITION_TAINTS.values() and t.get("effect") in EFFECTS


def _condition_taints(node: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or [] if _is_condition_taint(t)}
