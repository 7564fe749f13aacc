"""The node authorizer: what an agent (user ``system:node:<name>``, group ``system:nodes``)
may do, decided from the pods bound to its node (Kubernetes' Node authorizer and
NodeRestriction admission, cut to what a sendo agent does).

An agent may
* read Nodes, Pods, Services, Endpoints, EndpointSlices, Ingresses, IngressClasses,
  RuntimeClasses and ServiceAccounts (its informers list and watch them all, as a
  kubelet's do); create and update RuntimeClasses and IngressClasses (it declares the
  runtimes it runs and the ingress class it serves), and write the status of Services
  and Ingresses (the load-balancer address it serves them on);
* write only its own Node (and its status) and its own Lease in ``kube-node-lease``;
* change the status of, and delete, only the pods bound to it;
* read a Secret, ConfigMap or PersistentVolumeClaim only while a pod bound to it uses it
  (volumes, env, envFrom, imagePullSecrets) — a get by name, or a list/watch selecting
  that one object (``fieldSelector=metadata.name=<name>``, the kubelet's per-object
  watch) — and ask for a token only of the ServiceAccount such a pod runs as;
* read PersistentVolumes (they hold where a volume is, not secrets: the agent mounts the
  volumes bound to its pods' claims and watches for deleted local-path volumes), and
  remove finalizers from (patch) only the local-path volumes placed on it;
* list and watch Secrets of type ``kubernetes.io/tls`` (and only with that field
  selector): every node runs the ingress controller, which serves their certificates;
* write Events.
Anything else is refused. The pods' references are kept in memory from a store watch; a
refusal is checked once more against the store so a pod bound a moment ago is never
refused because the watch has not delivered it yet.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import orjson

from ..kinds.meta import SelectorError, parse_field_selector
from ..kinds.storage import LOCAL_PATH_NODE_ANNOTATION
from ..store import Event, Store
from .errors import APIError
from .follow import follow
from .options import Decision, User, current_user
from .paths import Target

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
PODS = "/registry/core/pods/"
READ = {"get", "list", "watch"}
READABLE = {("", "nodes"), ("", "pods"), ("", "services"), ("", "endpoints"), ("", "serviceaccounts"),
            ("discovery.k8s.io", "endpointslices"), ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "ingressclasses"), ("node.k8s.io", "runtimeclasses"), ("", "persistentvolumes")}
DECLARED = {("node.k8s.io", "runtimeclasses"), ("networking.k8s.io", "ingressclasses")}  # what a node serves
LOAD_BALANCED = {("", "services"), ("networking.k8s.io", "ingresses")}  # status.loadBalancer the node fills
TLS_SELECTOR = "type=kubernetes.io/tls"
PVS = "/registry/core/persistentvolumes/"
LEASE_NAMESPACE = "kube-node-lease"
Ref = tuple[str, str, str]  # (plural, namespace, name)


def node_of(user: User) -> str | None:
    """The node a user speaks for, if it is a node's identity."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX):] or None
    return None


def _names(items: Any, *path: str) -> Iterator[str]:
    for item in items if isinstance(items, list) else []:
        v: Any = item
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, str) and v:
            yield v


