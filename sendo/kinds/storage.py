"""PersistentVolume (core/v1), StorageClass and CSIStorageCapacity (storage.k8s.io/v1): the
storage a claim is bound to, the classes that say how to make it, and what capacity a
driver reports per class and topology (stored for the clients and drivers that use it).

Rules are Kubernetes' (pkg/apis/core/validation ValidatePersistentVolume,
pkg/apis/storage/validation): a volume has a capacity, access modes and exactly one
source; a class's provisioner, parameters, reclaim policy and binding mode never change.
sendo mounts `hostPath` and `local` volumes; others are stored for clients that only
record them.
"""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, forbidden, required, set_default, strip_nulls, unsupported
from .printing import age_column, as_dict, name_column, name_of, object_age
from .pvc import ACCESS_MODES, VOLUME_MODES, access_modes_cell
from .quantity import QuantityError, parse_quantity
from .validation import (KindStrategy, check_enum, check_name, get, invalid_value, is_dns1123_subdomain,
                         is_qualified_name, nonnegative_quantity, required_because, type_invalid,
                         validate_label_selector)
from .volumes import HOST_PATH_TYPES

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"  # the scheduler's pick for a waiting claim
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
# sendo's local-path provisioner: a directory per volume on the node the first pod runs on
LOCAL_PATH_PROVISIONER = "sendo.io/local-path"
LOCAL_PATH_NODE_ANNOTATION = "sendo.io/local-path-node"  # on such a PersistentVolume: its node
STORAGE_DIR_ANNOTATION = "sendo.io/local-path-dir"  # on a Node: where its local-path volumes live
CLEANUP_FINALIZER = "sendo.io/local-path-cleanup"  # the node's agent removes the directory, then this
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
BINDING_MODES = ["Immediate", "WaitForFirstConsumer"]
# volume sources a PersistentVolume may name (one of them); sendo mounts hostPath and local
PV_SOURCES = ["awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume",
              "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs",
              "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos",
              "vsphereVolume"]


def is_default_class(sc: Obj) -> bool:
    ann = as_dict(as_dict(sc.get("metadata")).get("annotations"))
    return (ann.get(DEFAULT_CLASS_ANNOTATION) or ann.get(BETA_DEFAULT_CLASS_ANNOTATION)) == "true"


def pod_claims(pod: Obj) -> list[str]:
    """The names of the PersistentVolumeClaims a pod's volumes use."""
    volumes = as_dict(pod.get("spec")).get("volumes")
    return [as_dict(v["persistentVolumeClaim"]).get("claimName", "") for v in volumes or []
            if isinstance(v, dict) and isinstance(v.get("persistentVolumeClaim"), dict)]


def pv_storage_path(pv: Obj) -> str | None:
    """The directory on its node a hostPath or local volume lives in."""
    spec = as_dict(pv.get("spec"))
    for src in ("hostPath", "local"):
        p = as_dict(spec.get(src)).get("path")
        if isinstance(p, str) and p:
            return p
    return None


# ======================================================================= PersistentVolume

def pv_row(pv: Obj) -> list[Any]:
    spec, status, meta = as_dict(pv.get("spec")), as_dict(pv.get("status")), as_dict(pv.get("metadata"))
    claim = as_dict(spec.get("claimRef"))
    claim_cell = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim.get("name") else ""
    phase = "Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "")
    mode = spec.get("volumeMode")
    vac = spec.get("volumeAttributesClassName")
    return [name_of(pv), str(as_dict(spec.get("capacity")).get("storage") or ""),
            access_modes_cell(spec.get("accessModes")), str(spec.get("persistentVolumeReclaimPolicy") or ""),
            phase, claim_cell, str(spec.get("storageClassName") or ""),
            vac if isinstance(vac, str) and vac else "<unset>", str(status.get("reason") or ""), object_age(pv),
            mode if isinstance(mode, str) else "<unset>"]


PV_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Capacity", description="The storage the volume has."),
        Column("Access Modes", description="How the volume may be mounted."),
        Column("Reclaim Policy", description="What happens to the volume when its claim is released."),
        Column("Status", description="Available, Bound, Released or Failed."),
        Column("Claim", description="The claim bound to the volume."),
        Column("StorageClass", description="StorageClass of the volume."),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the volume."),
        Column("Reason", description="Why the volume is in its phase."),
        age_column(),
        Column("VolumeMode", priority=1, description="Filesystem or Block."),
    ],
    row=pv_row,
)


