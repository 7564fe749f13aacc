"""The rules of a pod's volume sources and mount paths (pkg/apis/core/validation's
validateVolumeSource, cut to the sources sendo mounts), for Pods and every pod template.

Every check names the field at fault; nothing here raises.
"""
from __future__ import annotations

from typing import Any, Iterator

from .base import Cause, required
from .quantity import QuantityError, parse_quantity
from .validation import (check_enum, check_int, check_name, get, invalid_value, is_dns1123_subdomain,
                         required_because, type_invalid)

EMPTY_DIR_MEDIA = ["", "HugePages", "Memory"]
HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket"]
_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"]


def check_relative_path(v: Any, path: str, causes: list[Cause]) -> None:
    """A file name inside a volume: relative, no `..` element."""
    if not isinstance(v, str) or not v:
        causes.append(required(path) if v in (None, "") else type_invalid(path, v, str))
    elif v.startswith("/"):
        causes.append(invalid_value(path, v, "must be a relative path"))
    elif ".." in v.split("/"):
        causes.append(invalid_value(path, v, "must not contain '..'"))


def _mode(parent: Any, key: str, path: str, causes: list[Cause]) -> None:
    v = get(parent, key, path, int, causes)
    if v is not None and not 0 <= v <= 0o777:
        causes.append(invalid_value(path, v, "must be a number between 0 and 0777 (octal), both inclusive"))


def _each_dict(parent: dict, key: str, path: str, causes: list[Cause]) -> Iterator[tuple[str, dict]]:
    """The objects of the list parent[key] with their paths; anything else is a cause."""
    for i, item in enumerate(get(parent, key, f"{path}.{key}", list, causes) or []):
        p = f"{path}.{key}[{i}]"
        if isinstance(item, dict):
            yield p, item
        else:
            causes.append(type_invalid(p, item, dict))


def _is_source(src: Any, path: str, causes: list[Cause]) -> bool:
    """A file source is an object; its defaultMode, if any, a file mode."""
    if not isinstance(src, dict):
        causes.append(type_invalid(path, src, dict))
        return False
    _mode(src, "defaultMode", f"{path}.defaultMode", causes)
    return True


def _key_items(src: dict, path: str, causes: list[Cause]) -> None:
    for p, item in _each_dict(src, "items", path, causes):
        if not item.get("key"):
            causes.append(required(f"{p}.key"))
        check_relative_path(item.get("path"), f"{p}.path", causes)
        _mode(item, "mode", f"{p}.mode", causes)


def _object_source(src: Any, path: str, name_key: str, causes: list[Cause]) -> None:
    """configMap / secret, as a volume or a projection."""
    if not _is_source(src, path, causes):
        return
    name = src.get(name_key)
    if name is not None or name_key == "secretName":
        check_name(name, f"{path}.{name_key}", is_dns1123_subdomain, causes)
    get(src, "optional", f"{path}.optional", bool, causes)
    _key_items(src, path, causes)


def _downward_items(src: Any, path: str, causes: list[Cause]) -> None:
    if not _is_source(src, path, causes):
        return
    for p, item in _each_dict(src, "items", path, causes):
        check_relative_path(item.get("path"), f"{p}.path", causes)
        _mode(item, "mode", f"{p}.mode", causes)
        field, res = item.get("fieldRef"), item.get("resourceFieldRef")
        if (field is None) == (res is None):
            causes.append(invalid_value(p, "", "must specify exactly one of fieldRef and resourceFieldRef"))
        elif isinstance(field, dict):
            fp = field.get("fieldPath")
            base = fp.split("[", 1)[0] if isinstance(fp, str) else fp
            check_enum(base, f"{p}.fieldRef.fieldPath", _FIELD_PATHS, causes)
        elif isinstance(res, dict):
            check_enum(res.get("resource"), f"{p}.resourceFieldRef.resource",
                       ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                        "requests.ephemeral-storage", "requests.memory"], causes)
        else:
            causes.append(type_invalid(f"{p}.fieldRef" if field is not None else f"{p}.resourceFieldRef",
                                       field if field is not None else res, dict))