def pod_refs(pod: dict[str, Any]) -> set[Ref]:
    """What a pod uses that its node must read: Secrets, ConfigMaps, PVCs, its ServiceAccount."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    refs: set[Ref] = {("serviceaccounts", ns, spec.get("serviceAccountName") or "default")}
    refs |= {("secrets", ns, n) for n in _names(spec.get("imagePullSecrets"), "name")}
    volumes = spec.get("volumes") if isinstance(spec.get("volumes"), list) else []
    refs |= {("secrets", ns, n) for n in _names(volumes, "secret", "secretName")}
    refs |= {("configmaps", ns, n) for n in _names(volumes, "configMap", "name")}
    refs |= {("persistentvolumeclaims", ns, n) for n in _names(volumes, "persistentVolumeClaim", "claimName")}
    for v in volumes:
        sources = ((v.get("projected") or {}) if isinstance(v, dict) else {}).get("sources")
        refs |= {("secrets", ns, n) for n in _names(sources, "secret", "name")}
        refs |= {("configmaps", ns, n) for n in _names(sources, "configMap", "name")}
    for field in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(field) if isinstance(spec.get(field), list) else []
        for c in containers:
            if not isinstance(c, dict):
                continue
            refs |= {("secrets", ns, n) for n in _names(c.get("env"), "valueFrom", "secretKeyRef", "name")}
            refs |= {("configmaps", ns, n) for n in _names(c.get("env"), "valueFrom", "configMapKeyRef", "name")}
            refs |= {("secrets", ns, n) for n in _names(c.get("envFrom"), "secretRef", "name")}
            refs |= {("configmaps", ns, n) for n in _names(c.get("envFrom"), "configMapRef", "name")}
    return refs


def _pod_node(pod: dict[str, Any]) -> str:
    spec = pod.get("spec")
    return spec.get("nodeName") or "" if isinstance(spec, dict) else ""


class NodeGraph:
    """Pods by node and what they use, from a watch on the pods in the store."""

    def __init__(self, store: Store):
        self.store = store
        self.pods: dict[str, tuple[str, set[Ref]]] = {}  # store key -> (node, refs)
        self.uses: dict[tuple[str, Ref], int] = {}  # (node, ref) -> how many of its pods use it
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        kvs, rev = await self.store.list(PODS)
        for kv in kvs:
            self._set(kv.key, orjson.loads(kv.value))
        self._task = asyncio.create_task(self._watch_loop(rev), name="node-graph")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _set(self, key: str, pod: dict[str, Any] | None) -> None:
        old = self.pods.pop(key, None)
        if old is not None:
            for ref in old[1]:
                k = (old[0], ref)
                self.uses[k] -= 1
                if not self.uses[k]:
                    del self.uses[k]
        node = _pod_node(pod) if pod is not None else ""
        if node:
            refs = pod_refs(pod)  # type: ignore[arg-type]
            self.pods[key] = (node, refs)
            for ref in refs:
                self.uses[(node, ref)] = self.uses.get((node, ref), 0) + 1

    async def _watch_loop(self, rev: int) -> None:
        def on_event(ev: Event) -> None:
            self._set(ev.kv.key, None if ev.type == "delete" else orjson.loads(ev.kv.value))

        async def reread() -> int:
            kvs, rev = await self.store.list(PODS)
            self.pods.clear()
            self.uses.clear()
            for kv in kvs:
                self._set(kv.key, orjson.loads(kv.value))
            return rev
        await follow(self.store, PODS, rev, on_event, reread)

    def pod_on(self, node: str, ns: str, name: str) -> bool:
        entry = self.pods.get(f"{PODS}{ns}/{name}")
        return entry is not None and entry[0] == node

    def used_by(self, node: str, ref: Ref) -> bool:
        return (node, ref) in self.uses

    async def fresh_pod_on(self, node: str, ns: str, name: str) -> bool:
        kv = await self.store.get(f"{PODS}{ns}/{name}")
        return kv is not None and _pod_node(orjson.loads(kv.value)) == node

    async def fresh_used_by(self, node: str, ref: Ref) -> bool:
        kvs, _ = await self.store.list(f"{PODS}{ref[1]}/")
        return any(_pod_node(p) == node and ref in pod_refs(p) for p in (orjson.loads(kv.value) for kv in kvs))


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph):
        self.graph = graph

    async def authorize(self, user: User, verb: str, t: Target) -> Decision | None:
        """Allowed for a node's identity doing what a node does; None otherwise (RBAC decides:
        a node also holds what every authenticated user holds, such as discovery)."""
        node = node_of(user)
        if node is None or not t.plural:
            return None
        return Decision(True) if await self._allowed(node, verb, t) else None

    async def _allowed(self, node: str, verb: str, t: Target) -> bool:
        g, plural, ns, name, sub = t.group, t.plural, t.namespace or "", t.name, t.sub
        if (g, plural) in READABLE and verb in READ and not sub:
            return True
        if (g, plural) == ("", "events"):
            return verb in ("create", "update", "patch")
        if (g, plural) in DECLARED:
            return verb in ("create", "update", "patch") and not sub
        if (g, plural) in LOAD_BALANCED and sub == "status":
            return verb in ("get", "update", "patch")
        if (g, plural) == ("", "nodes"):  # its own Node; create is checked on the object (guard)
            return verb == "create" and not name or (name == node and verb in ("get", "update", "patch", "delete")
                                                      and sub in (None, "status"))
        if (g, plural) == ("coordination.k8s.io", "leases"):
            return ns == LEASE_NAMESPACE and (verb == "create" and not name or (
                name == node and verb in ("get", "update", "patch", "delete")))
        if (g, plural) == ("", "pods") and name:
            if (verb in ("update", "patch") and sub == "status") or (verb == "delete" and sub is None):
                return self.graph.pod_on(node, ns, name) or await self.graph.fresh_pod_on(node, ns, name)
            return False
        if (g, plural) == ("", "secrets") and verb in ("list", "watch") and t.field_selector == TLS_SELECTOR:
            return not name
        if (g, plural) in (("", "secrets"), ("", "configmaps"), ("", "persistentvolumeclaims")):
            if name:
                return verb == "get" and not sub and await self._uses(node, (plural, ns, name))
            one = _one_name(t.field_selector)
            return verb in ("list", "watch") and bool(ns and one) and await self._uses(node, (plural, ns, one))
        if (g, plural) == ("", "persistentvolumes") and name:
            return verb == "patch" and not sub and await self._local_volume_of(node, name)
        if (g, plural, sub) == ("", "serviceaccounts", "token") and name:
            return verb == "create" and await self._uses(node, ("serviceaccounts", ns, name))
        return False

    async def _uses(self, node: str, ref: Ref) -> bool:
        return self.graph.used_by(node, ref) or await self.graph.fresh_used_by(node, ref)

    async def _local_volume_of(self, node: str, name: str) -> bool:
        kv = await self.graph.store.get(f"{PVS}{name}")
        if kv is None:
            return False
        annotations = (orjson.loads(kv.value).get("metadata") or {}).get("annotations") or {}
        return annotations.get(LOCAL_PATH_NODE_ANNOTATION) == node


def _one_name(field_selector: str) -> str:
    """The name a field selector picks when it picks exactly one object by name, else ""."""
    try:
        reqs = parse_field_selector(field_selector)
    except SelectorError:
        return ""
    if len(reqs) == 1 and reqs[0][:2] == ("metadata.name", True):
        return reqs[0][2]
    return ""


async def restrict_node_writes(plural: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """NodeRestriction: a node creates or changes only its own Node and Lease (the name of a
    created object is only known from its body, so this runs on the object)."""
    node = node_of(current_user())
    if node is None:
        return
    name = (obj.get("metadata") or {}).get("name")
    if name != node:
        what = "node" if plural == "nodes" else "lease"
        raise APIError(403, f'{plural} "{name}" is forbidden: node "{node}" is not allowed to modify {what} "{name}"',
                       "Forbidden", {"name": name, "kind": plural})
