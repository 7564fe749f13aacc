"""The scheduler: binds each pending pod to a node that fits it.

The same shape as a controller: pod and node informers feed pod keys into a queue;
workers decide and bind. The decision is synchronous over an incrementally kept
cache (``NodeInfo`` per node, updated one pod at a time from the pod informer), so
it costs a sample of nodes, not the whole cluster. A chosen node is charged for the
pod at once ("assumed"), before the binding's watch event comes back, so a burst of
pods does not pile onto one node; a failed binding gives the charge back. Many
bindings are in flight at once, one per worker.

Pods no node can take get PodScheduled=False/Unschedulable and a FailedScheduling
event, and wait: node changes and freed resources retry them at once, a back-off
timer retries them otherwise.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from ..client import ApiError, Client, kind
from ..client.events import EventRecorder
from ..client.informer import obj_key
from ..controllers.base import Controller, InformerFactory, split_key
from ..kinds.meta import now_rfc3339
from ..kinds.storage import SELECTED_NODE_ANNOTATION
from .plugins import (
    NodeInfo,
    PodInfo,
    Requests,
    fit_error,
    nodes_to_find,
    owner_uid,
    pick,
    pod_requests,
)
from .volumes import ClaimPlan, plan_claims

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SCHEDULER_NAME = "default-scheduler"
BACKOFF_BASE = 1.0  # seconds before an unschedulable pod is tried again with nothing changed
BACKOFF_MAX = 60.0


class _Placement:
    """A pod charged to a node: bound (seen by the informer) or assumed (binding in flight)."""

    __slots__ = ("node", "req", "owner", "assumed")

    def __init__(self, node: str, req: Requests, owner: str | None, assumed: bool):
        self.node, self.req, self.owner, self.assumed = node, req, owner, assumed


def _terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def responsible_for(pod: Obj) -> bool:
    """A pod this scheduler must place: unbound, ours, alive, not gated."""
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and spec.get("schedulerName", SCHEDULER_NAME) in (SCHEDULER_NAME, "", None)
            and not pod["metadata"].get("deletionTimestamp") and not _terminated(pod)
            and not spec.get("schedulingGates"))


class Scheduler(Controller):
    name = SCHEDULER_NAME
    workers = 32  # = bindings in flight

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int | None = None,
                 percentage_of_nodes_to_score: int | None = None, min_nodes_to_score: int = 100):
        if workers:
            self.workers = workers
        self.percentage = percentage_of_nodes_to_score
        self.min_nodes = min_nodes_to_score
        super().__init__(client, informers)

    def setup(self) -> None:
        self.pod_kind, self.node_kind = kind("pods"), kind("nodes")
        self.pod_inf = self.informers.get(self.pod_kind)
        self.node_inf = self.informers.get(self.node_kind)
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[str] = []  # present nodes, in the order the sample walks them
        self._pos: dict[str, int] = {}
        self._start = 0  # where the next sample starts, so every node gets its turn
        self.placed: dict[str, _Placement] = {}  # pod key -> where it is charged
        self.unschedulable: dict[str, int] = {}  # pod key -> failed attempts
        self._reported: dict[str, str] = {}  # pod key -> last FailedScheduling message sent
        self.recorder = EventRecorder(self.client, SCHEDULER_NAME)
        # kube-scheduler's metrics; registered by the process that runs the loop
        self.attempts = PromCounter("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the "
                                    "result. 'unschedulable' means a pod could not be scheduled, while 'error' "
                                    "means an internal scheduler problem.", ["result", "profile"], registry=None)
        self.attempt_seconds = Histogram("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt "
                                         "latency in seconds (scheduling algorithm + binding)", ["result", "profile"],
                                         buckets=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                                                  0.512, 1.024, 2.048, 4.096, 8.192, 16.384), registry=None)
        self.node_inf.add_handler(self._on_node)
        self.pod_inf.add_handler(self._on_pod)
        # claims, volumes and classes: a pod waiting for one of them is tried again when it changes
        self.pvc_inf = self.informers.get(kind("persistentvolumeclaims"))
        self.pv_inf = self.informers.get(kind("persistentvolumes"))
        self.sc_inf = self.informers.get(kind("storageclasses", "storage.k8s.io"))
        for inf in (self.pvc_inf, self.pv_inf, self.sc_inf):
            inf.add_handler(lambda t, o, old: self._wake() if t != "DELETED" else None)

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    # ------------------------------------------------------------- cache upkeep
    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if typ == "DELETED":
            ni = self.nodes.get(name)
            if ni is not None:
                ni.clear_node()
                self._drop_order(name)
                if ni.pods == 0:
                    del self.nodes[name]
            return
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
        changed = ni.set_node(node)
        if name not in self._pos:
            self._pos[name] = len(self._order)
            self._order.append(name)
        if changed:
            self._wake()

    def _drop_order(self, name: str) -> None:
        i = self._pos.pop(name, None)
        if i is None:
            return
        last = self._order.pop()
        if last != name:
            self._order[i] = last
            self._pos[last] = i

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        key = obj_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if typ == "DELETED" or (node and _terminated(pod)):
            if typ == "DELETED":
                self.unschedulable.pop(key, None)
                self._reported.pop(key, None)
            if self._unaccount(key):
                self._wake()  # resources came free
            return
        p = self.placed.get(key)
        if node:
            self.unschedulable.pop(key, None)
            self._reported.pop(key, None)
            if p is not None and p.node == node:
                p.assumed = False  # our binding, confirmed
            else:
                self._unaccount(key)
                self._account(key, node, pod_requests(pod.get("spec") or {}), owner_uid(pod), assumed=False)
            return
        if p is not None:
            return  # binding in flight; this event predates it
        if not responsible_for(pod):
            return
        if key in self.unschedulable and old is not None and old.get("spec") == pod.get("spec"):
            return  # e.g. our own status write: nothing new to try; wake-ups and back-off retry it
        self.queue.add(key)

    def _account(self, key: str, node: str, req: Requests, owner: str | None, assumed: bool) -> _Placement:
        ni = self.nodes.get(node)
        if ni is None:
            ni = self.nodes[node] = NodeInfo(node)
        ni.add(req, owner)
        p = self.placed[key] = _Placement(node, req, owner, assumed)
        return p

    def _unaccount(self, key: str, only: _Placement | None = None) -> bool:
        p = self.placed.get(key)
        if p is None or (only is not None and p is not only):
            return False
        del self.placed[key]
        ni = self.nodes.get(p.node)
        if ni is not None:
            ni.remove(p.req, p.owner)
            if not ni.present and ni.pods == 0:
                del self.nodes[p.node]
        return True

    def _wake(self) -> None:
        """Something changed that may let waiting pods fit: try them all now."""
        for key in list(self.unschedulable):
            self.queue.add(key)

    # ------------------------------------------------------------- decide
    def find_node(self, pod: PodInfo, claims: ClaimPlan | None = None) -> tuple[NodeInfo | None, Counter]:
        """Filter a rotating sample of nodes until enough fit, then score those."""
        order, nodes = self._order, self.nodes
        total = len(order)
        reasons: Counter = Counter()
        if not total:
            return None, reasons
        want = nodes_to_find(total, self.percentage, self.min_nodes)
        start = self._start % total
        feasible: list[NodeInfo] = []
        seen = 0
        while seen < total:
            ni = nodes[order[(start + seen) % total]]
            seen += 1
            why = ni.misfit(pod)
            if not why and claims is not None and (conflict := claims.misfit(ni)):
                why = (conflict,)
            if not why:
                feasible.append(ni)
                if len(feasible) >= want:
                    break
            else:
                for r in why:
                    reasons[r] += 1
        self._start = (start + seen) % total
        if not feasible:
            return None, reasons
        return pick(feasible, pod), reasons

    def collectors(self) -> list[Any]:
        return [self.attempts, self.attempt_seconds]

    async def reconcile(self, key: str) -> float | None:
        """One scheduling attempt, counted by result in scheduler_schedule_attempts_total."""
        t0 = time.perf_counter()
        result = "error"
        try:
            again, result = await self._attempt(key)
            return again
        finally:
            if result:
                self.attempts.labels(result, "default-scheduler").inc()
                self.attempt_seconds.labels(result, "default-scheduler").observe(time.perf_counter() - t0)

    async def _attempt(self, key: str) -> tuple[float | None, str]:
        """(re-check after, result: scheduled | unschedulable | error | "" when there was nothing to do)"""
        pod = self.pod_inf.get(key)
        if pod is None or not responsible_for(pod):
            self.unschedulable.pop(key, None)
            return None, ""
        if key in self.placed:
            return None, ""  # bound or binding; the informer has not caught up yet
        info = PodInfo(pod)
        claims = plan_claims(pod, lambda ns, n: self.pvc_inf.get(f"{ns}/{n}"), self.pv_inf.get, self.sc_inf.get)
        if claims is not None and claims.error:
            return await self._unschedulable(key, pod, f"0/{len(self._order)} nodes are available: "
                                                       f"{claims.error}.")
        node, reasons = self.find_node(info, claims)  # no await between deciding and assuming
        if node is None:
            return await self._unschedulable(key, pod, fit_error(len(self._order), reasons)), "unschedulable"
        placement = self._account(key, node.name, info.req, info.owner, assumed=True)
        ns, name = split_key(key)
        try:
            for claim_ns, claim in (claims.to_select if claims else []):  # the provisioner makes them there
                await self.client.patch(self.pvc_inf.r, claim_ns, claim,
                                        {"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node.name}}})
            await self.client.bind(ns, name, node.name)
        except ApiError as e:
            self._unaccount(key, only=placement)
            if e.status == 404:
                return None, "error"  # the pod is gone
            if e.status == 409:
                return 1.0, "error"  # bound elsewhere, being deleted, or contended: look again shortly
            raise
        except BaseException:
            self._unaccount(key, only=placement)
            raise
        self.unschedulable.pop(key, None)
        self._reported.pop(key, None)
        self._event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node.name}")
        return None, "scheduled"

    # ------------------------------------------------------------- failure
    async def _unschedulable(self, key: str, pod: Obj, message: str) -> float:
        attempts = self.unschedulable.get(key, 0)
        self.unschedulable[key] = attempts + 1
        cond = next((c for c in (pod.get("status") or {}).get("conditions") or []
                     if c.get("type") == "PodScheduled"), None)
        if not (cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
                and cond.get("message") == message):
            since = cond.get("lastTransitionTime") if cond and cond.get("status") == "False" else None
            patch = {"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastProbeTime": None, "lastTransitionTime": since or now_rfc3339()}]}}
            ns, name = split_key(key)
            try:
                await self.client.patch(self.pod_kind, ns, name, patch, type="strategic", sub="status")
            except ApiError as e:
                if e.status != 404:
                    raise
                return BACKOFF_MAX  # gone; its DELETED event cleans up
        if self._reported.get(key) != message:
            self._reported[key] = message
            self._event(pod, "Warning", "FailedScheduling", message)
        return min(BACKOFF_BASE * 2 ** attempts, BACKOFF_MAX)

    def _event(self, pod: Obj, type: str, reason: str, message: str) -> None:
        """Record in the background: a binding must not wait for its event."""
        self.recorder.emit(pod, type, reason, message)
