"""DaemonSet controller: one pod of the template on every eligible node.

A node is eligible when the template's nodeSelector and required node affinity accept
it and the pod tolerates its NoSchedule and NoExecute taints — counting the
tolerations Kubernetes adds to every daemon pod (not-ready and unreachable for
NoExecute; unschedulable, disk/memory/pid pressure for NoSchedule), so a cordoned node
keeps its daemons. Each pod is pinned to its node by a required node affinity on
`metadata.name` (as Kubernetes does) and placed by the scheduler like any pod.

Updates: RollingUpdate replaces old pods node by node within maxUnavailable, or, with
maxSurge, starts the new pod beside the old one and deletes the old one once the new
one is available; OnDelete creates new pods only where old ones were deleted. Each
template is kept as a ControllerRevision (history.py) for `kubectl rollout undo ds`.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from typing import Any

from ..client import kind
from ..client.events import EventRecorder
from ..kinds.nodematch import node_selector_matches, tolerates
from .base import Controller, owner_key, split_key
from .deployment import resolve
from .history import REVISION_HASH, History, sync_history, truncate_history
from .podutil import OwnerIndex, available_in, controller_ref, count_available, is_ready, is_terminating

log = logging.getLogger(__name__)
Obj = dict[str, Any]
TEMPLATE_GENERATION = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
EXPECTATION_TTL = 30.0

# What Kubernetes adds to every daemon pod (pkg/controller/daemon/util.AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


def daemon_pod_spec(template_spec: Obj, node: str) -> Obj:
    """The template's pod spec with the daemon tolerations added and the pod pinned to node."""
    spec = copy.deepcopy(template_spec)
    tolerations = list(spec.get("tolerations") or [])
    extra = DAEMON_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] and
                   (x.get("operator") or "Equal") == "Exists" for x in tolerations):
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    affinity = spec.setdefault("affinity", {}) or {}
    spec["affinity"] = affinity
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
    return spec


