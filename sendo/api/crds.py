"""Serving custom resources: CustomResourceDefinitions in the store become kinds in the registry.

The `CRDRegistrar` lists the CRDs in the store, then watches them. For every CRD it
builds one `Resource` per served version (names, scope, subresources, a schema
strategy, printer columns) and puts it in the API server's registry — routing and
discovery read the registry on every request, so the kind is served at once — and
then reports `NamesAccepted` and `Established` in the CRD's status.

Deleting a CRD first marks it Terminating (see `sendo.kinds.crd.CRDStrategy`); the
registrar then deletes every custom object of the kind, takes off the
`customresourcecleanup` finalizer and, once the CRD is gone, stops serving it.

Reconciles of one CRD name never overlap (one lock per name), and every step checks
the CRD's uid, so a CRD deleted and created again is never touched by work that was
meant for its predecessor.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..kinds.base import Cause, Column, Obj, Printer, Resource, ScaleSpec
from ..kinds.crd import (CLEANUP_FINALIZER, CRD_RESOURCE, JSONPathError, condition, eval_jsonpath,
                         is_established, parse_jsonpath, set_condition, simple_path)
from ..kinds.printing import as_dict, dicts, human_age, parse_timestamp
from ..kinds.registry import Registry
from ..kinds.schema import Schema, normalize, validate_object
from ..kinds.validation import KindStrategy
from ..store import Store, StoreError
from .errors import APIError
from .resources import ResourceAPI, decode

log = logging.getLogger(__name__)

CRD_PREFIX = CRD_RESOURCE.prefix()
RETRY_DELAY = 1.0
CLEANUP_POLL = 0.5


# ----------------------------------------------------------------- how a custom kind behaves


class SchemaStrategy(KindStrategy):
    """Prune, default and validate a custom object with its version's openAPIV3Schema."""

    has_spec = True

    def __init__(self, schema: Schema | None, has_status: bool):
        self.schema = schema
        self.has_status = has_status
        self.terminating = False  # set while the CRD is being deleted: no new objects

    def default(self, obj: Obj) -> None:
        if self.schema:
            normalize(obj, self.schema)

    def prepare_create(self, obj: Obj) -> None:
        if self.terminating:
            raise APIError(405, "create not allowed while custom resource definition is terminating",
                           "MethodNotAllowed")
        if self.has_status:
            obj.pop("status", None)  # with a status subresource, create cannot set status

    def validate_object(self, obj: Obj) -> list[Cause]:
        if not self.schema:
            return []
        # Writes to /status do not pass through default(); prune and default them here too.
        normalize(obj, self.schema)
        return validate_object(obj, self.schema)


def _cell(ctype: str, value: Any) -> Any:
    """A printer cell of the column's type; None (kubectl prints <none>) when it does not fit."""
    if value is None:
        return None
    if ctype == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        return None
    if ctype == "number":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if ctype == "boolean":
        return value if isinstance(value, bool) else None
    if ctype == "date":
        return human_age(value) if parse_timestamp(value) is not None else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def make_printer(columns: list[dict]) -> Printer:
    """NAME, then the CRD's additionalPrinterColumns; with none given, AGE (as Kubernetes)."""
    if not columns:
        columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    cols = [Column("Name", format="name", description="Name must be unique within a namespace.")]
    paths = []
    for c in columns:
        cols.append(Column(str(c.get("name", "")), c.get("type") or "string", c.get("format") or "",
                           c.get("description") or "", int(c.get("priority") or 0)))
        try:
            paths.append((c.get("type") or "string", parse_jsonpath(str(c.get("jsonPath", "")))))
        except JSONPathError:
            paths.append((c.get("type") or "string", None))

    def row(obj: Obj) -> list[Any]:
        cells: list[Any] = [as_dict(obj.get("metadata")).get("name", "")]
        for ctype, steps in paths:
            found = eval_jsonpath(steps, obj) if steps is not None else []
            cells.append(_cell(ctype, found[0] if found else None))
        return cells
    return Printer(cols, row)


