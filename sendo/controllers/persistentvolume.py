"""PersistentVolume controller: binds claims to volumes, provisions local-path volumes,
and releases and reclaims volumes whose claim is gone (kube-controller-manager's PV
binder plus k3s's local-path provisioner, in one loop).

* The default StorageClass `local-path` (provisioner `sendo.io/local-path`,
  `WaitForFirstConsumer`, reclaim policy Delete) is created at start when missing. A
  claim that names no class gets the default one (Kubernetes' retroactive default
  class assignment).
* A pending claim is bound to the smallest Available volume that fits it (class, access
  modes, capacity, a claimRef naming it if any). For a `WaitForFirstConsumer` class this
  waits until the scheduler has put `volume.kubernetes.io/selected-node` on the claim,
  and a volume with node affinity must allow that node.
* Otherwise, when the class's provisioner is `sendo.io/local-path`, a PersistentVolume
  `pvc-<claim uid>` is created: a hostPath directory under the node's storage directory
  (its Node's `sendo.io/local-path-dir` annotation), with node affinity to that node,
  the class's reclaim policy and the claim's requested capacity. The node's agent makes
  the directory when a pod mounts it.
* Binding sets the volume's `claimRef` and `Bound` phase, then the claim's `volumeName`,
  `Bound` phase, capacity and access modes.
* A volume whose claim is gone is `Released`; with reclaim policy Delete a local-path
  volume is deleted: its finalizer keeps it until the agent of its node has removed the
  directory. Retain keeps it Released with its data.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..client import ApiError, kind
from ..client.events import EventRecorder
from ..kinds.nodematch import term_matches
from ..kinds.pvc import pvc_storage_class
from ..kinds.quantity import parse_quantity
from ..kinds.storage import (CLEANUP_FINALIZER, DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_NODE_ANNOTATION,
                             LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION,
                             STORAGE_DIR_ANNOTATION, is_default_class, pod_claims)
from .base import Controller, split_key

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_CLASS = "local-path"
FALLBACK_STORAGE_DIR = "/var/lib/sendo/storage"
HOSTNAME_LABEL = "kubernetes.io/hostname"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
PVC_PROTECTION = "kubernetes.io/pvc-protection"  # a claim in use by a pod is not deleted until the pod is done


def _request(pvc: Obj) -> int:
    q = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
    try:
        return int(parse_quantity(q))
    except (ValueError, TypeError):
        return 0


def _capacity(pv: Obj) -> int:
    try:
        return int(parse_quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage", "0")))
    except (ValueError, TypeError):
        return 0


def volume_fits(pv: Obj, pvc: Obj, node_labels: dict[str, str] | None = None, node: str = "") -> bool:
    """Whether an Available volume may be bound to the claim."""
    spec, cspec = pv.get("spec") or {}, pvc.get("spec") or {}
    if pv["metadata"].get("deletionTimestamp") or (pv.get("status") or {}).get("phase") not in (None, "Pending",
                                                                                              "Available"):
        return False
    ref = spec.get("claimRef")
    if ref and (ref.get("name") != pvc["metadata"]["name"] or ref.get("namespace") != pvc["metadata"]["namespace"]
                or (ref.get("uid") and ref["uid"] != pvc["metadata"].get("uid"))):
        return False
    if (spec.get("storageClassName") or "") != pvc_storage_class(pvc):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
        return False
    if not set(cspec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if _capacity(pv) < _request(pvc):
        return False
    if node_labels is not None:
        terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or []
        if terms and not any(term_matches(t, node_labels, node) for t in terms):
            return False
    return True


class PersistentVolumeController(Controller):
    name = "persistentvolume-controller"

    def setup(self) -> None:
        self.pvc_kind, self.pv_kind = kind("persistentvolumeclaims"), kind("persistentvolumes")
        self.sc_kind = kind("storageclasses", "storage.k8s.io")
        self.claims = self.informers.get(self.pvc_kind)
        self.volumes = self.informers.get(self.pv_kind)
        self.classes = self.informers.get(self.sc_kind)
        self.nodes = self.informers.get(kind("nodes"))
        self.pods = self.informers.get(kind("pods"))
        self.pods.add_handler(self._on_pod)
        self.recorder = EventRecorder(self.client, "persistentvolume-controller")
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.classes.add_handler(lambda t, o, old: self._all_pending())

    async def start(self) -> None:
        await self._default_class()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    async def _default_class(self) -> None:
        if self.classes.get(DEFAULT_CLASS) is not None:
            return
        addon = await self.client.get_or_none(kind("addons", "sendo.dev", "v1alpha1"), None, "local-path-storage")
        if addon is not None and (addon.get("spec") or {}).get("enabled") is False:
            return  # switched off with `sendo addons disable local-path-storage`
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
                             "labels": {"app.kubernetes.io/managed-by": "sendo"}},
                "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer"}
        try:
            await self.client.create(self.sc_kind, body)
        except ApiError as e:
            if e.status != 409:
                log.warning("cannot create the default StorageClass %s: %s", DEFAULT_CLASS, e)

    # ------------------------------------------------------------- events
    def _on_claim(self, typ: str, pvc: Obj, old: Obj | None) -> None:
        self.queue.add("pvc:" + f"{pvc['metadata']['namespace']}/{pvc['metadata']['name']}")
        if typ == "DELETED":
            for pv in self.volumes.list():
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("uid") == pvc["metadata"].get("uid"):
                    self.queue.add("pv:" + pv["metadata"]["name"])

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        """A pod that ends may let a claim being deleted go."""
        if typ != "DELETED" and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            return
        ns = pod["metadata"]["namespace"]
        for claim in pod_claims(pod):
            pvc = self.claims.get(f"{ns}/{claim}")
            if pvc is not None and pvc["metadata"].get("deletionTimestamp"):
                self.queue.add(f"pvc:{ns}/{claim}")

    def _in_use(self, pvc: Obj) -> bool:
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        return any(p["metadata"].get("namespace") == ns and name in pod_claims(p)
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in self.pods.list())

    def _on_volume(self, typ: str, pv: Obj, old: Obj | None) -> None:
        self.queue.add("pv:" + pv["metadata"]["name"])
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(f"pvc:{ref.get('namespace', '')}/{ref['name']}")
        if typ != "ADDED":
            self._all_pending()  # a volume freed or changed may fit a waiting claim

    def _all_pending(self) -> None:
        for pvc in self.claims.list():
            if not (pvc.get("spec") or {}).get("volumeName"):
                self.queue.add(f"pvc:{pvc['metadata']['namespace']}/{pvc['metadata']['name']}")

    async def reconcile(self, key: str) -> float | None:
        what, _, rest = key.partition(":")
        if what == "pv":
            return await self._sync_volume(rest)
        return await self._sync_claim(rest)

    # ------------------------------------------------------------- claims
    def _default_class_name(self) -> str | None:
        defaults = sorted((c for c in self.classes.list() if is_default_class(c)),
                          key=lambda c: c["metadata"].get("creationTimestamp", ""), reverse=True)
        return defaults[0]["metadata"]["name"] if defaults else None

    async def _sync_claim(self, key: str) -> float | None:
        pvc = self.claims.get(key)
        if pvc is None:
            return None
        ns, name = split_key(key)
        finalizers = list(pvc["metadata"].get("finalizers") or [])
        if pvc["metadata"].get("deletionTimestamp"):
            if PVC_PROTECTION in finalizers and not self._in_use(pvc):
                finalizers.remove(PVC_PROTECTION)
                await self.client.patch(self.pvc_kind, ns, name, {"metadata": {
                    "finalizers": finalizers, "resourceVersion": pvc["metadata"]["resourceVersion"]}})
            return None
        if PVC_PROTECTION not in finalizers:
            pvc = await self.client.patch(self.pvc_kind, ns, name, {"metadata": {
                "finalizers": [*finalizers, PVC_PROTECTION], "resourceVersion": pvc["metadata"]["resourceVersion"]}})
        spec = pvc.get("spec") or {}
        if spec.get("storageClassName") is None and pvc_storage_class(pvc) == "" \
                and "volume.beta.kubernetes.io/storage-class" not in (pvc["metadata"].get("annotations") or {}):
            default = self._default_class_name()
            if default:
                await self.client.patch(self.pvc_kind, ns, name, {"spec": {"storageClassName": default}})
            return None
        if spec.get("volumeName"):
            pv = self.volumes.get(spec["volumeName"])
            if pv is None:  # just provisioned, its watch event not here yet? ask before calling it lost
                pv = await self.client.get_or_none(self.pv_kind, None, spec["volumeName"])
            if pv is None:
                return await self._claim_status(pvc, "Lost", None)
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if not ref.get("name"):
                pv = await self._bind_volume(pv, pvc)  # pre-bound by the user
            elif ref.get("uid") not in (None, pvc["metadata"]["uid"]):
                return await self._claim_status(pvc, "Lost", None)
            return await self._claim_status(pvc, "Bound", pv)
        cls = self.classes.get(pvc_storage_class(pvc)) if pvc_storage_class(pvc) else None
        selected = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
        wait = cls is not None and cls.get("volumeBindingMode") == "WaitForFirstConsumer"
        if wait and not selected:
            self.recorder.emit(pvc, "Normal", "WaitForFirstConsumer",
                               "waiting for first consumer to be created before binding")
            return None
        node = self.nodes.get(selected) if selected else None
        labels = ((node or {}).get("metadata") or {}).get("labels") or {HOSTNAME_LABEL: selected} if selected else None
        fitting = sorted((pv for pv in self.volumes.list() if volume_fits(pv, pvc, labels, selected or "")),
                         key=_capacity)
        if fitting:
            pv = await self._bind_volume(fitting[0], pvc)
            return await self._bind_claim(pvc, pv)
        if cls is None or cls.get("provisioner") != LOCAL_PATH_PROVISIONER:
            if cls is None and pvc_storage_class(pvc):
                self.recorder.emit(pvc, "Warning", "ProvisioningFailed",
                                   f'storageclass.storage.k8s.io "{pvc_storage_class(pvc)}" not found')
            return None
        pv = await self._provision(pvc, cls, selected)
        if pv is None:
            return 5.0  # no node to put it on yet
        return await self._bind_claim(pvc, pv)

    async def _provision(self, pvc: Obj, cls: Obj, node_name: str | None) -> Obj | None:
        if not node_name:  # Immediate binding: the first ready node, by name
            names = sorted(n["metadata"]["name"] for n in self.nodes.list())
            if not names:
                return None
            node_name = names[0]
        node = self.nodes.get(node_name)
        base = ((node or {}).get("metadata", {}).get("annotations") or {}).get(STORAGE_DIR_ANNOTATION) \
            or (cls.get("parameters") or {}).get("path") or FALLBACK_STORAGE_DIR
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        pv_name = f"pvc-{meta['uid']}"
        policy = cls.get("reclaimPolicy") or "Delete"
        body: Obj = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name,
                         "annotations": {PROVISIONED_BY_ANNOTATION: LOCAL_PATH_PROVISIONER,
                                         LOCAL_PATH_NODE_ANNOTATION: node_name},
                         "finalizers": [CLEANUP_FINALIZER] if policy == "Delete" else []},
            "spec": {"capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {})
                                                 .get("storage", "0"))},
                     "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                     "persistentVolumeReclaimPolicy": policy,
                     "storageClassName": cls["metadata"]["name"],
                     "volumeMode": spec.get("volumeMode") or "Filesystem",
                     "hostPath": {"path": os.path.join(base, f"{pv_name}_{meta['namespace']}_{meta['name']}"),
                                  "type": "DirectoryOrCreate"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": HOSTNAME_LABEL, "operator": "In", "values": [node_name]}]}]}},
                     "claimRef": self._claim_ref(pvc)}}
        existing = self.volumes.get(pv_name)
        if existing is not None:
            return existing
        try:
            pv = await self.client.create(self.pv_kind, body)
        except ApiError as e:
            if e.status != 409:
                self.recorder.emit(pvc, "Warning", "ProvisioningFailed", f"failed to provision volume: {e}")
                raise
            pv = await self.client.get(self.pv_kind, None, pv_name)
        self.recorder.emit(pvc, "Normal", "ProvisioningSucceeded",
                           f"Successfully provisioned volume {pv_name} on node {node_name}")
        return await self._volume_status(pv, "Bound")

    @staticmethod
    def _claim_ref(pvc: Obj) -> Obj:
        m = pvc["metadata"]
        return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": m["namespace"], "name": m["name"],
                "uid": m["uid"], "resourceVersion": m.get("resourceVersion", "")}

    async def _bind_volume(self, pv: Obj, pvc: Obj) -> Obj:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != pvc["metadata"]["uid"]:
            patch = {"metadata": {"annotations": {BOUND_BY_CONTROLLER: "yes"},
                                  "resourceVersion": pv["metadata"]["resourceVersion"]},
                     "spec": {"claimRef": self._claim_ref(pvc)}}
            pv = await self.client.patch(self.pv_kind, None, pv["metadata"]["name"], patch)
        return await self._volume_status(pv, "Bound")

    async def _bind_claim(self, pvc: Obj, pv: Obj) -> float | None:
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        patch = {"metadata": {"annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"}},
                 "spec": {"volumeName": pv["metadata"]["name"]}}
        pvc = await self.client.patch(self.pvc_kind, ns, name, patch)
        return await self._claim_status(pvc, "Bound", pv)

    async def _claim_status(self, pvc: Obj, phase: str, pv: Obj | None) -> float | None:
        st: Obj = {"phase": phase}
        if pv is not None:
            st["capacity"] = dict((pv.get("spec") or {}).get("capacity") or {})
            st["accessModes"] = list((pv.get("spec") or {}).get("accessModes") or [])
        old = pvc.get("status") or {}
        if all(old.get(k) == v for k, v in st.items()):
            return None
        await self.client.patch(self.pvc_kind, pvc["metadata"]["namespace"], pvc["metadata"]["name"],
                                {"status": st}, sub="status")
        if phase == "Bound":
            log.info("claim %s/%s bound to %s", pvc["metadata"]["namespace"], pvc["metadata"]["name"],
                     pv["metadata"]["name"] if pv else "")
        return None

    # ------------------------------------------------------------- volumes
    async def _volume_status(self, pv: Obj, phase: str, reason: str = "", message: str = "") -> Obj:
        st = pv.get("status") or {}
        if st.get("phase") == phase and (st.get("reason") or "") == reason:
            return pv
        body: Obj = {"status": {"phase": phase, "reason": reason or None, "message": message or None}}
        return await self.client.patch(self.pv_kind, None, pv["metadata"]["name"], body, sub="status")

    async def _sync_volume(self, name: str) -> float | None:
        pv = self.volumes.get(name)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return None
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef") or {}
        if not ref.get("name"):
            await self._volume_status(pv, "Available")
            return None
        pvc = self.claims.get(f"{ref.get('namespace', '')}/{ref['name']}")
        if pvc is not None and ref.get("uid") in (None, "", pvc["metadata"].get("uid")):
            if (pvc.get("spec") or {}).get("volumeName") == name:
                await self._volume_status(pv, "Bound")
            elif (pv.get("status") or {}).get("phase") in (None, "Pending"):
                await self._volume_status(pv, "Available")
            return None
        if pvc is None and ref.get("uid") is None:
            return None  # pre-bound to a claim not created yet
        # the claim is gone (or is another claim of that name now): released
        pv = await self._volume_status(pv, "Released", message="the claim was deleted")
        policy = spec.get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Delete":
            ann = pv["metadata"].get("annotations") or {}
            if ann.get(PROVISIONED_BY_ANNOTATION) == LOCAL_PATH_PROVISIONER:
                try:
                    await self.client.delete(self.pv_kind, None, name)
                    log.info("deleting persistentvolume %s: its claim is gone (reclaim policy Delete)", name)
                except ApiError as e:
                    if e.status != 404:
                        raise
            else:
                await self._volume_status(pv, "Failed", "VolumeFailedDelete",
                                          f"no deleter for volume {name}: only {LOCAL_PATH_PROVISIONER} volumes "
                                          "are deleted")
        return None