def pinned_node(pod: Obj) -> str | None:
    """The node a daemon pod belongs to: where it is bound, else where its affinity pins it."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def should_run(template_spec: Obj, node: Obj, running: bool) -> bool:
    """Whether the node should run the daemon pod. A pod already running there stays
    through NoSchedule taints it does not tolerate (only NoExecute ones remove it)."""
    if not node_selector_matches(template_spec, node):
        return False
    tolerations = daemon_pod_spec(template_spec, "")["tolerations"]
    for t in (node.get("spec") or {}).get("taints") or []:
        effect = t.get("effect")
        if effect == "NoExecute" or (effect == "NoSchedule" and not running):
            if not tolerates(tolerations, t.get("key", ""), t.get("value") or "", effect):
                return False
    return True


def _failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


class DaemonSetController(Controller):
    name = "daemonset-controller"
    workers = 2

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.ds_kind = kind("daemonsets", "apps")
        self.pod_kind = kind("pods")
        self.ds_inf = self.informers.get(self.ds_kind)
        self.node_inf = self.informers.get(kind("nodes"))
        self.pod_inf = self.informers.get(self.pod_kind)
        self.cr_inf = self.informers.get(kind("controllerrevisions", "apps"))
        self.pods = OwnerIndex("DaemonSet")
        self.revisions = OwnerIndex("DaemonSet")
        self.ds_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.node_inf.add_handler(self._on_node)
        self.pod_inf.add_handler(self.pods.handler(self._queue_owner))
        self.cr_inf.add_handler(self.revisions.handler(self._queue_owner))
        self.recorder = EventRecorder(self.client, self.name)
        self.creating: dict[str, dict[str, float]] = {}  # ds key -> node -> when its pod was created

    def _queue_owner(self, obj: Obj) -> None:
        key = owner_key(obj, "DaemonSet")
        if key:
            self.queue.add(key)

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        if old is not None and typ == "MODIFIED" and _node_facts(old) == _node_facts(node):
            return  # a heartbeat: nothing a daemon placement reads changed
        for ds in self.ds_inf.list():
            self.enqueue(ds)

    async def reconcile(self, key: str) -> float | None:
        ds = self.ds_inf.get(key)
        if ds is None:
            self.creating.pop(key, None)
            return None
        if ds["metadata"].get("deletionTimestamp"):
            return None
        ns, _ = split_key(key)
        uid = ds["metadata"]["uid"]
        history = await sync_history(self.client, ds, self.revisions.owned(uid))
        pods = self.pods.owned(uid)
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            n = pinned_node(p)
            if n:
                by_node.setdefault(n, []).append(p)
        creating = self.creating.setdefault(key, {})
        now = time.monotonic()
        for n in list(creating):
            if now - creating[n] > EXPECTATION_TTL or any(not is_terminating(p) for p in by_node.get(n, [])):
                del creating[n]
        spec = ds.get("spec") or {}
        tspec = (spec.get("template") or {}).get("spec") or {}
        wanted: list[str] = []
        to_create: list[str] = []
        to_delete: list[Obj] = []
        for node in self.node_inf.list():
            name = node["metadata"]["name"]
            here = [p for p in by_node.get(name, []) if not is_terminating(p)]
            if should_run(tspec, node, bool(here)):
                wanted.append(name)
                failed = [p for p in here if _failed(p)]
                to_delete += failed
                alive = [p for p in here if not _failed(p)]
                if not alive and name not in creating:
                    to_create.append(name)
                elif len(alive) > 1:
                    to_delete += self._extras(alive, history.hash)
            else:
                to_delete += here
        known = {n["metadata"]["name"] for n in self.node_inf.list()}
        for name, ps in by_node.items():
            if name not in known:  # the node is gone
                to_delete += [p for p in ps if not is_terminating(p)]
        if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            more_create, more_delete = self._rolling(ds, history.hash, wanted, by_node, creating)
            to_create += [n for n in more_create if n not in to_create]
            to_delete += [p for p in more_delete if p not in to_delete]
        for name in to_create:
            await self._create(ds, ns, name, history)
            creating[name] = time.monotonic()
        for p in to_delete:
            await self.client.delete(self.pod_kind, ns, p["metadata"]["name"])
            self.recorder.emit(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
        in_use = {f"{ds['metadata']['name']}-{(p['metadata'].get('labels') or {}).get(REVISION_HASH)}"
                  for p in pods}
        await truncate_history(self.client, history, in_use, spec.get("revisionHistoryLimit", 10))
        return await self._sync_status(ds, wanted, by_node, history)

    @staticmethod
    def _extras(alive: list[Obj], current: str) -> list[Obj]:
        """More than one pod on a node: keep one of the current template and one older one
        (the rolling update removes that once the new one is available), the best first."""
        def rank(p: Obj):
            return (0 if is_ready(p) else 1, p["metadata"].get("creationTimestamp", ""))
        new = sorted([p for p in alive if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == current], key=rank)
        old = sorted([p for p in alive if p not in new], key=rank)
        return new[1:] + old[1:]

    def _rolling(self, ds: Obj, current: str, wanted: list[str], by_node: dict[str, list[Obj]],
                 creating: dict[str, float]) -> tuple[list[str], list[Obj]]:
        """Which old pods to delete (and, with maxSurge, where to start new pods first)."""
        spec = ds["spec"]
        ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        total = len(wanted)
        max_surge = resolve(ru.get("maxSurge", 0), total, True)
        max_unavailable = resolve(ru.get("maxUnavailable", 1), total, True)
        if not max_surge and not max_unavailable:
            max_unavailable = 1
        min_ready = spec.get("minReadySeconds", 0) or 0
        now = dt.datetime.now(dt.timezone.utc)

        def available(p: Obj) -> bool:
            return available_in(p, min_ready, now) == 0

        create: list[str] = []
        delete: list[Obj] = []
        unavailable = 0
        candidates: list[tuple[str, Obj]] = []  # nodes whose only pod is old and available
        surging = 0
        for name in wanted:
            alive = [p for p in by_node.get(name, []) if not is_terminating(p) and not _failed(p)]
            new = [p for p in alive if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == current]
            old = [p for p in alive if p not in new]
            if not alive:
                unavailable += 1
                continue
            if not old:
                if not any(available(p) for p in new):
                    unavailable += 1
                continue
            if new:  # surging here: the old pod goes once the new one is available
                surging += 1
                if any(available(p) for p in new):
                    delete += old
                continue
            if not any(available(p) for p in old):
                delete += old  # an old pod that is not available anyway costs nothing to replace
                unavailable += 1
                continue
            candidates.append((name, old[0]))
        if max_surge:
            room = max_surge - surging
            for name, _ in candidates:
                if room <= 0:
                    break
                if name not in creating:
                    create.append(name)
                    room -= 1
            return create, delete
        room = max_unavailable - unavailable
        for _, pod in candidates:
            if room <= 0:
                break
            delete.append(pod)
            room -= 1
        return create, delete

    async def _create(self, ds: Obj, ns: str, node: str, history: History) -> None:
        tmpl = (ds.get("spec") or {}).get("template") or {}
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        meta.pop("name", None)
        meta["generateName"] = ds["metadata"]["name"] + "-"
        meta["namespace"] = ns
        labels = meta.setdefault("labels", {})
        labels[REVISION_HASH] = history.hash
        generation = (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
        if generation:
            labels[TEMPLATE_GENERATION] = generation
        meta["ownerReferences"] = [controller_ref(ds)]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
               "spec": daemon_pod_spec(tmpl.get("spec") or {}, node)}
        created = await self.client.create(self.pod_kind, pod, ns)
        self.recorder.emit(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _sync_status(self, ds: Obj, wanted: list[str], by_node: dict[str, list[Obj]],
                           history: History) -> float | None:
        min_ready = (ds.get("spec") or {}).get("minReadySeconds", 0) or 0
        now = dt.datetime.now(dt.timezone.utc)
        current = ready = available = updated = 0
        recheck: float | None = None
        for name in wanted:
            alive = [p for p in by_node.get(name, []) if not is_terminating(p) and not _failed(p)
                     and (p.get("spec") or {}).get("nodeName")]
            if not alive:
                continue
            current += 1
            if any((p["metadata"].get("labels") or {}).get(REVISION_HASH) == history.hash for p in alive):
                updated += 1
            r, a, left = count_available(alive, min_ready, now)
            ready += 1 if r else 0
            available += 1 if a else 0
            if left is not None and not a:
                recheck = min(recheck or left, left)
        misscheduled = sum(1 for name, ps in by_node.items() if name not in wanted and
                           any(not is_terminating(p) and (p.get("spec") or {}).get("nodeName") for p in ps))
        status = dict(ds.get("status") or {})
        new = {**status, "desiredNumberScheduled": len(wanted), "currentNumberScheduled": current,
               "numberMisscheduled": misscheduled, "numberReady": ready, "updatedNumberScheduled": updated,
               "numberAvailable": available, "numberUnavailable": len(wanted) - available,
               "observedGeneration": ds["metadata"].get("generation", 1)}
        if history.collision_count:
            new["collisionCount"] = history.collision_count
        for k in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not new[k]:
                new.pop(k)
        if new != status:
            body = copy.deepcopy(ds)
            body["status"] = new
            await self.client.update_status(self.ds_kind, body)
        return recheck + 0.05 if recheck else None


def _node_facts(node: Obj) -> tuple:
    return ((node.get("metadata") or {}).get("labels"), (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"))