def _version_priority(name: str) -> tuple:
    """Kubernetes' order of versions: GA before beta before alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", name)
    if not m:
        return (3, 0, 0, name)
    stage = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), name)


def resources_from_crd(crd: Obj, served_only: bool = True) -> list[Resource]:
    """One Resource per served version of a (valid) CRD, most preferred version first."""
    spec = as_dict(crd.get("spec"))
    names = as_dict(spec.get("names"))
    out: list[Resource] = []
    for v in sorted(dicts(spec.get("versions")), key=lambda v: _version_priority(str(v.get("name")))):
        if served_only and v.get("served") is not True:
            continue
        subs = as_dict(v.get("subresources"))
        sub_names = {s for s in ("status", "scale") if subs.get(s) is not None}
        scale = None
        if "scale" in sub_names:
            sc = as_dict(subs["scale"])
            selector = sc.get("labelSelectorPath")
            scale = ScaleSpec(simple_path(sc.get("specReplicasPath", "")) or ("spec", "replicas"),
                              simple_path(sc.get("statusReplicasPath", "")) or ("status", "replicas"),
                              simple_path(selector) if selector else None)
        schema = as_dict(v.get("schema")).get("openAPIV3Schema")
        out.append(Resource(
            spec["group"], v["name"], names["kind"], names["plural"], spec.get("scope") == "Namespaced",
            singular=names.get("singular", ""), short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []), subresources=sub_names,
            strategy=SchemaStrategy(copy.deepcopy(schema) if isinstance(schema, dict) else None,
                                    "status" in sub_names),
            printer=make_printer(dicts(v.get("additionalPrinterColumns"))), scale=scale,
            list_kind=names.get("listKind", ""), custom=True))
    return out


def accepted_names(crd: Obj) -> dict:
    names = as_dict(as_dict(crd.get("spec")).get("names"))
    return {k: copy.deepcopy(names[k]) for k in ("plural", "singular", "shortNames", "kind", "listKind",
                                                 "categories") if names.get(k)}


# ----------------------------------------------------------------- the registrar


@dataclass
class Served:
    """What one CRD put in the registry, and from which incarnation and generation of it."""

    uid: str
    generation: int
    resources: list[Resource] = field(default_factory=list)


class CRDRegistrar:
    """Keeps the registry in step with the CustomResourceDefinitions in the store."""

    def __init__(self, store: Store, registry: Registry, api: ResourceAPI):
        self.store = store
        self.registry = registry
        self.api = api
        self.served: dict[str, Served] = {}  # by CRD name
        self._locks: dict[str, asyncio.Lock] = {}
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task] = {}
        self._cleanups: dict[str, asyncio.Task] = {}  # uid -> task deleting that CRD's objects
        self._conflicted: set[str] = set()  # CRDs whose names were taken: retried when a CRD goes
        self._watch_task: asyncio.Task | None = None
        self._watch = None
        self._stopped = False

    # ---- life cycle
    async def start(self) -> None:
        """Serve every stored CRD before returning (so a restarted server serves them at once)."""
        kvs, rev = await self.store.list(CRD_PREFIX)
        # CRDs that were established keep their names: serve them before any newcomer that conflicts.
        for kv in sorted(kvs, key=lambda kv: not is_established(decode(kv.value))):
            await self._reconcile_locked(kv.key[len(CRD_PREFIX):])
        self._watch_task = asyncio.create_task(self._watch_loop(rev), name="crd-registrar")

    async def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.close()
        tasks = [t for t in (self._watch_task, *self._workers.values(), *self._cleanups.values()) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- events
    async def _watch_loop(self, rev: int) -> None:
        while not self._stopped:
            try:
                self._watch = self.store.watch(CRD_PREFIX, rev)
                async for ev in self._watch:
                    rev = ev.kv.mod_rev
                    self.enqueue(ev.kv.key[len(CRD_PREFIX):])
            except StoreError as e:  # fell behind or compacted: re-list, reconcile everything
                log.warning("CRD watch ended (%s); re-listing", e)
            if self._stopped:
                return
            kvs, rev = await self.store.list(CRD_PREFIX)
            for name in {kv.key[len(CRD_PREFIX):] for kv in kvs} | set(self.served):
                self.enqueue(name)

    def enqueue(self, name: str) -> None:
        """Reconcile name soon; events that arrive meanwhile coalesce into one more pass."""
        self._dirty.add(name)
        if name not in self._workers and not self._stopped:
            self._workers[name] = asyncio.create_task(self._work(name), name=f"crd-{name}")

    async def _work(self, name: str) -> None:
        try:
            while name in self._dirty and not self._stopped:
                self._dirty.discard(name)
                try:
                    await self._reconcile_locked(name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reconciling CustomResourceDefinition %s failed; retrying", name)
                    await asyncio.sleep(RETRY_DELAY)  # back-off before the retry
                    self._dirty.add(name)
        finally:
            self._workers.pop(name, None)

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # ---- reconcile
    async def _reconcile_locked(self, name: str) -> None:
        async with self.lock(name):
            await self.reconcile(name)

    async def reconcile(self, name: str) -> None:
        """Make the registry and the CRD's status agree with the CRD as stored now."""
        kv = await self.store.get(CRD_RESOURCE.key(None, name))
        if kv is None:
            self._unserve(name)
            self._conflicted.discard(name)
            for other in list(self._conflicted):  # the names it held may be free now
                self.enqueue(other)
            return
        crd = decode(kv.value)
        meta = crd["metadata"]
        if meta.get("deletionTimestamp"):
            # Still served while its objects go (get, list, delete); creating new ones is refused.
            if not self._serves(name, crd) and not self._name_conflict(name, crd):
                self._serve(name, crd)
            self._mark_terminating(name, meta.get("uid"))
            if CLEANUP_FINALIZER in (meta.get("finalizers") or []) and meta.get("uid") not in self._cleanups:
                self._cleanups[meta["uid"]] = asyncio.create_task(self._cleanup(crd), name=f"crd-cleanup-{name}")
            return
        conflict = self._name_conflict(name, crd)
        if conflict:
            self._unserve(name)
            self._conflicted.add(name)
            await self._write_status(crd, conflict)
            return
        self._conflicted.discard(name)
        if not self._serves(name, crd):
            self._serve(name, crd)
        await self._write_status(crd, None)

    def _name_conflict(self, name: str, crd: Obj) -> tuple[str, str] | None:
        """(reason, message) when the CRD's names cannot be served: a built-in or another CRD has them."""
        spec = as_dict(crd.get("spec"))
        group, names = spec.get("group"), as_dict(spec.get("names"))
        for v in dicts(spec.get("versions")):
            existing = self.registry.get(group, v.get("name"), names.get("plural"))
            if existing is not None and not existing.custom:
                return "PluralConflict", f'"{names.get("plural")}" is already in use'
        for other, served in self.served.items():
            if other != name and any(r.group == group and r.kind == names.get("kind") for r in served.resources):
                return "KindConflict", f'"{names.get("kind")}" is already in use'
        return None

    def _serves(self, name: str, crd: Obj) -> bool:
        """Whether the registry already holds this very CRD (same uid, same spec generation)."""
        s, meta = self.served.get(name), crd["metadata"]
        return s is not None and s.uid == meta.get("uid") and s.generation == meta.get("generation", 0)

    def _serve(self, name: str, crd: Obj) -> None:
        self._unserve(name)
        meta = crd["metadata"]
        served = Served(meta.get("uid", ""), meta.get("generation", 0), resources_from_crd(crd))
        for r in served.resources:
            self.registry.add(r)
        self.served[name] = served

    def _unserve(self, name: str) -> None:
        old = self.served.pop(name, None)
        for r in old.resources if old else []:
            if self.registry.get(r.group, r.version, r.plural) is r:
                self.registry.remove(r)

    def _mark_terminating(self, name: str, uid: str | None) -> None:
        served = self.served.get(name)
        if served is not None and served.uid == uid:
            for r in served.resources:
                r.strategy.terminating = True

    async def _write_status(self, crd: Obj, conflict: tuple[str, str] | None) -> None:
        uid = crd["metadata"].get("uid")

        def change(cur: Obj) -> Obj | None:
            if cur["metadata"].get("uid") != uid or cur["metadata"].get("deletionTimestamp"):
                return None  # a newer CRD of the same name, or one being deleted: not ours to touch
            before = copy.deepcopy(cur.get("status"))
            if conflict is None:
                cur.setdefault("status", {})["acceptedNames"] = accepted_names(cur)
                set_condition(cur, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
                established = condition(cur, "Established")
                if established is None or established.get("status") != "True":
                    set_condition(cur, "Established", "True", "InitialNamesAccepted",
                                  "the initial names have been accepted")
            else:
                set_condition(cur, "NamesAccepted", "False", *conflict)
                set_condition(cur, "Established", "False", "NotAccepted", "not all names are accepted")
            return None if cur.get("status") == before else cur
        try:
            await self.api.modify(CRD_RESOURCE, None, crd["metadata"]["name"], change, subresource="status")
        except APIError as e:
            if e.code != 404:
                raise

    # ---- deletion
    async def _cleanup(self, crd: Obj) -> None:
        """Delete every object of the kind, then release the CRD (remove our finalizer)."""
        name, uid = crd["metadata"]["name"], crd["metadata"]["uid"]
        try:
            resources = resources_from_crd(crd, served_only=False)
            while not self._stopped:
                async with self.lock(name):
                    if not await self._still(name, uid):
                        return
                    left = await self._delete_objects(resources)
                if not left:
                    break
                await asyncio.sleep(CLEANUP_POLL)  # objects with finalizers: wait for their controllers
            async with self.lock(name):
                await self._release(name, uid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cleaning up CustomResourceDefinition %s failed; will retry", name)
            await asyncio.sleep(RETRY_DELAY)  # back-off before the retry
            self._cleanups.pop(uid, None)
            self.enqueue(name)
        finally:
            if self._cleanups.get(uid) is asyncio.current_task():
                self._cleanups.pop(uid, None)

    async def _still(self, name: str, uid: str) -> bool:
        kv = await self.store.get(CRD_RESOURCE.key(None, name))
        return kv is not None and decode(kv.value)["metadata"].get("uid") == uid

    async def _delete_objects(self, resources: list[Resource]) -> int:
        """Delete (or start deleting) every stored object; returns how many still exist."""
        if not resources:
            return 0
        r = resources[0]  # every version shares the one storage prefix
        if any(not b.custom and b.prefix() == r.prefix() for b in self.registry.all()):
            return 0  # a CRD that shadowed a built-in kind was never served: its objects are not its own
        kvs, _ = await self.store.list(r.prefix())
        for kv in kvs:
            meta = decode(kv.value).get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            try:
                await self.api.delete(r, meta.get("namespace"), meta.get("name", ""), {})
            except APIError as e:
                if e.code not in (404, 409):
                    raise
        return len((await self.store.list(r.prefix()))[0])

    async def _release(self, name: str, uid: str) -> None:
        def change(cur: Obj) -> Obj | None:
            if cur["metadata"].get("uid") != uid:
                return None
            fins = [f for f in cur["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER]
            cur["metadata"]["finalizers"] = fins
            if not fins:
                cur["metadata"].pop("finalizers")
            return cur
        try:
            await self.api.modify(CRD_RESOURCE, None, name, change)
        except APIError as e:
            if e.code != 404:
                raise
        if not await self._still(name, uid):
            self._unserve(name)
