"""Garbage collector: ownerReferences semantics.

A dependent whose owners are all gone is deleted (background). An owner deleted in
the foreground (finalizer ``foregroundDeletion``) first loses its dependents, then
its finalizer, and the API server removes it. An owner deleted with ``orphan``
propagation lets go of its dependents (their references to it are removed), then
its finalizer.

The collector keeps an ownership graph (owner uid -> dependent uids) from the
informers of the kinds it watches: the usual owner kinds from the start, and the kind
of any other owner a dependent names once it looks that owner up (so the owner's
deletion reaches its dependents, e.g. a Pod a client made a Service own). It is level-triggered: after a restart the relist
finds every orphan again. An owner that is missing from the graph may simply be
newer than the cache, so it is declared gone only after a direct GET answers 404
(or finds another object with the same name).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..client import ApiError, Client, Informer, kind
from ..client.informer import obj_key
from ..kinds.base import Resource
from ..kinds.registry import builtin_registry
from .base import Controller, InformerFactory, split_key

log = logging.getLogger(__name__)
Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
DEFAULT_KINDS = (("pods", ""), ("replicasets", "apps"), ("deployments", "apps"), ("replicationcontrollers", ""),
                 ("daemonsets", "apps"), ("statefulsets", "apps"), ("controllerrevisions", "apps"),
                 ("persistentvolumeclaims", ""),
                 ("jobs", "batch"), ("cronjobs", "batch"))  # a CronJob's Jobs go with it; a Job's pods need no GET
MAX_ABSENT = 10_000  # remembered gone owners (saves a GET per dependent of a big deleted owner)
MAX_CONFLICT_RETRIES = 5

# what an owner reference points at
SOLID, GONE, WAITING = "solid", "gone", "waiting"


class _Item:
    """One object in the ownership graph."""

    __slots__ = ("uid", "inf", "key", "owners", "foreground", "orphaning")

    def __init__(self, uid: str, inf: Informer, key: str):
        self.uid, self.inf, self.key = uid, inf, key
        self.owners: dict[str, Obj] = {}  # owner uid -> ownerReference
        self.foreground = False  # being deleted, waiting for its dependents
        self.orphaning = False  # being deleted, letting go of its dependents

    def current(self) -> Obj | None:
        obj = self.inf.get(self.key)
        return obj if obj is not None and obj["metadata"].get("uid") == self.uid else None


class GarbageCollector(Controller):
    name = "garbage-collector"
    workers = 4

    def __init__(self, client: Client, informers: InformerFactory, kinds: list[Resource] | None = None):
        self._kinds = list(kinds) if kinds else [kind(p, g) for p, g in DEFAULT_KINDS]
        super().__init__(client, informers)

    def setup(self) -> None:
        self.registry = builtin_registry()
        self.graph: dict[str, _Item] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self._absent: set[str] = set()  # owner uids confirmed gone
        self._watched: set[tuple[str, str]] = set()
        for r in self._kinds:
            self.add_kind(r)

    def add_kind(self, r: Resource) -> None:
        """Collect one more kind, as owner and as dependent. After start, its informer starts here."""
        if (r.group, r.plural) in self._watched:
            return
        self._watched.add((r.group, r.plural))
        if self.registry.by_kind(r.api_version, r.kind) is None:
            self.registry.add(r)  # e.g. a custom resource: owners of this kind can be looked up
        inf = self.informers.get(r)
        inf.add_handler(lambda typ, obj, old: self._on_event(inf, typ, obj))
        if self._tasks and inf._task is None:
            inf.start()

    # ------------------------------------------------------------- graph upkeep
    def _on_event(self, inf: Informer, typ: str, obj: Obj) -> None:
        m = obj["metadata"]
        uid = m.get("uid")
        if not uid:
            return
        if typ == "DELETED":
            self._forget(uid)
            return
        item = self.graph.get(uid)
        if item is None:
            item = self.graph[uid] = _Item(uid, inf, obj_key(obj))
        owners = {r["uid"]: r for r in m.get("ownerReferences") or [] if r.get("uid")}
        changed = owners != item.owners
        if changed:
            for o in item.owners.keys() - owners.keys():
                self._unlink(o, uid)
            for o in owners.keys() - item.owners.keys():
                self.dependents.setdefault(o, set()).add(uid)
            item.owners = owners
        deleting = bool(m.get("deletionTimestamp"))
        fin = m.get("finalizers") or ()
        was_waiting = item.foreground or item.orphaning
        item.foreground = deleting and FOREGROUND in fin
        item.orphaning = deleting and ORPHAN in fin
        if item.foreground or item.orphaning:
            self.queue.add(uid)
        elif was_waiting:
            self._enqueue_dependents(uid)
        # the common case, every owner known and alive, needs no work
        if owners and any(o not in self.graph or self.graph[o].foreground for o in owners):
            self.queue.add(uid)

    def _forget(self, uid: str) -> None:
        item = self.graph.pop(uid, None)
        self._remember_absent(uid)  # the watch saw this very object go
        if item is not None:
            for o in item.owners:
                self._unlink(o, uid)
                owner = self.graph.get(o)
                if owner is not None and owner.foreground:
                    self.queue.add(o)  # one fewer dependent to wait for
        self._enqueue_dependents(uid)  # they may be orphans now

    def _unlink(self, owner: str, dep: str) -> None:
        deps = self.dependents.get(owner)
        if deps is not None:
            deps.discard(dep)
            if not deps:
                del self.dependents[owner]

    def _enqueue_dependents(self, uid: str) -> None:
        for d in self.dependents.get(uid, ()):
            self.queue.add(d)

    def _remember_absent(self, uid: str) -> None:
        if len(self._absent) >= MAX_ABSENT:
            self._absent.clear()
        self._absent.add(uid)

    # ------------------------------------------------------------- reconcile
    async def reconcile(self, uid: str) -> float | None:
        item = self.graph.get(uid)
        obj = item.current() if item else None
        if obj is None:
            return None
        if item.orphaning:
            await self._orphan_dependents(item)
        elif item.foreground:
            await self._delete_dependents(item)
        elif item.owners and not obj["metadata"].get("deletionTimestamp"):
            await self._collect_if_orphaned(item, obj)
        return None

    async def _orphan_dependents(self, item: _Item) -> None:
        """`orphan` propagation: strip the references to the owner, then its finalizer."""
        for d in list(self.dependents.get(item.uid, ())):
            dep = self.graph.get(d)
            if dep is not None:
                await self._drop_owner_refs(dep, {item.uid})
        await self._remove_finalizer(item, ORPHAN)

    async def _delete_dependents(self, item: _Item) -> None:
        """Foreground deletion: the owner goes once no dependent blocks it any more."""
        blocking = False
        for d in self.dependents.get(item.uid, ()):
            dep = self.graph.get(d)
            if dep is None:
                continue
            self.queue.add(d)  # its own reconcile deletes it (or detaches it, if it has other owners)
            if (dep.owners.get(item.uid) or {}).get("blockOwnerDeletion"):
                blocking = True
        if not blocking:
            await self._remove_finalizer(item, FOREGROUND)

    async def _collect_if_orphaned(self, item: _Item, obj: Obj) -> None:
        ns = obj["metadata"].get("namespace")
        states: dict[str, str] = {}
        for o, ref in item.owners.items():
            states[o] = await self._owner_state(o, ref, ns)
        solid = [o for o, s in states.items() if s == SOLID]
        stale = {o for o, s in states.items() if s != SOLID}
        if solid:
            if stale:  # keep the object, drop the references that no longer hold it
                await self._drop_owner_refs(item, stale)
            return
        waiting = any(s == WAITING for s in states.values())
        # A dependent of a foreground deletion that has dependents itself goes in the
        # foreground too, so the chain unwinds from the leaves up.
        policy = "Foreground" if waiting and self.dependents.get(item.uid) else "Background"
        fin = obj["metadata"].get("finalizers") or ()
        if ORPHAN in fin:
            policy = "Orphan"
        elif FOREGROUND in fin:
            policy = "Foreground"
        r = self._resource(item)
        log.info("%s: deleting %s %s (owners gone: %s)", self.name, r.kind, item.key, ", ".join(states))
        await self.client.delete(r, ns, obj["metadata"]["name"], propagationPolicy=policy,
                                 preconditions={"uid": item.uid})

    async def _owner_state(self, uid: str, ref: Obj, ns: str | None) -> str:
        owner = self.graph.get(uid)
        if owner is not None and owner.current() is not None:
            return WAITING if owner.foreground else SOLID
        if uid in self._absent:
            return GONE
        r = self.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            return SOLID  # a kind we cannot look up: never collect on a guess
        if {"list", "watch"} <= set(r.verbs):
            # watch the owner's kind from now on, as Kubernetes' collector watches every kind:
            # its deletion must wake this dependent (a Pod a client made a Service own)
            self.add_kind(r)
        try:
            found = await self.client.get(r, ns if r.namespaced else None, ref.get("name", ""))
        except ApiError as e:
            if e.status != 404:
                raise
            found = None
        if found is None or found["metadata"].get("uid") != uid:
            self._remember_absent(uid)
            return GONE
        m = found["metadata"]
        return WAITING if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or ()) else SOLID

    # ------------------------------------------------------------- writes
    def _resource(self, item: _Item) -> Resource:
        return item.inf.r

    async def _modify(self, item: _Item, change: Callable[[Obj], Obj | None]) -> None:
        """Read the object fresh, patch what change() returns, guarded by resourceVersion."""
        ns, name = split_key(item.key)
        r = self._resource(item)
        for _ in range(MAX_CONFLICT_RETRIES):
            obj = await self.client.get_or_none(r, ns, name)
            if obj is None or obj["metadata"].get("uid") != item.uid:
                return
            meta_patch = change(obj)
            if meta_patch is None:
                return
            meta_patch["resourceVersion"] = obj["metadata"]["resourceVersion"]
            try:
                await self.client.patch(r, ns, name, {"metadata": meta_patch})
                return
            except ApiError as e:
                if e.status == 404:
                    return
                if e.status != 409:
                    raise
        raise ApiError(409, {"reason": "Conflict", "message": f"{item.key} keeps changing"})

    async def _drop_owner_refs(self, item: _Item, owners: set[str]) -> None:
        def change(obj: Obj) -> Obj | None:
            refs = obj["metadata"].get("ownerReferences") or []
            keep = [r for r in refs if r.get("uid") not in owners]
            if len(keep) == len(refs):
                return None
            return {"ownerReferences": keep or None}
        await self._modify(item, change)

    async def _remove_finalizer(self, item: _Item, finalizer: str) -> None:
        def change(obj: Obj) -> Obj | None:
            fin = obj["metadata"].get("finalizers") or []
            if finalizer not in fin:
                return None
            return {"finalizers": [f for f in fin if f != finalizer] or None}
        await self._modify(item, change)
