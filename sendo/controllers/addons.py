"""The add-on manager: makes the cluster hold exactly what each Addon's add-on renders.

For an enabled ``Addon`` (``sendo.dev/v1alpha1``, named after an add-on of the catalogue
in ``sendo/addons``) a reconcile renders the add-on's templates with its config and with
facts read from the cluster (every component's metrics endpoint, the interpreter), applies
each object with server-side apply under the add-on's own field manager
(``sendo-addons/<name>``, forced: the add-on owns what it renders), labels it
``addons.sendo.dev/name=<name>``, and records it in ``status.applied``. Objects recorded
before that are no longer rendered are deleted (pruned); disabling or deleting the Addon
deletes everything recorded (the ``addons.sendo.dev/cleanup`` finalizer holds a deleted
Addon until then); for a piece that is on by default, deleting its Addon means "back to
the default", so its objects are applied again instead. Only objects that still carry the add-on's label are deleted, so an
object someone else took over is left alone — except that a piece sendo also makes itself
(``adoptLabels`` in its entry: the ``local-path`` StorageClass the persistentvolume loop
creates) is deleted on disable when it carries sendo's own labels.

Conditions: Applied (the last apply went through), Healthy (every DaemonSet, Deployment
and StatefulSet it applied is Ready; an add-on without workloads is Healthy once applied),
Progressing (an enable or config change is rolling out: its workloads are not Ready yet),
Degraded (an apply failed, or a workload that was Ready at this generation is not). While not Healthy the Addon is looked
at again every few seconds; an add-on that reads the cluster's endpoints is also
re-rendered when a Node's agent endpoint changes and every ``resync`` seconds.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable
from urllib.parse import urlsplit

from ..addons import (FIELD_MANAGER_PREFIX, FINALIZER, GROUP, PLURAL, VERSION, Entry, catalogue, ref_key,
                      ref_of, render, values_of)
from ..addons.generators import FACTS, GENERATORS
from ..client import ApiError, kind, path
from ..kinds.base import Resource
from ..kinds.meta import set_status_condition
from ..kinds.printing import as_dict, dicts
from ..kinds.registry import Registry, builtin_registry
from .base import Controller, Obj

log = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"
NOT_READY_RECHECK = 3.0  # seconds between looks at an add-on whose workloads are not Ready yet


def _message(e: ApiError) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    return str(body.get("message") or e)


def workload_waiting(obj: Obj) -> str | None:
    """Why a DaemonSet, Deployment or StatefulSet is not Ready yet (None: it is, or it is no workload)."""
    k, meta, spec, st = obj.get("kind"), as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
    where = f"{k} {meta.get('namespace', '')}/{meta.get('name', '')}"
    if k not in ("DaemonSet", "Deployment", "StatefulSet"):
        return None
    if st.get("observedGeneration") is None or st["observedGeneration"] < (meta.get("generation") or 0):
        return f"{where}: waiting for its controller to see generation {meta.get('generation')}"
    if k == "DaemonSet":
        want, ready = st.get("desiredNumberScheduled") or 0, st.get("numberReady") or 0
        updated = st.get("updatedNumberScheduled") or 0
        if ready < want or updated < want:
            return f"{where}: {ready} of {want} pods ready ({updated} updated)"
        return None
    want = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    ready = st.get("readyReplicas") or 0
    return f"{where}: {ready} of {want} replicas ready" if ready < want else None


class AddonController(Controller):
    name = "addon-controller"

    def __init__(self, client: Any, informers: Any, controllers_url: Callable[[], str] | None = None,
                 python: str = sys.executable, resync: float = 60.0):
        self.controllers_url = controllers_url or (lambda: "")
        self.python = python
        self.resync = resync
        self.kinds: Registry = builtin_registry()
        super().__init__(client, informers)

    def setup(self) -> None:
        self.addon_kind = kind(PLURAL, GROUP, VERSION)
        self.addons = self.informers.get(self.addon_kind)
        self.addons.add_handler(lambda t, o, old: self.enqueue(o))
        self.nodes = self.informers.get(kind("nodes"))
        self.nodes.add_handler(self._node_changed)

    # ----------------------------------------------------------------- events
    def _node_changed(self, typ: str, node: Obj, old: Obj | None) -> None:
        """A node's agent endpoint came, went or moved: re-render what lists the endpoints."""
        if typ == "MODIFIED" and old is not None and _agent_endpoint(node) == _agent_endpoint(old):
            return  # a heartbeat
        for a in self.addons.list():
            entry = catalogue().get(a["metadata"]["name"])
            if entry is not None and "components" in self._facts_needed(entry):
                self.enqueue(a)

    # ----------------------------------------------------------------- reconcile
    async def reconcile(self, key: str) -> float | None:
        addon = self.addons.get(key)
        if addon is None:
            return None
        meta = addon["metadata"]
        entry = catalogue().get(key)
        status = as_dict(addon.get("status"))
        previous = dicts(status.get("applied"))
        if meta.get("deletionTimestamp") and entry is not None and entry.default_enabled:
            for obj in render(entry, await self.values(entry, {})):  # no Addon means on: as sendo makes it
                await self.apply(key, obj)
            await self.set_finalizer(addon, False)
            return None
        if meta.get("deletionTimestamp"):
            left = await self.prune(entry or Entry(key, ""), previous)
            if left:
                await self.write_status(addon, {**status, "applied": left, "message": f"removing {len(left)} objects"})
                return NOT_READY_RECHECK
            await self.set_finalizer(addon, False)
            return None
        if entry is None:  # the API refuses such names; an Addon from an older catalogue could remain
            new = self.conditions(status, Applied=("False", "UnknownAddon", "no such add-on in the catalogue"))
            await self.write_status(addon, {**new, "applied": previous, "message": f"unknown add-on {key}"})
            return None
        if entry.builtin:
            new = self.conditions(status, Applied=("True", "BuiltIn", entry.builtin),
                                  Healthy=("True", "BuiltIn", entry.builtin), Progressing=("False", "BuiltIn", ""),
                                  Degraded=("False", "BuiltIn", ""))
            addon = await self.write_status(addon, {**new, "applied": [], "message": "built in: " + entry.builtin})
            await self.set_finalizer(addon, False)
            return None
        if as_dict(addon.get("spec")).get("enabled") is False:
            if entry.adopt_labels:  # what sendo made itself for this piece goes too
                keys = {ref_key(r) for r in previous}
                rendered = render(entry, await self.values(entry, as_dict(addon.get("spec")).get("config")))
                previous = previous + [r for r in map(ref_of, rendered) if ref_key(r) not in keys]
            return await self.disable(addon, entry, status, previous)
        await self.set_finalizer(addon, True)
        return await self.enable(addon, entry, status, previous)

    async def disable(self, addon: Obj, entry: Entry, status: Obj, previous: list[Obj]) -> float | None:
        left = await self.prune(entry, previous)
        message = f"disabled; removing {len(left)} applied objects" if left else "disabled"
        off = ("False", "Disabled", message)
        new = self.conditions(status, Applied=off, Healthy=off, Progressing=off, Degraded=off)
        addon = await self.write_status(addon, {**new, "applied": left, "message": message})
        if left:
            return NOT_READY_RECHECK
        # a piece that is on by default is put back when its Addon goes: hold it until then
        await self.set_finalizer(addon, entry.default_enabled)
        return None

    async def enable(self, addon: Obj, entry: Entry, status: Obj, previous: list[Obj]) -> float | None:
        name = addon["metadata"]["name"]
        objs = render(entry, await self.values(entry, as_dict(addon.get("spec")).get("config")))
        current, error = [], ""
        for obj in objs:
            try:
                await self.apply(name, obj)
            except ApiError as e:
                error = f"applying {obj.get('kind')} {ref_of(obj).get('namespace', '')}/{ref_of(obj)['name']}: " \
                        f"{_message(e)}"
                break
            current.append(ref_of(obj))
        if error:  # keep every record: nothing is pruned until a whole render applied
            keys = {ref_key(r) for r in current}
            applied = current + [r for r in previous if ref_key(r) not in keys]
            failed = ("False", "ApplyFailed", error)
            new = self.conditions(status, Applied=failed, Healthy=failed, Progressing=failed,
                                  Degraded=("True", "ApplyFailed", error))
            await self.write_status(addon, {**new, "applied": applied, "message": error})
            return NOT_READY_RECHECK * 3
        keys = {ref_key(r) for r in current}
        left = await self.prune(entry, [r for r in previous if ref_key(r) not in keys])
        waiting = await self.waiting(current)
        done = f"applied {len(current)} object{'' if len(current) == 1 else 's'}"
        if waiting and self.was_healthy(addon):  # it worked at this generation and no longer does
            new = self.conditions(status, Applied=("True", "Applied", done), Healthy=("False", "NotReady", waiting),
                                  Progressing=("False", "NotReady", waiting), Degraded=("True", "NotReady", waiting))
        elif waiting:  # a fresh enable or config change rolling out
            new = self.conditions(status, Applied=("True", "Applied", done), Healthy=("False", "NotReady", waiting),
                                  Progressing=("True", "RollingOut", waiting), Degraded=("False", "RollingOut", ""))
        else:
            ready = ("False", "Ready", "ready")
            new = self.conditions(status, Applied=("True", "Applied", done), Healthy=("True", "Ready", "ready"),
                                  Progressing=ready, Degraded=ready)
        await self.write_status(addon, {**new, "applied": current + left, "message": waiting or f"{done}, ready"})
        if waiting or left:
            return NOT_READY_RECHECK
        return self.resync if "components" in self._facts_needed(entry) else None

    # ----------------------------------------------------------------- rendering
    @staticmethod
    def _facts_needed(entry: Entry) -> set[str]:
        return {f for g in entry.generate.values() for f in FACTS.get(g, ())}

    async def values(self, entry: Entry, config: Any) -> dict[str, Any]:
        vals = values_of(entry, config if isinstance(config, dict) else {})
        needed = self._facts_needed(entry)
        facts: dict[str, Any] = {"python": self.python}
        if "components" in needed:
            facts["components"] = await self.components()
        vals.update({k: GENERATORS[g](vals, facts) for k, g in entry.generate.items()})
        return vals

    async def components(self) -> list[Obj]:
        """Every sendo component's metrics endpoint, as the cluster shows them now."""
        out: list[Obj] = []
        ep = await self.client.get_or_none(kind("endpoints"), "default", "kubernetes")
        for subset in dicts(as_dict(ep).get("subsets")):
            ports = [p for p in dicts(subset.get("ports")) if p.get("port")]
            for a in dicts(subset.get("addresses")):
                out += [{"component": "apiserver", "scheme": "https", "host": a.get("ip"), "port": p["port"]}
                        for p in ports]
        url = self.controllers_url()
        if url:
            u = urlsplit(url)
            out.append({"component": "controllers", "scheme": u.scheme or "http", "host": u.hostname,
                        "port": u.port or 80})
        for node in self.nodes.list():
            host, port = _agent_endpoint(node)
            if host and port:
                out.append({"component": "agent", "scheme": "http", "host": host, "port": port,
                            "node": node["metadata"]["name"]})
        return out

    # ----------------------------------------------------------------- writes
    def resource(self, ref: Obj) -> Resource:
        r = self.kinds.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if r is None:
            raise ApiError(422, {"message": f"no kind {ref.get('kind')} in {ref.get('apiVersion')} is built in"})
        return r

    async def apply(self, addon: str, obj: Obj) -> Obj:
        r = self.resource(obj)
        ref = ref_of(obj)
        return await self.client.request("PATCH", path(r, ref.get("namespace"), ref["name"]), body=obj,
                                         params={"fieldManager": FIELD_MANAGER_PREFIX + addon, "force": "true"},
                                         content_type=APPLY)

    async def prune(self, entry: Entry, refs: list[Obj]) -> list[Obj]:
        """Delete what the add-on owns of refs; returns the refs still there (a failed delete)."""
        left = []
        addon = entry.name
        for ref in refs:
            try:
                r = self.resource(ref)
                cur = await self.client.get_or_none(r, ref.get("namespace"), str(ref.get("name", "")))
                if cur is None or not entry.owns(cur):
                    continue  # gone, or no longer the add-on's: not ours to delete
                await self.client.delete(r, ref.get("namespace"), ref["name"], propagationPolicy="Background",
                                         preconditions={"uid": cur["metadata"]["uid"]})
                log.info("addon %s: pruned %s %s/%s", addon, ref.get("kind"), ref.get("namespace", ""), ref["name"])
            except ApiError as e:
                if e.status == 409:  # replaced meanwhile (uid precondition): look again next time
                    left.append(ref)
                    continue
                log.warning("addon %s: cannot prune %s %s: %s", addon, ref.get("kind"), ref.get("name"), e)
                left.append(ref)
        return left

    async def waiting(self, refs: list[Obj]) -> str:
        """Why the applied workloads are not all Ready ("" when they are)."""
        reasons = []
        for ref in refs:
            if ref.get("kind") not in ("DaemonSet", "Deployment", "StatefulSet"):
                continue
            obj = await self.client.get_or_none(self.resource(ref), ref.get("namespace"), ref["name"])
            why = workload_waiting(obj) if obj is not None else f"{ref['kind']} {ref['name']} is missing"
            if why:
                reasons.append(why)
        return "; ".join(reasons)

    @staticmethod
    def conditions(status: Obj, **values: tuple[str, str, str]) -> Obj:
        """The status's conditions with these set (type -> (status, reason, message))."""
        new = {"conditions": [dict(c) for c in dicts(status.get("conditions"))]}
        for ctype, value in values.items():
            set_status_condition(new, ctype, *value)
        return new

    @staticmethod
    def was_healthy(addon: Obj) -> bool:
        """Whether the add-on was Healthy at its current generation (so not Ready now is a fault)."""
        status = as_dict(addon.get("status"))
        healthy = next((c for c in dicts(status.get("conditions")) if c.get("type") == "Healthy"), {})
        return healthy.get("status") == "True" and status.get("observedGeneration") == \
            addon["metadata"].get("generation") and healthy.get("reason") == "Ready"

    async def write_status(self, addon: Obj, status: Obj) -> Obj:
        """The Addon with this status (written only when it differs from what it has)."""
        status = {**status, "observedGeneration": addon["metadata"].get("generation", 0)}
        if status == as_dict(addon.get("status")):
            return addon
        return await self.client.patch(self.addon_kind, None, addon["metadata"]["name"], {"status": status},
                                       sub="status")

    async def set_finalizer(self, addon: Obj, present: bool) -> None:
        meta = addon["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if (FINALIZER in finalizers) == present:
            return
        finalizers = finalizers + [FINALIZER] if present else [f for f in finalizers if f != FINALIZER]
        await self.client.patch(self.addon_kind, None, meta["name"],
                                {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}})


def _agent_endpoint(node: Obj) -> tuple[str | None, int | None]:
    status = as_dict(node.get("status"))
    port = as_dict(as_dict(status.get("daemonEndpoints")).get("kubeletEndpoint")).get("Port")
    addrs = {a.get("type"): a.get("address") for a in dicts(status.get("addresses"))}
    return addrs.get("InternalIP"), port