def _file_sources(parent: dict, path: str, secret_name_key: str, causes: list[Cause]) -> None:
    """configMap, secret and downwardAPI: as a volume (secretName) or a projection (name)."""
    if parent.get("configMap") is not None:
        _object_source(parent["configMap"], f"{path}.configMap", "name", causes)
    if parent.get("secret") is not None:
        _object_source(parent["secret"], f"{path}.secret", secret_name_key, causes)
    if parent.get("downwardAPI") is not None:
        _downward_items(parent["downwardAPI"], f"{path}.downwardAPI", causes)


def _projected(src: Any, path: str, causes: list[Cause]) -> None:
    if not _is_source(src, path, causes):
        return
    for p, s in _each_dict(src, "sources", path, causes):
        kinds = [k for k, v in s.items() if v is not None]
        if len(kinds) != 1:
            causes.append(invalid_value(p, kinds, "may not specify more than 1 volume type per source"
                                        if kinds else "must specify a volume source"))
        _file_sources(s, p, "name", causes)
        tok = s.get("serviceAccountToken")
        if tok is not None:
            tp = f"{p}.serviceAccountToken"
            if not isinstance(tok, dict):
                causes.append(type_invalid(tp, tok, dict))
                continue
            check_relative_path(tok.get("path"), f"{tp}.path", causes)
            get(tok, "audience", f"{tp}.audience", str, causes)
            exp = check_int(tok, "expirationSeconds", f"{tp}.expirationSeconds", causes, int64=True)
            if exp is not None and exp < 600:
                causes.append(invalid_value(f"{tp}.expirationSeconds", exp, "may not specify a duration less than "
                                                                           "10 minutes"))
            elif exp is not None and exp > 2**32:
                causes.append(invalid_value(f"{tp}.expirationSeconds", exp, "may not specify a duration larger "
                                                                           "than 2^32 seconds"))


def validate_volume_source(vol: dict, path: str, causes: list[Cause]) -> None:
    """The source of `vol` (one of pod.spec.volumes), for the kinds sendo mounts."""
    if vol.get("emptyDir") is not None:
        p, ed = f"{path}.emptyDir", vol["emptyDir"]
        if not isinstance(ed, dict):
            causes.append(type_invalid(p, ed, dict))
        else:
            check_enum(ed.get("medium"), f"{p}.medium", EMPTY_DIR_MEDIA, causes, optional=True)
            if ed.get("sizeLimit") is not None:
                try:
                    if parse_quantity(ed["sizeLimit"]) <= 0:
                        causes.append(invalid_value(f"{p}.sizeLimit", ed["sizeLimit"], "must be greater than zero"))
                except (QuantityError, TypeError, ValueError):
                    causes.append(invalid_value(f"{p}.sizeLimit", ed["sizeLimit"], "must be a quantity, e.g. 64Mi"))
    _file_sources(vol, path, "secretName", causes)
    if vol.get("projected") is not None:
        _projected(vol["projected"], f"{path}.projected", causes)
    if vol.get("hostPath") is not None:
        p, hp = f"{path}.hostPath", vol["hostPath"]
        if not isinstance(hp, dict):
            causes.append(type_invalid(p, hp, dict))
        else:
            hpath = hp.get("path")
            if not isinstance(hpath, str) or not hpath:
                causes.append(required(f"{p}.path"))
            elif ".." in hpath.split("/"):
                causes.append(invalid_value(f"{p}.path", hpath, "must not contain '..'"))
            check_enum(hp.get("type"), f"{p}.type", HOST_PATH_TYPES, causes, optional=True)
    if vol.get("persistentVolumeClaim") is not None:
        p, pvc = f"{path}.persistentVolumeClaim", vol["persistentVolumeClaim"]
        if not isinstance(pvc, dict):
            causes.append(type_invalid(p, pvc, dict))
        else:
            if not pvc.get("claimName"):
                causes.append(required_because(f"{p}.claimName", "claimName is required"))
            get(pvc, "readOnly", f"{p}.readOnly", bool, causes)


def validate_sub_path(m: dict, path: str, causes: list[Cause]) -> None:
    """volumeMounts[].subPath: a relative path without `..`, when set."""
    sub = m.get("subPath")
    if sub not in (None, ""):
        check_relative_path(sub, f"{path}.subPath", causes)
    get(m, "readOnly", f"{path}.readOnly", bool, causes)
