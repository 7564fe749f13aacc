"""PersistentVolumeClaim (v1); StatefulSets' volumeClaimTemplates use the same spec rules."""
from __future__ import annotations

import copy
from typing import Any

from .base import Cause, Column, forbidden, Obj, Printer, required, set_default, strip_nulls, unsupported
from .printing import age_column, as_dict, as_list, name_column, name_of, object_age
from .quantity import parse_quantity, QuantityError
from .validation import (get, invalid_value, is_dns1123_label, is_dns1123_subdomain, KindStrategy, required_because,
                         type_invalid, validate_label_selector)
from .podspec import changed_paths


# ======================================================================= PersistentVolumeClaim

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_ACCESS_MODE_SHORT = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                      ("ReadWriteOncePod", "RWOP"))
VOLUME_MODES = ["Block", "Filesystem"]
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
_STORAGE_KEY = "spec.resources[storage]"


def access_modes_cell(modes: Any) -> str:
    """Short forms in a fixed order, duplicates dropped: "RWO,RWX"."""
    present = set(x for x in as_list(modes) if isinstance(x, str))
    return ",".join(short for mode, short in _ACCESS_MODE_SHORT if mode in present)


def pvc_storage_class(pvc: Obj) -> str:
    annotations = as_dict(as_dict(pvc.get("metadata")).get("annotations"))
    if BETA_STORAGE_CLASS in annotations:
        return str(annotations[BETA_STORAGE_CLASS])
    cls = as_dict(pvc.get("spec")).get("storageClassName")
    return cls if isinstance(cls, str) else ""


def pvc_row(pvc: Obj) -> list[Any]:
    spec, status, meta = as_dict(pvc.get("spec")), as_dict(pvc.get("status")), as_dict(pvc.get("metadata"))
    phase = "Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "")
    volume = spec.get("volumeName") if isinstance(spec.get("volumeName"), str) else ""
    capacity = modes = ""
    if volume:
        capacity = str(as_dict(status.get("capacity")).get("storage") or "")
        modes = access_modes_cell(status.get("accessModes"))
    vac = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [name_of(pvc), phase, volume, capacity, modes, pvc_storage_class(pvc),
            vac if isinstance(vac, str) else "<unset>", object_age(pvc), mode if isinstance(mode, str) else "<unset>"]


PVC_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Status", description="Pending, Bound or Lost."),
        Column("Volume", description="The volume bound to the claim."),
        Column("Capacity", description="The storage the bound volume has."),
        Column("Access Modes", description="How the bound volume may be mounted."),
        Column("StorageClass", description="StorageClass of the pvc."),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc."),
        age_column(),
        Column("VolumeMode", priority=1, description="Filesystem or Block."),
    ],
    row=pvc_row,
)


def _storage_request(spec: dict) -> Any:
    return as_dict(as_dict(spec.get("resources")).get("requests")).get("storage")


