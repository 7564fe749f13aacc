"""The JSON types of ObjectMeta's fields, checked before anything reads them.

Kubernetes decodes a body into typed Go structs, so `generateName: [1]` never gets past
the decoder. Here objects stay JSON; every write path checks metadata's types first so
defaulting, name generation and validation can trust them (a wrong type is a 422 naming
the field, never a TypeError and a 500). Formats (label syntax, name rules) are checked
later, by each kind's validation.
"""
from __future__ import annotations

from typing import Any

from .base import Cause
from .validation import is_type, type_invalid

_STRINGS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "creationTimestamp",
            "deletionTimestamp")
_INTEGERS = ("generation", "deletionGracePeriodSeconds")
_STRING_MAPS = ("labels", "annotations")
_OWNER_REF_STRINGS = ("apiVersion", "kind", "name", "uid")
_OWNER_REF_BOOLS = ("controller", "blockOwnerDeletion")
_MANAGED_STRINGS = ("manager", "operation", "apiVersion", "time", "fieldsType", "subresource")


def _check_fields(obj: dict, path: str, fields: tuple[str, ...], t: type, causes: list[Cause]) -> None:
    for f in fields:
        v = obj.get(f)
        if v is not None and not is_type(v, t):
            causes.append(type_invalid(f"{path}.{f}", v, t))


def _check_list_of(v: Any, path: str, item: type, causes: list[Cause]) -> list[tuple[int, Any]]:
    """The (index, item) pairs of a list field that have the right type; the others are reported."""
    if v is None:
        return []
    if not isinstance(v, list):
        causes.append(type_invalid(path, v, list))
        return []
    ok = []
    for i, x in enumerate(v):
        if is_type(x, item):
            ok.append((i, x))
        else:
            causes.append(type_invalid(f"{path}[{i}]", x, item))
    return ok


def _check_string_map(v: Any, path: str, causes: list[Cause]) -> None:
    if v is None:
        return
    if not isinstance(v, dict):
        causes.append(type_invalid(path, v, dict))
        return
    for k, x in v.items():
        if not isinstance(x, str):
            causes.append(type_invalid(f"{path}[{k}]", x, str))


def meta_type_causes(meta: dict, path: str = "metadata") -> list[Cause]:
    """One cause per ObjectMeta field (or item) whose JSON type is wrong; null means absent."""
    causes: list[Cause] = []
    _check_fields(meta, path, _STRINGS, str, causes)
    _check_fields(meta, path, _INTEGERS, int, causes)
    for f in _STRING_MAPS:
        _check_string_map(meta.get(f), f"{path}.{f}", causes)
    _check_list_of(meta.get("finalizers"), f"{path}.finalizers", str, causes)
    refs = f"{path}.ownerReferences"
    for i, ref in _check_list_of(meta.get("ownerReferences"), refs, dict, causes):
        _check_fields(ref, f"{refs}[{i}]", _OWNER_REF_STRINGS, str, causes)
        _check_fields(ref, f"{refs}[{i}]", _OWNER_REF_BOOLS, bool, causes)
    managed = f"{path}.managedFields"
    for i, entry in _check_list_of(meta.get("managedFields"), managed, dict, causes):
        _check_fields(entry, f"{managed}[{i}]", _MANAGED_STRINGS, str, causes)
        _check_fields(entry, f"{managed}[{i}]", ("fieldsV1",), dict, causes)
    return causes