def _validate_node_affinity(aff: Any, path: str, causes: list[Cause]) -> None:
    if aff is None:
        return
    if not isinstance(aff, dict):
        causes.append(type_invalid(path, aff, dict))
        return
    req = aff.get("required")
    if not isinstance(req, dict):
        causes.append(required(f"{path}.required") if req is None else type_invalid(f"{path}.required", req, dict))
        return
    terms = get(req, "nodeSelectorTerms", f"{path}.required.nodeSelectorTerms", list, causes)
    if not terms:
        causes.append(required_because(f"{path}.required.nodeSelectorTerms", "must have at least one node selector term"))


class PersistentVolumeStrategy(KindStrategy):
    has_spec = False  # volumes carry no metadata.generation in Kubernetes

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        set_default(spec, "persistentVolumeReclaimPolicy", "Retain")
        set_default(spec, "volumeMode", "Filesystem")
        if isinstance(spec, dict) and isinstance(spec.get("hostPath"), dict):
            set_default(spec["hostPath"], "type", "")

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec") if spec is None else type_invalid("spec", spec, dict)]
        modes = get(spec, "accessModes", "spec.accessModes", list, causes)
        if not modes and spec.get("accessModes") is None or modes == []:
            causes.append(required("spec.accessModes"))
        for m in modes or []:
            if m not in ACCESS_MODES:
                causes.append(unsupported("spec.accessModes", m, ACCESS_MODES))
        capacity = get(spec, "capacity", "spec.capacity", dict, causes)
        if not capacity or "storage" not in capacity:
            causes.append(required("spec.capacity"))
        for name, q in (capacity or {}).items():
            if name != "storage":
                causes.append(unsupported("spec.capacity", name, ["storage"]))
                continue
            try:
                if parse_quantity(q) <= 0:
                    causes.append(invalid_value("spec.capacity[storage]", q, "must be greater than zero"))
            except (QuantityError, TypeError, ValueError):
                causes.append(invalid_value("spec.capacity[storage]", q, "must be a quantity, e.g. 1Gi"))
        sources = [k for k in PV_SOURCES if spec.get(k) is not None]
        if not sources:
            causes.append(required_because("spec", "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
        for src in ("hostPath", "local"):
            if src in sources:
                body = get(spec, src, f"spec.{src}", dict, causes) or {}
                path = body.get("path")
                if not isinstance(path, str) or not path:
                    causes.append(required(f"spec.{src}.path"))
                elif ".." in path.split("/"):
                    causes.append(invalid_value(f"spec.{src}.path", path, "must not contain '..'"))
        if "hostPath" in sources:
            check_enum(as_dict(spec.get("hostPath")).get("type"), "spec.hostPath.type", HOST_PATH_TYPES, causes,
                       optional=True)
        if "local" in sources and spec.get("nodeAffinity") is None:
            causes.append(required_because("spec.nodeAffinity", "Local volume requires node affinity"))
        _validate_node_affinity(spec.get("nodeAffinity"), "spec.nodeAffinity", causes)
        check_enum(spec.get("persistentVolumeReclaimPolicy"), "spec.persistentVolumeReclaimPolicy",
                   RECLAIM_POLICIES, causes, optional=True)
        mode = spec.get("volumeMode")
        if mode is not None and mode not in VOLUME_MODES:
            causes.append(unsupported("spec.volumeMode", mode, VOLUME_MODES))
        cls = get(spec, "storageClassName", "spec.storageClassName", str, causes)
        if cls:
            causes += [invalid_value("spec.storageClassName", cls, m) for m in is_dns1123_subdomain(cls)]
        ref = spec.get("claimRef")
        if ref is not None and not isinstance(ref, dict):
            causes.append(type_invalid("spec.claimRef", ref, dict))
        elif isinstance(ref, dict) and not ref.get("name"):
            causes.append(required("spec.claimRef.name"))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes: list[Cause] = []
        new_spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        for src in PV_SOURCES:
            if strip_nulls(new_spec.get(src)) != strip_nulls(old_spec.get(src)):
                causes.append(forbidden(f"spec.{src}", "spec.persistentvolumesource is immutable after creation"))
                break
        if old_spec.get("volumeMode") != new_spec.get("volumeMode"):
            causes.append(invalid_value("spec.volumeMode", new_spec.get("volumeMode"), "field is immutable"))
        if old_spec.get("nodeAffinity") is not None and \
                strip_nulls(old_spec.get("nodeAffinity")) != strip_nulls(new_spec.get("nodeAffinity")):
            causes.append(invalid_value("spec.nodeAffinity", new_spec.get("nodeAffinity"), "field is immutable"))
        return causes


# ======================================================================= StorageClass

def storage_class_row(sc: Obj) -> list[Any]:
    name = name_of(sc) + (" (default)" if is_default_class(sc) else "")
    expand = sc.get("allowVolumeExpansion")
    return [name, str(sc.get("provisioner") or ""), str(sc.get("reclaimPolicy") or ""),
            str(sc.get("volumeBindingMode") or ""), "true" if expand is True else "false", object_age(sc)]


STORAGE_CLASS_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Provisioner", description="The driver that makes volumes of this class."),
        Column("ReclaimPolicy", description="What happens to a provisioned volume when its claim goes."),
        Column("VolumeBindingMode", description="When claims are bound and provisioned."),
        Column("AllowVolumeExpansion", description="Whether claims of this class may grow."),
        age_column(),
    ],
    row=storage_class_row,
)

