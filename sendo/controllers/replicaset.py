"""ReplicaSet controller: keep exactly spec.replicas active pods from the template.

Pods it creates carry a controller ownerReference to the ReplicaSet. Creations and
deletions in flight are remembered ("expectations") until the pod informer sees
them, so a reconcile that runs before the watch catches up does not act twice.
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from typing import Any

from ..client import ApiError, kind
from ..client.events import EventRecorder
from .base import Controller, owner_key, split_key
from .podutil import (
    count_available,
    OwnerIndex,
    controller_ref,
    is_active,
    is_ready,
    restarts,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
EXPECTATION_TTL = 30.0
BURST = 100  # pods created or deleted concurrently per reconcile


class _Expectations:
    """Pod names we created or deleted but the informer has not shown yet."""

    def __init__(self):
        self.adds: dict[str, float] = {}
        self.dels: dict[str, float] = {}

    def prune(self, present: set[str]) -> None:
        now = time.monotonic()
        self.adds = {n: t for n, t in self.adds.items() if n not in present and now - t < EXPECTATION_TTL}
        self.dels = {n: t for n, t in self.dels.items() if n in present and now - t < EXPECTATION_TTL}


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 4
    resource = ("replicasets", "apps")  # what it reconciles: a subclass names another kind
    owner_kind = "ReplicaSet"

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.rs_kind = kind(*self.resource)
        self.pod_kind = kind("pods")
        self.rs_inf = self.informers.get(self.rs_kind)
        self.pod_inf = self.informers.get(self.pod_kind)
        self.rs_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.pod_inf.add_handler(self._on_pod)
        self.expect: dict[str, _Expectations] = {}
        self.recorder = EventRecorder(self.client, self.name)
        self._pods_by_owner = OwnerIndex(self.owner_kind)  # owner uid -> its pods

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        self._pods_by_owner.update(typ, pod, old)
        # the old controller too: a pod it lost (its ownerReference taken off) needs replacing
        for key in {owner_key(o, self.owner_kind) for o in (old, pod) if o is not None}:
            if key:
                self.queue.add(key)

    def owned_pods(self, rs: Obj) -> list[Obj]:
        return self._pods_by_owner.owned(rs["metadata"]["uid"])

    async def reconcile(self, key: str) -> float | None:
        rs = self.rs_inf.get(key)
        if rs is None:
            self.expect.pop(key, None)
            return None
        ns, name = split_key(key)
        pods = self.owned_pods(rs)
        active = [p for p in pods if is_active(p)]
        exp = self.expect.setdefault(key, _Expectations())
        exp.prune({p["metadata"]["name"] for p in active})
        want = (rs.get("spec") or {}).get("replicas", 1)
        have = len(active) + len(exp.adds) - len(exp.dels)
        if not rs["metadata"].get("deletionTimestamp"):
            if have < want:
                await self._create(rs, ns, want - have, exp)
            elif have > want:
                victims = [p for p in active if p["metadata"]["name"] not in exp.dels]
                await self._delete(rs, ns, self._rank_for_deletion(victims)[:have - want], exp)
        return await self._update_status(rs, active)

    async def _create(self, rs: Obj, ns: str, n: int, exp: _Expectations) -> None:
        tmpl = (rs.get("spec") or {}).get("template") or {}
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        meta.pop("name", None)
        meta["generateName"] = rs["metadata"]["name"] + "-"
        meta["namespace"] = ns
        meta["ownerReferences"] = [controller_ref(rs)]
        base = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl.get("spec") or {}}

        async def one() -> None:
            try:
                pod = await self.client.create(self.pod_kind, base, ns)  # sent as JSON: not changed, no copy
            except ApiError as e:
                self.recorder.emit(rs, "Warning", "FailedCreate", f"Error creating: {e.body.get('message')}")
                raise
            exp.adds[pod["metadata"]["name"]] = time.monotonic()
            self.recorder.emit(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        for i in range(0, n, BURST):
            results = await asyncio.gather(*[one() for _ in range(min(BURST, n - i))], return_exceptions=True)
            errs = [r for r in results if isinstance(r, Exception)]
            if errs:
                raise errs[0]

    async def _delete(self, rs: Obj, ns: str, pods: list[Obj], exp: _Expectations) -> None:
        async def one(p: Obj) -> None:
            name = p["metadata"]["name"]
            exp.dels[name] = time.monotonic()
            await self.client.delete(self.pod_kind, ns, name)
            self.recorder.emit(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
        await asyncio.gather(*[one(p) for p in pods])

    @staticmethod
    def _rank_for_deletion(pods: list[Obj]) -> list[Obj]:
        """Delete the least useful first: unscheduled, pending, not ready, restarting, newest."""
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}

        def rank(p: Obj):
            st = p.get("status") or {}
            return (1 if p["spec"].get("nodeName") else 0, phase_rank.get(st.get("phase"), 0),
                    1 if is_ready(p) else 0, -restarts(p),
                    _neg_time(p["metadata"].get("creationTimestamp", "")))
        return sorted(pods, key=rank)

    async def _update_status(self, rs: Obj, active: list[Obj]) -> float | None:
        now = dt.datetime.now(dt.timezone.utc)
        min_ready = (rs.get("spec") or {}).get("minReadySeconds", 0) or 0
        labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        fully = sum(1 for p in active if all((p["metadata"].get("labels") or {}).get(k) == v
                                             for k, v in labels.items()))
        ready, available, recheck = count_available(active, min_ready, now)
        status = dict(rs.get("status") or {})
        new = {**status, "replicas": len(active), "fullyLabeledReplicas": fully, "readyReplicas": ready,
               "availableReplicas": available, "observedGeneration": rs["metadata"].get("generation", 1)}
        if new != status:
            body = copy.deepcopy(rs)
            body["status"] = new
            await self.client.update_status(self.rs_kind, body)
        return recheck + 0.05 if recheck else None


def _neg_time(ts: str) -> str:
    """Sort key that orders newer timestamps first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in ts)

