"""Deployment controller: one ReplicaSet per pod template, replicas shifted between them.

The ReplicaSet whose pod-template-hash matches the Deployment's template is the new
one; the others are old. RollingUpdate scales the new one up within maxSurge and the
old ones down within maxUnavailable; Recreate stops the old pods first. Status and
conditions are what `kubectl rollout status` reads.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import math
from typing import Any

import orjson

from ..client import kind
from ..client.events import EventRecorder
from ..kinds.meta import now_rfc3339, parse_time
from .base import Controller, owner_key, split_key
from .podutil import controlled_by, controller_ref

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A short, stable name for a pod template (same template, same hash)."""
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(orjson.dumps(t, option=orjson.OPT_SORT_KEYS) + str(collision_count).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = ""
    for _ in range(10):
        n, r = divmod(n, len(HASH_ALPHABET))
        out += HASH_ALPHABET[r]
    return out


def resolve(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent field (maxSurge, maxUnavailable) as a number of pods."""
    if isinstance(value, str) and value.endswith("%"):
        f = int(value[:-1]) * total / 100
        return math.ceil(f) if round_up else math.floor(f)
    return int(value or 0)


def revision_of(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _replicas(rs: Obj) -> int:
    return (rs.get("spec") or {}).get("replicas", 0) or 0


def _st(rs: Obj, field: str) -> int:
    return (rs.get("status") or {}).get(field, 0) or 0


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 2

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.d_kind = kind("deployments", "apps")
        self.rs_kind = kind("replicasets", "apps")
        self.d_inf = self.informers.get(self.d_kind)
        self.rs_inf = self.informers.get(self.rs_kind)
        self.d_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.rs_inf.add_handler(self._on_rs)
        self.recorder = EventRecorder(self.client, "deployment-controller")

    def _on_rs(self, typ: str, rs: Obj, old: Obj | None) -> None:
        key = owner_key(rs, "Deployment")
        if key:
            self.queue.add(key)

    def owned(self, d: Obj) -> list[Obj]:
        uid = d["metadata"]["uid"]
        ns = d["metadata"]["namespace"]
        return [rs for rs in self.rs_inf.list()
                if rs["metadata"].get("namespace") == ns and controlled_by(rs, uid)]

    async def reconcile(self, key: str) -> float | None:
        d = self.d_inf.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return None
        ns, _ = split_key(key)
        spec = d.get("spec") or {}
        all_rs = self.owned(d)
        h = template_hash(spec.get("template") or {}, (d.get("status") or {}).get("collisionCount", 0))
        new_rs = next((rs for rs in all_rs if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        old = [rs for rs in all_rs if rs is not new_rs]
        if spec.get("paused"):
            await self._sync_status(d, new_rs, old)
            return None
        if new_rs is None:
            new_rs = await self._create_rs(d, h, old)
        else:
            await self._bump_revision(d, new_rs, old)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            await self._recreate(d, new_rs, old)
        else:
            await self._rolling(d, new_rs, old)
        await self._cleanup(d, old)
        d = await self._sync_revision(d, new_rs)
        return await self._sync_status(d, new_rs, old)

    async def _sync_revision(self, d: Obj, new_rs: Obj) -> Obj:
        """The Deployment carries its newest ReplicaSet's revision (kubectl rollout reads it).

        Returns d with the resourceVersion of that write, so the status update that
        follows does not conflict with our own patch. If the spec changed meanwhile (a
        new generation), d is returned as it was: its status write conflicts and the key
        is retried, rather than claiming a generation this pass never acted on."""
        rev = str(revision_of(new_rs))
        if (d["metadata"].get("annotations") or {}).get(REVISION) == rev:
            return d
        written = await self.client.patch(self.d_kind, d["metadata"]["namespace"], d["metadata"]["name"],
                                          {"metadata": {"annotations": {REVISION: rev}}})
        if written["metadata"].get("generation") != d["metadata"].get("generation"):
            return d
        return {**d, "metadata": {**d["metadata"], "resourceVersion": written["metadata"]["resourceVersion"],
                                  "annotations": written["metadata"].get("annotations")}}

    async def _create_rs(self, d: Obj, h: str, old: list[Obj]) -> Obj:
        spec = d["spec"]
        tmpl = copy.deepcopy(spec.get("template") or {})
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        revision = max([revision_of(rs) for rs in old] + [0]) + 1
        annotations = {REVISION: str(revision)}
        cause = (d["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause")
        if cause:
            annotations["kubernetes.io/change-cause"] = cause
        replicas = spec.get("replicas", 1) if not any(_replicas(rs) for rs in old) else 0
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            replicas = 0
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": d["metadata"]["namespace"],
                           "labels": dict(tmpl["metadata"]["labels"]), "annotations": annotations,
                           "ownerReferences": [controller_ref(d)]},
              "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0),
                       "selector": selector, "template": tmpl}}
        created = await self.client.create(self.rs_kind, rs)
        self.recorder.emit(d, "Normal", "ScalingReplicaSet",
                                   f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        return created

    async def _bump_revision(self, d: Obj, new_rs: Obj, old: list[Obj]) -> None:
        """A template rolled back to an old ReplicaSet makes that one the newest revision."""
        top = max([revision_of(rs) for rs in old] + [0])
        want = {}
        if revision_of(new_rs) <= top:
            want[REVISION] = str(top + 1)
        cause = (d["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause")
        if cause and (new_rs["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause") != cause:
            want["kubernetes.io/change-cause"] = cause
        if (new_rs.get("spec") or {}).get("minReadySeconds", 0) != d["spec"].get("minReadySeconds", 0):
            await self.client.patch(self.rs_kind, new_rs["metadata"]["namespace"], new_rs["metadata"]["name"],
                                    {"spec": {"minReadySeconds": d["spec"].get("minReadySeconds", 0)}})
        if want:
            new_rs["metadata"].setdefault("annotations", {}).update(want)
            await self.client.patch(self.rs_kind, new_rs["metadata"]["namespace"], new_rs["metadata"]["name"],
                                    {"metadata": {"annotations": want}})

    async def _scale(self, d: Obj, rs: Obj, replicas: int) -> None:
        cur = _replicas(rs)
        if cur == replicas:
            return
        await self.client.patch(self.rs_kind, rs["metadata"]["namespace"], rs["metadata"]["name"],
                                {"spec": {"replicas": replicas}})
        rs.setdefault("spec", {})["replicas"] = replicas
        verb = "up" if replicas > cur else "down"
        self.recorder.emit(d, "Normal", "ScalingReplicaSet",
                                   f"Scaled {verb} replica set {rs['metadata']['name']} from {cur} to {replicas}")

    async def _recreate(self, d: Obj, new_rs: Obj, old: list[Obj]) -> None:
        for rs in old:
            await self._scale(d, rs, 0)
        if any(_st(rs, "replicas") for rs in old):
            return  # old pods still running: wait for them to go
        await self._scale(d, new_rs, d["spec"].get("replicas", 1))

    async def _rolling(self, d: Obj, new_rs: Obj, old: list[Obj]) -> None:
        spec = d["spec"]
        want = spec.get("replicas", 1)
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = resolve(ru.get("maxSurge", "25%"), want, True)
        unavailable = resolve(ru.get("maxUnavailable", "25%"), want, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        active_old = [rs for rs in old if _replicas(rs)]
        if not active_old:
            await self._scale(d, new_rs, want)
            return
        # scale up the new ReplicaSet within the surge budget
        total = _replicas(new_rs) + sum(_replicas(rs) for rs in active_old)
        room = want + surge - total
        if room > 0 and _replicas(new_rs) < want:
            await self._scale(d, new_rs, min(want, _replicas(new_rs) + room))
        # scale old ones down as far as availability allows
        total = _replicas(new_rs) + sum(_replicas(rs) for rs in active_old)
        min_available = want - unavailable
        new_unavailable = _replicas(new_rs) - _st(new_rs, "availableReplicas")
        budget = total - min_available - new_unavailable
        if budget <= 0:
            return
        # first the old replicas that are not available anyway, then available ones, oldest first
        for rs in sorted(active_old, key=revision_of):
            unhealthy = _replicas(rs) - _st(rs, "availableReplicas")
            cut = min(max(unhealthy, 0), budget)
            if cut:
                await self._scale(d, rs, _replicas(rs) - cut)
                budget -= cut
        total_available = sum(_st(rs, "availableReplicas") for rs in [new_rs, *active_old])
        budget = min(budget, total_available - min_available)
        for rs in sorted(active_old, key=revision_of):
            if budget <= 0:
                break
            cut = min(_replicas(rs), budget)
            if cut:
                await self._scale(d, rs, _replicas(rs) - cut)
                budget -= cut

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted([rs for rs in old if not _replicas(rs) and not _st(rs, "replicas")
                       and not rs["metadata"].get("deletionTimestamp")], key=revision_of)
        for rs in idle[:max(len(idle) - limit, 0)]:
            await self.client.delete(self.rs_kind, rs["metadata"]["namespace"], rs["metadata"]["name"])

    async def _sync_status(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> float | None:
        """Write status and conditions; returns seconds until the progress deadline is due."""
        recheck = None
        spec = d["spec"]
        want = spec.get("replicas", 1)
        everything = ([new_rs] if new_rs else []) + old
        available = sum(_st(rs, "availableReplicas") for rs in everything)
        updated = _st(new_rs, "replicas") if new_rs else 0
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = 0 if (spec.get("strategy") or {}).get("type") == "Recreate" else \
            resolve(ru.get("maxUnavailable", "25%"), want, False)
        status = copy.deepcopy(d.get("status") or {})
        new = {**status,
               "observedGeneration": d["metadata"].get("generation", 1),
               "replicas": sum(_st(rs, "replicas") for rs in everything),
               "updatedReplicas": updated,
               "readyReplicas": sum(_st(rs, "readyReplicas") for rs in everything),
               "availableReplicas": available,
               "unavailableReplicas": max(want - available, 0)}
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas", "unavailableReplicas"):
            if not new[k]:
                new.pop(k)
        conds = {c["type"]: c for c in status.get("conditions") or []}
        is_available = available >= want - max_unavailable
        self._set_condition(conds, "Available", is_available,
                            "MinimumReplicasAvailable" if is_available else "MinimumReplicasUnavailable",
                            "Deployment has minimum availability." if is_available
                            else "Deployment does not have minimum availability.")
        if spec.get("paused"):
            self._set_condition(conds, "Progressing", None, "DeploymentPaused", "Deployment is paused")
        elif new_rs is not None:
            name = new_rs["metadata"]["name"]
            done = (updated == want and available >= want and new.get("replicas", 0) == want
                    and _st(new_rs, "availableReplicas") >= want)
            if done:
                self._set_condition(conds, "Progressing", True, "NewReplicaSetAvailable",
                                    f'ReplicaSet "{name}" has successfully progressed.')
            else:
                recheck = self._progress(conds, status, new, name, spec.get("progressDeadlineSeconds", 600))
        new["conditions"] = [conds[t] for t in ("Available", "Progressing") if t in conds]
        if new != status:
            body = copy.deepcopy(d)
            body["status"] = new
            await self.client.update_status(self.d_kind, body)
        return recheck

    def _progress(self, conds: dict[str, Obj], old: Obj, new: Obj, rs_name: str, deadline: int | None) -> float | None:
        """A rollout that changes nothing for progressDeadlineSeconds has failed: Progressing
        goes False (ProgressDeadlineExceeded), which `kubectl rollout status` reports."""
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        moved = any(old.get(k) != new.get(k) for k in counts)
        cur = conds.get("Progressing")
        if cur and cur.get("reason") == "ProgressDeadlineExceeded" and not moved:
            return None
        if moved or not cur or cur.get("reason") not in ("ReplicaSetUpdated", "NewReplicaSetCreated"):
            now = now_rfc3339()
            transition = cur["lastTransitionTime"] if cur and cur.get("status") == "True" else now
            conds["Progressing"] = {"type": "Progressing", "status": "True", "lastUpdateTime": now,
                                    "lastTransitionTime": transition, "reason": "ReplicaSetUpdated",
                                    "message": f'ReplicaSet "{rs_name}" is progressing.'}
            return float(deadline) + 0.5 if deadline else None
        if not deadline:
            return None
        idle = (dt.datetime.now(dt.timezone.utc) - parse_time(cur["lastUpdateTime"])).total_seconds()
        if idle < deadline:
            return deadline - idle + 0.5
        self._set_condition(conds, "Progressing", False, "ProgressDeadlineExceeded",
                            f'ReplicaSet "{rs_name}" has timed out progressing.')
        return None

    @staticmethod
    def _set_condition(conds: dict[str, Obj], type_: str, ok: bool | None, reason: str, message: str) -> None:
        status = "Unknown" if ok is None else ("True" if ok else "False")
        cur = conds.get(type_)
        now = now_rfc3339()
        if cur and cur.get("status") == status and cur.get("reason") == reason and cur.get("message") == message:
            return
        transition = cur["lastTransitionTime"] if cur and cur.get("status") == status else now
        conds[type_] = {"type": type_, "status": status, "lastUpdateTime": now,
                        "lastTransitionTime": transition, "reason": reason, "message": message}
