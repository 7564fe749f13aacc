"""Small facts about pods and owners that several controllers need."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..client import kind
from ..kinds.meta import parse_time
from .base import Controller

Obj = dict[str, Any]


def controller_ref(owner: Obj) -> dict[str, Any]:
    m = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def controlled_by(obj: Obj, owner_uid: str) -> bool:
    return any(r.get("controller") and r.get("uid") == owner_uid
               for r in obj["metadata"].get("ownerReferences") or [])


def is_active(pod: Obj) -> bool:
    """Counts toward a ReplicaSet's replicas: not finished and not being deleted."""
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def ready_since(pod: Obj) -> dt.datetime | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            if c.get("status") == "True":
                t = c.get("lastTransitionTime")
                return parse_time(t) if t else dt.datetime.now(dt.timezone.utc)
            return None
    return None


def is_ready(pod: Obj) -> bool:
    return ready_since(pod) is not None


def available_in(pod: Obj, min_ready_seconds: int, now: dt.datetime) -> float | None:
    """0 if available now; seconds until it will be; None if not ready at all."""
    since = ready_since(pod)
    if since is None:
        return None
    if not min_ready_seconds:
        return 0.0
    left = (since + dt.timedelta(seconds=min_ready_seconds) - now).total_seconds()
    return max(left, 0.0)


def count_available(pods: list[Obj], min_ready_seconds: int,
                    now: dt.datetime) -> tuple[int, int, float | None]:
    """(ready, available, seconds until the next ready pod becomes available or None)."""
    ready = available = 0
    recheck: float | None = None
    for p in pods:
        left = available_in(p, min_ready_seconds, now)
        if left is None:
            continue
        ready += 1
        if left == 0:
            available += 1
        else:
            recheck = min(recheck or left, left)
    return ready, available, recheck


def restarts(pod: Obj) -> int:
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def controller_uids(obj: Obj | None, owner_kind: str) -> list[str]:
    if obj is None:
        return []
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or []
            if r.get("controller") and r.get("kind") == owner_kind]


class OwnerIndex:
    """Objects (pods, revisions) by the uid of their controller of one kind, kept up to date
    from an informer's events, so a reconcile reads its own objects without a scan."""

    def __init__(self, owner_kind: str):
        self.owner_kind = owner_kind
        self._by_owner: dict[str, dict[str, Obj]] = {}

    def update(self, typ: str, obj: Obj, old: Obj | None) -> None:
        k = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
        for o in (old, obj):
            for uid in controller_uids(o, self.owner_kind):
                bucket = self._by_owner.get(uid)
                if bucket is not None:
                    bucket.pop(k, None)
                    if not bucket:
                        del self._by_owner[uid]
        if typ != "DELETED":
            for uid in controller_uids(obj, self.owner_kind):
                self._by_owner.setdefault(uid, {})[k] = obj

    def handler(self, queue_key) -> Any:
        """An informer handler that keeps the index and queues the owner's key (queue_key(obj))."""
        def on_event(typ: str, obj: Obj, old: Obj | None) -> None:
            self.update(typ, obj, old)
            queue_key(obj)
            if old is not None and controller_uids(old, self.owner_kind) != controller_uids(obj, self.owner_kind):
                queue_key(old)  # released (or adopted): the old owner counts again, as Kubernetes' updatePod
        return on_event

    def owned(self, owner_uid: str) -> list[Obj]:
        return [o for o in self._by_owner.get(owner_uid, {}).values() if controlled_by(o, owner_uid)]


class PodsByNode:
    """node name -> keys of the pods bound there, kept up to date from a pod informer's
    events (``update`` is meant to be called from its handler)."""

    def __init__(self) -> None:
        self._on: dict[str, set[str]] = {}

    def update(self, typ: str, pod: Obj, old: Obj | None) -> None:
        m = pod["metadata"]
        key = f"{m['namespace']}/{m['name']}"
        before = ((old or {}).get("spec") or {}).get("nodeName")
        node = (pod.get("spec") or {}).get("nodeName")
        if before and (before != node or typ == "DELETED"):
            keys = self._on.get(before)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._on[before]
        if node and typ != "DELETED":
            self._on.setdefault(node, set()).add(key)

    def keys(self, node: str) -> list[str]:
        return sorted(self._on.get(node, ()))


class NodePodsController(Controller):
    """A loop keyed by pod that reacts to what happens to nodes (taint eviction, pod GC):
    node and pod informers, and which pods are bound to which node. Subclasses implement
    ``_on_node`` and ``_on_pod`` (called after the index is updated)."""

    def setup(self) -> None:
        self.node_kind, self.pod_kind = kind("nodes"), kind("pods")
        self.node_inf = self.informers.get(self.node_kind)
        self.pod_inf = self.informers.get(self.pod_kind)
        self.pods_on = PodsByNode()
        self.node_inf.add_handler(self._on_node)
        self.pod_inf.add_handler(self._pod_event)

    def _pod_event(self, typ: str, pod: Obj, old: Obj | None) -> None:
        self.pods_on.update(typ, pod, old)
        self._on_pod(typ, pod, old)

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        raise NotImplementedError

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        raise NotImplementedError
