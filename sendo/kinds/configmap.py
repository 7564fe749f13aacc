"""ConfigMap and Secret (v1): key/value data, size limits, immutability."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from .base import Cause, Column, forbidden, Obj, Printer, required, set_default
from .printing import age_column, as_dict, name_column, name_of, object_age
from .validation import get, invalid_value, is_config_key, NoStatus, required_because, too_long, type_invalid


# ======================================================================= ConfigMap and Secret

MAX_DATA_BYTES = 1024 * 1024  # what fits in one etcd value, with room for the rest of the object


def _decode_base64(value: str) -> bytes:
    """Strict base64 as Kubernetes' JSON decoding accepts it (line breaks tolerated)."""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)


def _validate_data_keys(data: dict, path: str) -> list[Cause]:
    causes = []
    for key in data:
        causes += [invalid_value(f"{path}[{key}]", key, m) for m in is_config_key(key)]
    return causes


def _validate_binary_map(data: dict, path: str, causes: list[Cause]) -> int:
    """Base64 values of a Secret's data or a ConfigMap's binaryData; returns the decoded size."""
    size = 0
    for key, value in data.items():
        if not isinstance(value, str):
            causes.append(type_invalid(f"{path}[{key}]", value, str))
            continue
        try:
            size += len(_decode_base64(value))
        except (binascii.Error, ValueError) as e:
            causes.append(invalid_value(f"{path}[{key}]", "<value not shown>", f"must be valid base64 data ({e})"))
    return size


def _check_immutable(obj: Obj, old: Obj, data_keys: tuple[str, ...]) -> list[Cause]:
    """Once `immutable: true`, neither the data nor the flag may change."""
    if old.get("immutable") is not True:
        return []
    causes = []
    if obj.get("immutable") is not True:
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in data_keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    return causes


def configmap_row(cm: Obj) -> list[Any]:
    return [name_of(cm), len(as_dict(cm.get("data"))) + len(as_dict(cm.get("binaryData"))), object_age(cm)]


CONFIGMAP_PRINTER = Printer(
    columns=[name_column(), Column("Data", type="integer", description="Number of keys."), age_column()],
    row=configmap_row,
)


class ConfigMapStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        data = get(obj, "data", "data", dict, causes) or {}
        binary = get(obj, "binaryData", "binaryData", dict, causes) or {}
        causes += _validate_data_keys(data, "data") + _validate_data_keys(binary, "binaryData")
        size = 0
        for key, value in data.items():
            if not isinstance(value, str):
                causes.append(type_invalid(f"data[{key}]", value, str))
            else:
                size += len(key) + len(value.encode())
        for key in binary:
            if key in data:
                causes.append(invalid_value("binaryData", key, "duplicate of key present in data"))
            size += len(key)
        size += _validate_binary_map(binary, "binaryData", causes)
        get(obj, "immutable", "immutable", bool, causes)
        if size > MAX_DATA_BYTES:
            causes.append(too_long("", MAX_DATA_BYTES))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return _check_immutable(obj, old, ("data", "binaryData"))


SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ["tls.crt", "tls.key"],
    "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
    "kubernetes.io/dockercfg": [".dockercfg"],
    "kubernetes.io/ssh-auth": ["ssh-privatekey"],
}


def secret_row(s: Obj) -> list[Any]:
    return [name_of(s), s.get("type", ""), len(as_dict(s.get("data"))), object_age(s)]


SECRET_PRINTER = Printer(
    columns=[name_column(), Column("Type", description="The type of secret."),
             Column("Data", type="integer", description="Number of keys."), age_column()],
    row=secret_row,
)


class SecretStrategy(NoStatus):
    def default(self, obj: Obj) -> None:
        """type Opaque; stringData is a write-only convenience, folded into base64 data."""
        set_default(obj, "type", "Opaque")
        string_data = obj.get("stringData")
        if not isinstance(string_data, dict):
            return
        data = obj.get("data")
        if data is None:
            data = obj["data"] = {}
        if not isinstance(data, dict):
            return
        leftover = {}
        for key, value in string_data.items():
            if isinstance(value, str):
                data[key] = base64.b64encode(value.encode()).decode()
            else:
                leftover[key] = value  # validation reports these
        if leftover:
            obj["stringData"] = leftover
        else:
            del obj["stringData"]

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        for key, value in as_dict(obj.get("stringData")).items():
            causes.append(type_invalid(f"stringData[{key}]", value, str))
        data = get(obj, "data", "data", dict, causes) or {}
        causes += _validate_data_keys(data, "data")
        size = _validate_binary_map(data, "data", causes)
        if size > MAX_DATA_BYTES:
            causes.append(too_long("data", MAX_DATA_BYTES))
        stype = get(obj, "type", "type", str, causes)
        for key in SECRET_REQUIRED_KEYS.get(stype or "", []):
            if key not in data:
                causes.append(required(f"data[{key}]"))
        if stype == "kubernetes.io/basic-auth" and not ({"username", "password"} & set(data)):
            causes.append(required_because("data", "at least one of `username` or `password` is required"))
        get(obj, "immutable", "immutable", bool, causes)
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes = []
        if old.get("type") and obj.get("type") != old.get("type"):
            causes.append(invalid_value("type", obj.get("type"), "field is immutable"))
        return causes + _check_immutable(obj, old, ("data",))
