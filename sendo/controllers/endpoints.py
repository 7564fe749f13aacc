"""Endpoints controller: the addresses behind every Service with a selector.

For a Service with a (non-empty) selector it keeps, from the pods that match it and
have a pod IP:

* one ``Endpoints`` object of the same name (``subsets``: ready pods in
  ``addresses``, the others in ``notReadyAddresses``; terminating pods are left
  out, as Kubernetes does, unless ``publishNotReadyAddresses``), labelled
  ``endpoints.kubernetes.io/managed-by: endpoint-controller`` and deleted with its
  Service (Endpoints without that label are never deleted), and
* ``discovery.k8s.io/v1`` ``EndpointSlice`` objects named ``<service>-<suffix>``
  (``generateName``), labelled ``kubernetes.io/service-name`` and
  ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``, owned
  by the Service. Each endpoint carries ``conditions`` (ready / serving /
  terminating), ``nodeName`` and a ``targetRef`` to its pod. Endpoints with the same
  resolved ports share slices of at most 100; an endpoint stays in the slice it is
  in, so one pod's change rewrites one slice.

Ports are resolved per pod: a numeric ``targetPort`` as is, a named one by looking
the name up in the pod's container ports (a pod without that port is left out of
that port's subset); the Service port's name and protocol are carried over.
``publishNotReadyAddresses`` makes every endpoint ready.

A Service without a selector is left alone: its ``Endpoints`` are the user's. Like
Kubernetes' EndpointSliceMirroring controller, this controller mirrors such user
``Endpoints`` into slices (``managed-by: endpointslicemirroring-controller.k8s.io``,
owned by the Endpoints) so the service proxy can route to them; Endpoints labelled
``endpointslice.kubernetes.io/skip-mirror: "true"`` (the ``kubernetes`` Service's)
are not mirrored.

Nothing is written unless it changed. After a write the controller waits until its
informers have seen the result before it reconciles that Service again, so a slow
watch never makes it create a slice twice.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Iterable

from ..kinds.discovery import SERVICE_NAME_LABEL
from ..client import ApiError, kind
from .base import Controller, split_key

log = logging.getLogger(__name__)
Obj = dict[str, Any]

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"  # on the Endpoints this controller writes
ENDPOINTS_CONTROLLER_NAME = "endpoint-controller"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
MAX_ENDPOINTS_PER_SLICE = 100
MAX_ENDPOINTS_ADDRESSES = 1000  # an Endpoints object is truncated beyond this, as in Kubernetes
EXPECTATION_TTL = 5.0  # give up waiting for the informer to show a write after this long
STALE_RECHECK = 0.02


def selector_of(svc: Obj) -> dict[str, str] | None:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    sel = spec.get("selector")
    return sel if isinstance(sel, dict) and sel else None


def matches(selector: dict[str, str], pod: Obj | None) -> bool:
    if pod is None:
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def resolve_port(pod: Obj, target: Any, protocol: str) -> int | None:
    """The pod's port for a Service port's targetPort: a number as is, a name via the container ports."""
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str):
        if target.isdigit():
            return int(target)
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                    return p.get("containerPort")
    return None


def _owner_ref(obj: Obj, api_version: str, kind_: str) -> dict:
    m = obj["metadata"]
    return {"apiVersion": api_version, "kind": kind_, "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _port_key(ports: list[dict]) -> tuple:
    return tuple(sorted((p["name"], p["protocol"], p["port"], p.get("appProtocol") or "") for p in ports))


def _ep_sort_key(ep: dict) -> tuple:
    return (ep["addresses"][0], (ep.get("targetRef") or {}).get("uid", ""))


class _Expectations:
    """Writes of one Service the informers have not shown yet: plural/name -> resourceVersion or None (deleted)."""

    def __init__(self):
        self.items: dict[tuple[str, str], str | None] = {}
        self.since = time.monotonic()


class EndpointsController(Controller):
    name = "endpoints-controller"
    workers = 4

    def setup(self) -> None:
        self.svc_kind = kind("services")
        self.pod_kind = kind("pods")
        self.ep_kind = kind("endpoints")
        self.slice_kind = kind("endpointslices", "discovery.k8s.io")
        self.svc_inf = self.informers.get(self.svc_kind)
        self.pod_inf = self.informers.get(self.pod_kind)
        self.ep_inf = self.informers.get(self.ep_kind)
        self.slice_inf = self.informers.get(self.slice_kind)
        self.svc_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.pod_inf.add_handler(self._on_pod)
        self.ep_inf.add_handler(lambda t, o, old: self.enqueue(o))  # same key as its Service
        self.slice_inf.add_handler(self._on_slice)
        self._svcs_by_ns: dict[str, dict[str, Obj]] = {}  # namespace -> name -> service (with a selector)
        self._slices: dict[str, dict[str, Obj]] = {}  # service key -> slice name -> slice
        self._pods_by_ns: dict[str, dict[str, Obj]] = {}  # namespace -> name -> pod
        self._pending: dict[str, _Expectations] = {}
        self.svc_inf.add_handler(self._index_service)

    # ----------------------------------------------------------------- indexes / handlers
    def _index_service(self, typ: str, svc: Obj, old: Obj | None) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        bucket = self._svcs_by_ns.setdefault(ns, {})
        if typ == "DELETED" or selector_of(svc) is None:
            bucket.pop(name, None)
        else:
            bucket[name] = svc

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
        if typ == "DELETED":
            bucket = self._pods_by_ns.get(ns)
            if bucket is not None:
                bucket.pop(name, None)
                if not bucket:
                    del self._pods_by_ns[ns]
        else:
            self._pods_by_ns.setdefault(ns, {})[name] = pod
        for svc_name, svc in (self._svcs_by_ns.get(ns) or {}).items():
            sel = selector_of(svc)
            if sel and (matches(sel, pod) or matches(sel, old)):
                self.queue.add(f"{ns}/{svc_name}")

    def _on_slice(self, typ: str, es: Obj, old: Obj | None) -> None:
        keys = set()
        for o in (old, es):
            svc = (o["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) if o else None
            if svc:
                key = f"{o['metadata']['namespace']}/{svc}"
                keys.add(key)
                bucket = self._slices.get(key)
                if bucket is not None:
                    bucket.pop(o["metadata"]["name"], None)
                    if not bucket:
                        del self._slices[key]
        svc = (es["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if typ != "DELETED" and svc:
            self._slices.setdefault(f"{es['metadata']['namespace']}/{svc}", {})[es["metadata"]["name"]] = es
        for key in keys:
            self.queue.add(key)

    # ----------------------------------------------------------------- expectations
    def _cache_behind(self, key: str) -> bool:
        exp = self._pending.get(key)
        if exp is None:
            return False
        if time.monotonic() - exp.since > EXPECTATION_TTL:
            self._pending.pop(key, None)
            return False
        for (plural, name), rv in list(exp.items.items()):
            inf = self.ep_inf if plural == "endpoints" else self.slice_inf
            cur = inf.get(f"{split_key(key)[0]}/{name}")
            if rv is None:
                seen = cur is None
            else:
                seen = cur is not None and _rv(cur) >= _rv_str(rv)
            if seen:
                del exp.items[(plural, name)]
        if not exp.items:
            self._pending.pop(key, None)
            return False
        return True

    def _expect(self, key: str, plural: str, name: str, rv: str | None) -> None:
        exp = self._pending.get(key)
        if exp is None:
            exp = self._pending[key] = _Expectations()
        exp.items[(plural, name)] = rv
        exp.since = time.monotonic()

    # ----------------------------------------------------------------- reconcile
    async def reconcile(self, key: str) -> float | None:
        if self._cache_behind(key):
            return STALE_RECHECK
        try:
            return await self._reconcile(key)
        except ApiError as e:
            if e.status == 403 and "being terminated" in str(e.body.get("message")):
                return None  # the namespace is going away, and the Service with it
            raise

    async def _reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.svc_inf.get(key)
        slices = list((self._slices.get(key) or {}).values())
        if svc is None:
            await self._delete_slices(key, [s for s in slices if _managed_by(s) == CONTROLLER_NAME])
            ep = self.ep_inf.get(key)
            if ep is not None and (ep["metadata"].get("labels") or {}).get(ENDPOINTS_MANAGED_BY_LABEL) \
                    == ENDPOINTS_CONTROLLER_NAME:
                await self.client.delete(self.ep_kind, ns, name)
            return None
        sel = selector_of(svc)
        if sel is None:
            await self._delete_slices(key, [s for s in slices if _managed_by(s) == CONTROLLER_NAME])
            await self._mirror(key, svc, slices)
            return None
        await self._delete_slices(key, [s for s in slices if _managed_by(s) == MIRROR_CONTROLLER_NAME])
        pods = [p for p in (self._pods_by_ns.get(ns) or {}).values() if matches(sel, p)]
        pods.sort(key=lambda p: p["metadata"]["name"])
        await self._sync_endpoints(key, svc, pods)
        groups = desired_slice_groups(svc, pods)
        mine = [s for s in slices if _managed_by(s) == CONTROLLER_NAME]
        await self._sync_slices(key, svc, mine, groups, CONTROLLER_NAME, _owner_ref(svc, "v1", "Service"))
        return None

    # ----------------------------------------------------------------- Endpoints
    async def _sync_endpoints(self, key: str, svc: Obj, pods: list[Obj]) -> None:
        ns, name = split_key(key)
        subsets, truncated = desired_subsets(svc, pods)
        labels = {**(svc["metadata"].get("labels") or {}), ENDPOINTS_MANAGED_BY_LABEL: ENDPOINTS_CONTROLLER_NAME}
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        cur = self.ep_inf.get(key)
        if cur is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets}
            if truncated:
                body["metadata"]["annotations"] = {OVER_CAPACITY_ANNOTATION: "truncated"}
            try:
                out = await self.client.create(self.ep_kind, body, ns)
            except ApiError as e:
                if e.status != 409:
                    raise
                self.queue.add_after(key, STALE_RECHECK)  # created meanwhile (by a user?): look again
                return
            self._expect(key, "endpoints", name, out["metadata"]["resourceVersion"])
            return
        annotations = dict(cur["metadata"].get("annotations") or {})
        if truncated:
            annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)
        if (cur.get("subsets") or []) == subsets and (cur["metadata"].get("labels") or {}) == labels \
                and (cur["metadata"].get("annotations") or {}) == annotations:
            return
        body = copy.deepcopy(cur)
        body["subsets"] = subsets
        body["metadata"]["labels"] = labels
        body["metadata"]["annotations"] = annotations
        out = await self.client.update(self.ep_kind, body)
        self._expect(key, "endpoints", name, out["metadata"]["resourceVersion"])

    # ----------------------------------------------------------------- EndpointSlices
    async def _sync_slices(self, key: str, owner: Obj, existing: list[Obj], groups: dict[tuple, tuple[list, list]],
                           managed_by: str, owner_ref: dict) -> None:
        """Make the slices of one manager hold exactly ``groups`` (port key -> (ports, endpoints))."""
        ns, svc_name = split_key(key)
        labels = {**(owner["metadata"].get("labels") or {}), SERVICE_NAME_LABEL: svc_name,
                  MANAGED_BY_LABEL: managed_by}
        if ((owner.get("spec") or {}).get("clusterIP") == "None") and owner.get("kind") == "Service":
            labels[HEADLESS_LABEL] = ""
        existing = sorted(existing, key=lambda s: s["metadata"]["name"])
        if not groups:  # no endpoints: one empty placeholder slice, as Kubernetes keeps
            groups = {(): ([], [])}
        plan: list[tuple[Obj | None, list, list]] = []  # (slice to reuse or None, ports, endpoints)
        spare: list[Obj] = []
        by_ports: dict[tuple, list[Obj]] = {}
        for s in existing:
            k = _port_key(s.get("ports") or [])
            if k in groups and s.get("addressType") == "IPv4":
                by_ports.setdefault(k, []).append(s)
            else:
                spare.append(s)
        for k, (ports, endpoints) in groups.items():
            want = {_ep_identity(ep): ep for ep in endpoints}
            placed: set = set()
            chunks: list[tuple[Obj | None, list]] = []
            for s in by_ports.get(k, []):  # an endpoint stays in the slice it is in
                kept = []
                for ep in s.get("endpoints") or []:
                    ident = _ep_identity(ep)
                    if ident in want and ident not in placed:
                        kept.append(want[ident])
                        placed.add(ident)
                chunks.append((s, kept))
            rest = [ep for ident, ep in want.items() if ident not in placed]
            for i, (s, kept) in enumerate(chunks):  # new endpoints fill slices with room first
                room = MAX_ENDPOINTS_PER_SLICE - len(kept)
                if room > 0 and rest:
                    chunks[i] = (s, kept + rest[:room])
                    rest = rest[room:]
            while rest:
                chunks.append((None, rest[:MAX_ENDPOINTS_PER_SLICE]))
                rest = rest[MAX_ENDPOINTS_PER_SLICE:]
            keep = [c for c in chunks if c[1]]
            if not keep:  # the placeholder: one empty slice
                keep = [chunks[0] if chunks else (None, [])]
            kept_slices = {id(c[0]) for c in keep if c[0] is not None}
            spare += [c[0] for c in chunks if c[0] is not None and id(c[0]) not in kept_slices]
            plan += [(s, ports, sorted(eps, key=_ep_sort_key)) for s, eps in keep]
        for s, ports, eps in plan:
            if s is None and spare:  # recycle a slice that is no longer needed rather than delete + create
                s = spare.pop(0)
            body: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"namespace": ns, "labels": labels, "ownerReferences": [owner_ref]},
                         "addressType": "IPv4", "endpoints": eps, "ports": ports}
            if s is None:
                body["metadata"]["generateName"] = f"{svc_name[:57]}-"  # + 5 random characters
                out = await self.client.create(self.slice_kind, body, ns)
            else:
                if (s.get("endpoints") or []) == eps and (s.get("ports") or []) == ports \
                        and (s["metadata"].get("labels") or {}) == labels \
                        and (s["metadata"].get("ownerReferences") or []) == [owner_ref] \
                        and s.get("addressType") == "IPv4":
                    continue
                if s.get("addressType") != "IPv4":  # immutable: replace it
                    spare.append(s)
                    body["metadata"]["generateName"] = f"{svc_name[:57]}-"
                    out = await self.client.create(self.slice_kind, body, ns)
                else:
                    upd = copy.deepcopy(s)
                    upd["metadata"]["labels"] = labels
                    upd["metadata"]["ownerReferences"] = [owner_ref]
                    upd["endpoints"], upd["ports"] = eps, ports
                    out = await self.client.update(self.slice_kind, upd)
            self._expect(key, "endpointslices", out["metadata"]["name"], out["metadata"]["resourceVersion"])
        await self._delete_slices(key, spare)

    async def _delete_slices(self, key: str, slices: Iterable[Obj]) -> None:
        for s in slices:
            ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
            await self.client.delete(self.slice_kind, ns, name)
            self._expect(key, "endpointslices", name, None)

    # ----------------------------------------------------------------- mirroring
    async def _mirror(self, key: str, svc: Obj, slices: list[Obj]) -> None:
        """User-managed Endpoints of a selector-less Service, mirrored into slices (Endpoints untouched)."""
        mirrored = [s for s in slices if _managed_by(s) == MIRROR_CONTROLLER_NAME]
        ep = self.ep_inf.get(key)
        if (ep is None or (ep["metadata"].get("labels") or {}).get(SKIP_MIRROR_LABEL) == "true"
                or (svc.get("spec") or {}).get("type") == "ExternalName"):
            await self._delete_slices(key, mirrored)
            return
        groups = mirrored_slice_groups(ep)
        if not groups:
            await self._delete_slices(key, mirrored)
            return
        await self._sync_slices(key, ep, mirrored, groups, MIRROR_CONTROLLER_NAME, _owner_ref(ep, "v1", "Endpoints"))


# ======================================================================= desired state (pure functions)


def _include(pod: Obj, publish_not_ready: bool, allow_terminating: bool) -> bool:
    st = pod.get("status") or {}
    if not st.get("podIP"):
        return False
    if st.get("phase") in ("Succeeded", "Failed"):
        return False
    if pod["metadata"].get("deletionTimestamp") and not allow_terminating:
        return False
    return True


def _target_ref(pod: Obj) -> dict:
    m = pod["metadata"]
    return {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"]}


def _hostname(svc: Obj, pod: Obj) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        return spec["hostname"]
    return None


def _service_ports(svc: Obj) -> list[dict]:
    return [p for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]


def _resolved_ports(svc: Obj, pod: Obj) -> list[dict]:
    out = []
    for sp in _service_ports(svc):
        proto = sp.get("protocol") or "TCP"
        number = resolve_port(pod, sp.get("targetPort", sp.get("port")), proto)
        if number is None:
            continue
        port = {"name": sp.get("name") or "", "port": number, "protocol": proto}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def desired_subsets(svc: Obj, pods: list[Obj]) -> tuple[list[dict], bool]:
    """The Endpoints subsets for a Service's pods (grouped by resolved ports), and whether they were truncated."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    headless_no_ports = not _service_ports(svc)
    groups: dict[tuple, dict] = {}
    count = 0
    truncated = False
    for pod in pods:
        if not _include(pod, publish, allow_terminating=publish):
            continue
        ports = _resolved_ports(svc, pod)
        if not ports and not headless_no_ports:
            continue  # none of the Service's ports exist on this pod
        if count >= MAX_ENDPOINTS_ADDRESSES:
            truncated = True
            break
        count += 1
        addr = {"ip": pod["status"]["podIP"]}
        host = _hostname(svc, pod)
        if host:
            addr["hostname"] = host
        if (pod.get("spec") or {}).get("nodeName"):
            addr["nodeName"] = pod["spec"]["nodeName"]
        addr["targetRef"] = _target_ref(pod)
        ep_ports = [{k: v for k, v in p.items()} for p in ports]
        for p in ep_ports:
            if not p["name"]:
                del p["name"]  # Endpoints ports have no name unless the Service port has one
        g = groups.setdefault(_port_key(ports), {"addresses": [], "notReadyAddresses": [], "ports": ep_ports})
        ready = publish or pod_ready(pod)
        g["addresses" if ready else "notReadyAddresses"].append(addr)
    subsets = []
    for k in sorted(groups):
        g = groups[k]
        ss: dict = {}
        for field in ("addresses", "notReadyAddresses"):
            if g[field]:
                ss[field] = sorted(g[field], key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        if g["ports"]:
            ss["ports"] = sorted(g["ports"], key=lambda p: (p.get("name", ""), p["protocol"], p["port"]))
        subsets.append(ss)
    return subsets, truncated


def desired_slice_groups(svc: Obj, pods: list[Obj]) -> dict[tuple, tuple[list, list]]:
    """port key -> (slice ports, endpoints) for a Service's pods."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    headless_no_ports = not _service_ports(svc)
    groups: dict[tuple, tuple[list, list]] = {}
    for pod in pods:
        if not _include(pod, publish, allow_terminating=True):
            continue
        ports = _resolved_ports(svc, pod)
        if not ports and not headless_no_ports:
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ready = pod_ready(pod)
        ep: dict = {"addresses": [pod["status"]["podIP"]],
                    "conditions": {"ready": (ready or publish) and not terminating,
                                   "serving": ready or publish, "terminating": terminating}}
        host = _hostname(svc, pod)
        if host:
            ep["hostname"] = host
        if (pod.get("spec") or {}).get("nodeName"):
            ep["nodeName"] = pod["spec"]["nodeName"]
        ep["targetRef"] = _target_ref(pod)
        k = _port_key(ports)
        groups.setdefault(k, (sorted(ports, key=lambda p: (p["name"], p["protocol"], p["port"])), []))[1].append(ep)
    return groups


def mirrored_slice_groups(ep: Obj) -> dict[tuple, tuple[list, list]]:
    groups: dict[tuple, tuple[list, list]] = {}
    for ss in ep.get("subsets") or []:
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP",
                  **({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})}
                 for p in ss.get("ports") or []]
        ports.sort(key=lambda p: (p["name"], p["protocol"], p["port"]))
        k = _port_key(ports)
        g = groups.setdefault(k, (ports, []))
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in ss.get(field) or []:
                ip = a.get("ip")
                if not ip or ":" in ip:
                    continue  # IPv4 slices only
                e: dict = {"addresses": [ip], "conditions": {"ready": ready}}
                for f in ("hostname", "nodeName", "targetRef"):
                    if a.get(f):
                        e[f] = a[f]
                g[1].append(e)
    return {k: v for k, v in groups.items() if v[1]}


def _ep_identity(ep: dict) -> tuple:
    ref = ep.get("targetRef") or {}
    return (ep["addresses"][0], ref.get("uid") or ref.get("name") or "")


def _managed_by(s: Obj) -> str | None:
    return (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL)


def _rv(obj: Obj) -> int:
    return _rv_str(obj["metadata"].get("resourceVersion") or "0")


def _rv_str(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        return 0
