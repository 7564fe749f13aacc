"""ResourceQuota and LimitRange admission (the judgement is ``kinds/quota.py``).

* ``LimitRanger`` (an admission step of pods and claims, before validation): the
  namespace's LimitRanges give containers their default requests and limits, then
  every min/max/ratio bound is checked; a breach is a 403 worded as Kubernetes'
  (``pods "x" is forbidden: maximum cpu usage per Container is 1, but limit is 2``).
* ``QuotaAdmission`` (after validation, before the write): every ResourceQuota of the
  namespace that limits what the object uses is charged. As in Kubernetes the quota
  object is the serialization point: its ``status.used`` is read, ``used + requested
  <= hard`` is checked and the new ``used`` is written with a compare-and-swap on the
  quota's revision; a conflict re-reads and re-checks, so two concurrent creates can
  never both take the last unit. If a later quota refuses, what earlier quotas were
  charged is given back. A quota whose ``status.used`` is not known yet (just created)
  is counted from the store first. The resourcequota controller keeps ``used`` true
  afterwards (deletes, finished pods, creates that failed after the charge).
"""
from __future__ import annotations

import orjson

from ..kinds import quota as q
from ..kinds.base import Obj
from ..kinds.printing import as_dict, name_of
from ..store import Conflict
from ..store.versioner import encode as stored
from . import errors

CAS_ATTEMPTS = 20
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"


def forbidden(plural: str, name: str, message: str) -> errors.APIError:
    return errors.APIError(403, f'{plural} "{name}" is forbidden: {message}', "Forbidden",
                           {"name": name, "kind": plural})


async def _namespace_objects(store, registry, plural: str, ns: str) -> list[Obj]:
    r = registry.get("", "v1", plural)
    if r is None:
        return []
    kvs, _ = await store.list(r.prefix(ns))
    return [orjson.loads(kv.value) for kv in kvs]


class LimitRanger:
    """Admission step for pods and persistentvolumeclaims: defaults, then bounds."""

    def __init__(self, store, registry, plural: str):
        self.store, self.registry, self.plural = store, registry, plural

    async def __call__(self, obj: Obj) -> None:
        meta = as_dict(obj.get("metadata"))
        ns = meta.get("namespace")
        if not isinstance(ns, str) or not ns or not isinstance(obj.get("spec"), dict):
            return
        ranges = await _namespace_objects(self.store, self.registry, "limitranges", ns)
        if not ranges:
            return
        if self.plural == "pods":
            note = q.apply_limit_defaults(ranges, obj)
            if note:
                annotations = meta.get("annotations")
                if annotations is None:
                    annotations = meta["annotations"] = {}
                if isinstance(annotations, dict):
                    annotations[LIMIT_RANGER_ANNOTATION] = note
        errs = q.limit_violations(ranges, self.plural, obj)
        if errs:
            raise forbidden(self.plural, str(meta.get("name") or ""), q.forbidden_message(errs))


class QuotaAdmission:
    """Charges a new object to the namespace's ResourceQuotas, or refuses it with 403."""

    def __init__(self, store, registry):
        self.store, self.registry = store, registry
        self.quotas = registry.get("", "v1", "resourcequotas")

    async def admit(self, group: str, plural: str, ns: str, obj: Obj, dry_run: bool) -> None:
        if self.quotas is None:
            return
        kvs, _ = await self.store.list(self.quotas.prefix(ns))
        if not kvs:
            return
        name = str(as_dict(obj.get("metadata")).get("name") or "")
        usage = q.object_usage(group, plural, obj)
        charged: list[tuple[str, q.Usage]] = []
        try:
            for kv in sorted(kvs, key=lambda kv: kv.key):
                quota = orjson.loads(kv.value)
                if not q.quota_applies(quota, group, plural, obj):
                    continue
                if plural == "pods" and not group and not q.pod_is_terminal(obj):
                    missing = q.missing_compute(quota, obj)
                    if missing:
                        raise forbidden(plural, name, f"failed quota: {name_of(quota)}: {missing}")
                requested = q.requested_of(quota, usage)
                if not any(requested.values()):
                    continue
                await self._charge(kv.key, requested, plural, name, dry_run)
                if not dry_run:
                    charged.append((kv.key, requested))
        except BaseException:
            for key, requested in charged:  # refused by a later quota: give back what was taken
                await self._charge(key, {k: -v for k, v in requested.items()}, plural, name, False)
            raise

    async def _charge(self, key: str, delta: q.Usage, plural: str, name: str, dry_run: bool) -> None:
        """used += delta on one quota, compare-and-swap; refuses (403) when an increase passes hard."""
        for _ in range(CAS_ATTEMPTS):
            kv = await self.store.get(key)
            if kv is None:
                return  # the quota was deleted meanwhile: nothing limits any more
            quota = orjson.loads(kv.value)
            status = as_dict(quota.get("status"))
            if set(q.hard_of(quota)) - set(as_dict(status.get("used"))):
                used = await self.count(quota)  # a new quota: count what the namespace holds
            else:
                used = q.used_of(quota)
            if any(v > 0 for v in delta.values()):
                refusal = q.exceeded(quota, {k: v for k, v in delta.items() if v > 0}, used)
                if refusal:
                    raise forbidden(plural, name, refusal)
            if dry_run:
                return
            quota["status"] = {**status, "hard": dict(q.hard_of(quota)), "used": q.add_usage(quota, used, delta)}
            try:
                await self.store.update(key, stored(quota), expected_rev=kv.mod_rev)
                return
            except Conflict:
                continue
        raise errors.conflict("resourcequotas", key.rsplit("/", 1)[-1],
                              "too many concurrent changes to the quota, try again")

    async def count(self, quota: Obj) -> q.Usage:
        """What the quota's namespace uses now, read from the store."""
        ns = as_dict(quota.get("metadata")).get("namespace") or ""
        objects: dict[tuple[str, str], list[Obj]] = {}
        counts: dict[tuple[str, str], int] = {}
        for group, plural in q.tracked_kinds(quota):
            r = next((r for r in self.registry.all() if r.group == group and r.plural == plural and r.namespaced),
                     None)
            if r is None:
                continue
            if q.needs_content(group, plural, quota):
                kvs, _ = await self.store.list(r.prefix(ns))
                objects[(group, plural)] = [orjson.loads(kv.value) for kv in kvs]
            else:
                counts[(group, plural)] = await self.store.count(r.prefix(ns))
        return q.total_usage(quota, objects, counts)