def _validate_data_source(ref: Any, path: str, typed: bool) -> list[Cause]:
    if not isinstance(ref, dict):
        return [type_invalid(path, ref, dict)]
    causes: list[Cause] = []
    for key in ("name", "kind"):
        if not ref.get(key):
            causes.append(required(f"{path}.{key}"))
    group = ref.get("apiGroup") or ""
    if not group and ref.get("kind") != "PersistentVolumeClaim":
        causes.append(invalid_value(path, ref.get("kind"), "must be 'PersistentVolumeClaim' when referencing the "
                                                           "default apiGroup"))
    if isinstance(group, str) and group:
        causes += [invalid_value(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(group)]
    ns = ref.get("namespace") if typed else None
    if isinstance(ns, str) and ns:
        causes += [invalid_value(f"{path}.namespace", ns, m) for m in is_dns1123_label(ns)]
    return causes


def validate_pvc_spec(spec: Any, path: str) -> list[Cause]:
    """A PersistentVolumeClaimSpec (a PVC's, or a StatefulSet's volumeClaimTemplates[i].spec)."""
    if not isinstance(spec, dict):
        return [required(f"{path}.accessModes") if spec is None else type_invalid(path, spec, dict)]
    causes: list[Cause] = []
    modes = get(spec, "accessModes", f"{path}.accessModes", list, causes)
    if not modes:
        if modes is not None or spec.get("accessModes") is None:
            causes.append(required_because(f"{path}.accessModes", "at least 1 access mode is required"))
    rwop = other = False
    for mode in modes or []:
        if mode not in ACCESS_MODES:
            causes.append(unsupported(f"{path}.accessModes", mode, ACCESS_MODES))
        elif mode == "ReadWriteOncePod":
            rwop = True
        else:
            other = True
    if rwop and other:
        causes.append(forbidden(f"{path}.accessModes", "may not use ReadWriteOncePod with other access modes"))
    causes += validate_label_selector(spec.get("selector"), f"{path}.selector")
    key = _STORAGE_KEY if path == "spec" else f"{path}.resources[storage]"
    resources = get(spec, "resources", f"{path}.resources", dict, causes) or {}
    get(resources, "requests", f"{path}.resources.requests", dict, causes)
    storage = _storage_request(spec)
    if storage is None:
        causes.append(required(key))
    else:
        try:
            if parse_quantity(storage) <= 0:
                causes.append(invalid_value(key, str(storage), "must be greater than zero"))
        except QuantityError as e:
            causes.append(invalid_value(key, storage, e.reason))
    for name_key in ("storageClassName", "volumeAttributesClassName", "volumeName"):
        v = get(spec, name_key, f"{path}.{name_key}", str, causes)
        if v and name_key != "volumeName":
            causes += [invalid_value(f"{path}.{name_key}", v, m) for m in is_dns1123_subdomain(v)]
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        causes.append(unsupported(f"{path}.volumeMode", mode, VOLUME_MODES))
    if spec.get("dataSource") is not None:
        causes += _validate_data_source(spec["dataSource"], f"{path}.dataSource", typed=False)
    if spec.get("dataSourceRef") is not None:
        causes += _validate_data_source(spec["dataSourceRef"], f"{path}.dataSourceRef", typed=True)
    return causes


def default_pvc_spec(spec: Any) -> None:
    set_default(spec, "volumeMode", "Filesystem")


def validate_pvc_update(new: Obj, old: Obj) -> list[Cause]:
    """A claim's spec is fixed but for a bound claim's storage request, which may only grow."""
    spec, old_spec = copy.deepcopy(as_dict(new.get("spec"))), copy.deepcopy(as_dict(old.get("spec")))
    causes: list[Cause] = []
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = spec.get("volumeName")  # binding sets volumeName once
    if old_spec.get("storageClassName") is None and spec.get("storageClassName") is not None:
        old_annotation = as_dict(as_dict(old.get("metadata")).get("annotations")).get(BETA_STORAGE_CLASS)
        if old_annotation is None or old_annotation == spec.get("storageClassName"):
            old_spec["storageClassName"] = spec["storageClassName"]  # an unset class may be set once
    new_size, old_size = _storage_request(spec), _storage_request(old_spec)
    bound = as_dict(new.get("status")).get("phase") == "Bound"
    if bound and isinstance(as_dict(spec.get("resources")).get("requests"), dict):
        spec["resources"]["requests"]["storage"] = old_size
    spec["volumeAttributesClassName"] = old_spec.get("volumeAttributesClassName")
    clean_new, clean_old = strip_nulls(spec), strip_nulls(old_spec)
    if clean_new != clean_old:
        changed: list[str] = []
        changed_paths(clean_old, clean_new, "spec", changed)
        shown = ", ".join(changed[:5])
        causes.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                        f"volumeAttributesClassName for bound claims; changed: {shown}"))
    try:
        if new_size is not None and old_size is not None and parse_quantity(new_size) < parse_quantity(old_size):
            causes.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    except QuantityError:
        pass  # validate() reports the unparseable quantity
    if old_spec.get("volumeAttributesClassName") and not as_dict(new.get("spec")).get("volumeAttributesClassName"):
        causes.append(forbidden("spec.volumeAttributesClassName", "update from non-nil value to nil is forbidden"))
    return causes


class PersistentVolumeClaimStrategy(KindStrategy):
    has_spec = False  # claims carry no metadata.generation in Kubernetes

    def default(self, obj: Obj) -> None:
        default_pvc_spec(obj.get("spec"))

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_pvc_spec(obj.get("spec"), "spec")

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return validate_pvc_update(obj, old)