_SC_IMMUTABLE = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")


class StorageClassStrategy(KindStrategy):
    """Top-level fields, no spec or status."""

    has_status = False
    has_spec = False

    def default(self, obj: Obj) -> None:
        set_default(obj, "reclaimPolicy", "Delete")
        set_default(obj, "volumeBindingMode", "Immediate")

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        check_name(obj.get("provisioner"), "provisioner", is_qualified_name, causes)
        params = get(obj, "parameters", "parameters", dict, causes) or {}
        for k, v in params.items():
            if not isinstance(v, str):
                causes.append(type_invalid(f"parameters[{k}]", v, str))
        check_enum(obj.get("reclaimPolicy"), "reclaimPolicy", ["Delete", "Retain"], causes, optional=True)
        check_enum(obj.get("volumeBindingMode"), "volumeBindingMode", BINDING_MODES, causes, optional=True)
        get(obj, "allowVolumeExpansion", "allowVolumeExpansion", bool, causes)
        for i, opt in enumerate(get(obj, "mountOptions", "mountOptions", list, causes) or []):
            if not isinstance(opt, str):
                causes.append(type_invalid(f"mountOptions[{i}]", opt, str))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return [forbidden(f, "updates to " + f + " are forbidden.") for f in _SC_IMMUTABLE
                if strip_nulls(obj.get(f)) != strip_nulls(old.get(f))]


CSI_CAPACITY_PRINTER = Printer(
    columns=[
        name_column(),
        Column("StorageClassName", description="The class whose capacity this is."),
        Column("Capacity", description="The capacity available for new volumes of the class."),
    ],
    row=lambda c: [name_of(c), str(c.get("storageClassName") or ""),
                   "<unset>" if c.get("capacity") is None else str(c.get("capacity"))],
)
_CAPACITY_IMMUTABLE = ("storageClassName", "nodeTopology")


class CSIStorageCapacityStrategy(KindStrategy):
    """What a CSI driver publishes: capacity of a class in a topology segment (top-level fields)."""

    has_status = False
    has_spec = False

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        name = obj.get("storageClassName")
        if name is None or name == "":
            causes.append(required("storageClassName"))
        else:
            check_name(name, "storageClassName", is_dns1123_subdomain, causes)
        topology = obj.get("nodeTopology")
        if topology is not None:
            causes += validate_label_selector(topology, "nodeTopology")
        for key in ("capacity", "maximumVolumeSize"):
            if obj.get(key) is not None:
                nonnegative_quantity(obj[key], key, causes)
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return [invalid_value(f, obj.get(f), "field is immutable") for f in _CAPACITY_IMMUTABLE
                if strip_nulls(obj.get(f)) != strip_nulls(old.get(f))]


RESOURCES = [
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, short_names=["sc"],
             strategy=StorageClassStrategy(), printer=STORAGE_CLASS_PRINTER),
    Resource("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", True,
             strategy=CSIStorageCapacityStrategy(), printer=CSI_CAPACITY_PRINTER),
]
PV_RESOURCE = Resource("", "v1", "PersistentVolume", "persistentvolumes", False, short_names=["pv"],
                       subresources={"status"}, strategy=PersistentVolumeStrategy(), printer=PV_PRINTER)
