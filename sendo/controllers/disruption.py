"""Disruption controller: the status of every PodDisruptionBudget.

For each budget: the pods its selector picks in its namespace, how many are expected
(the pods themselves for an integer minAvailable, else the replicas of their
controllers — Deployment, ReplicaSet, StatefulSet, ReplicationController — as
Kubernetes counts them), how many must stay healthy, how many are healthy (Ready, not
being deleted, not just evicted) and so how many evictions are allowed now. The
`pods/eviction` subresource (api/eviction.py) spends that allowance with a
compare-and-swap on this status and records the pod under `status.disruptedPods`; this
loop forgets the pod once its deletion shows, or after two minutes.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from typing import Any

from ..client import kind
from ..kinds.meta import now_rfc3339, parse_time
from ..kinds.policy import budget_selects
from .base import Controller
from .deployment import resolve
from .podutil import is_ready, is_terminating

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DELETION_TIMEOUT = 120.0  # seconds an eviction may take to show as a deletion


class NoController(Exception):
    """A pod whose owner has no scale: the budget cannot count its expected pods."""


def _controller(obj: Obj) -> Obj | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def _percent(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("%")


class DisruptionController(Controller):
    name = "disruption-controller"

    def setup(self) -> None:
        self.pdb_kind = kind("poddisruptionbudgets", "policy")
        self.pdb_inf = self.informers.get(self.pdb_kind)
        self.pod_inf = self.informers.get(kind("pods"))
        self.owners = {k: self.informers.get(kind(plural, group)) for k, (plural, group) in {
            "ReplicaSet": ("replicasets", "apps"), "Deployment": ("deployments", "apps"),
            "StatefulSet": ("statefulsets", "apps"), "ReplicationController": ("replicationcontrollers", "")}.items()}
        self.pdb_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.pod_inf.add_handler(self._on_pod)
        for inf in self.owners.values():
            inf.add_handler(self._on_owner)

    def _budgets_in(self, ns: str) -> list[Obj]:
        return [b for b in self.pdb_inf.list() if b["metadata"].get("namespace") == ns]

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        for pdb in self._budgets_in(pod["metadata"].get("namespace", "")):
            if budget_selects(pdb, pod) or (old is not None and budget_selects(pdb, old)):
                self.enqueue(pdb)

    def _on_owner(self, typ: str, obj: Obj, old: Obj | None) -> None:
        if old is not None and (old.get("spec") or {}).get("replicas") == (obj.get("spec") or {}).get("replicas"):
            return
        for pdb in self._budgets_in(obj["metadata"].get("namespace", "")):
            self.enqueue(pdb)

    def _scale_of(self, ns: str, ref: Obj) -> tuple[str, int]:
        """The controller a pod counts toward (a Deployment over its ReplicaSet) and its replicas."""
        inf = self.owners.get(ref.get("kind", ""))
        owner = inf.get(f"{ns}/{ref.get('name')}") if inf is not None else None
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            raise NoController(f"found no controllers for pod's owner {ref.get('kind')}/{ref.get('name')}")
        if ref.get("kind") == "ReplicaSet":
            up = _controller(owner)
            if up is not None and up.get("kind") == "Deployment":
                dep = self.owners["Deployment"].get(f"{ns}/{up.get('name')}")
                if dep is not None and dep["metadata"].get("uid") == up.get("uid"):
                    owner = dep
        return owner["metadata"]["uid"], (owner.get("spec") or {}).get("replicas", 1)

    def expected(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        """(expected pods, pods that must stay healthy)."""
        spec = pdb.get("spec") or {}
        min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
        if max_unavailable is None and not _percent(min_available):
            return len(pods), (min_available or 0)
        ns = pdb["metadata"]["namespace"]
        scales: dict[str, int] = {}
        for p in pods:
            ref = _controller(p)
            if ref is None:
                raise NoController(f"found no controller ref for pod {p['metadata']['name']}")
            uid, n = self._scale_of(ns, ref)
            scales[uid] = n
        expected = sum(scales.values())
        if max_unavailable is not None:
            return expected, max(expected - resolve(max_unavailable, expected, True), 0)
        return expected, math.ceil(int(min_available[:-1]) * expected / 100)

    async def reconcile(self, key: str) -> float | None:
        pdb = self.pdb_inf.get(key)
        if pdb is None or pdb["metadata"].get("deletionTimestamp"):
            return None
        ns = pdb["metadata"]["namespace"]
        pods = [p for p in self.pod_inf.list() if p["metadata"].get("namespace") == ns and budget_selects(pdb, p)]
        status = copy.deepcopy(pdb.get("status") or {})
        now = dt.datetime.now(dt.timezone.utc)
        disrupted, recheck = self._disrupted(status.get("disruptedPods") or {}, pods, now)
        try:
            expected, desired = self.expected(pdb, pods)
        except NoController as e:
            return await self._write(pdb, status, {"disruptionsAllowed": 0}, disrupted, False, "SyncFailed", str(e))
        healthy = sum(1 for p in pods if not is_terminating(p) and p["metadata"]["name"] not in disrupted
                      and is_ready(p))
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        counts = {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                  "expectedPods": expected}
        await self._write(pdb, status, counts, disrupted, allowed > 0,
                          "SufficientPods" if allowed > 0 else "InsufficientPods", "")
        return recheck

    @staticmethod
    def _disrupted(recorded: dict[str, str], pods: list[Obj], now: dt.datetime) -> tuple[dict[str, str], float | None]:
        """Evicted pods still to be seen going; and when the oldest of them times out."""
        by_name = {p["metadata"]["name"]: p for p in pods}
        keep: dict[str, str] = {}
        recheck: float | None = None
        for name, when in recorded.items():
            pod = by_name.get(name)
            if pod is None or is_terminating(pod):
                continue
            try:
                left = DELETION_TIMEOUT - (now - parse_time(when)).total_seconds()
            except (TypeError, ValueError):
                continue
            if left > 0:
                keep[name] = when
                recheck = min(recheck or left, left)
        return keep, recheck

    async def _write(self, pdb: Obj, status: Obj, counts: Obj, disrupted: dict[str, str], ok: bool, reason: str,
                     message: str) -> float | None:
        new = {k: v for k, v in status.items() if k not in ("disruptedPods",)}
        new.update(counts)
        new["observedGeneration"] = pdb["metadata"].get("generation", 1)
        if disrupted:
            new["disruptedPods"] = disrupted
        cond = {"type": "DisruptionAllowed", "status": "True" if ok else "False", "reason": reason,
                "message": message, "observedGeneration": new["observedGeneration"]}
        old = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
        same = old is not None and all(old.get(k) == v for k, v in cond.items())
        cond["lastTransitionTime"] = old.get("lastTransitionTime") if same and old else now_rfc3339()
        new["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"] + \
            [old if same else cond]
        if new != status:
            body = copy.deepcopy(pdb)
            body["status"] = new
            await self.client.update_status(self.pdb_kind, body)
        return None
