"""ServiceAccount (v1)."""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer
from .printing import age_column, as_list, name_column, name_of, object_age
from .validation import get, invalid_value, is_dns1123_subdomain, NoStatus, type_invalid


# ======================================================================= ServiceAccount


def serviceaccount_row(sa: Obj) -> list[Any]:
    return [name_of(sa), len(as_list(sa.get("secrets"))), object_age(sa)]


SERVICEACCOUNT_PRINTER = Printer(
    columns=[name_column(), Column("Secrets", description="Secrets the service account may use."), age_column()],
    row=serviceaccount_row,
)


def _validate_object_refs(refs: Any, path: str, causes: list[Cause]) -> None:
    if refs is None:
        return
    if not isinstance(refs, list):
        causes.append(type_invalid(path, refs, list))
        return
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            causes.append(type_invalid(f"{path}[{i}]", ref, dict))
            continue
        name = get(ref, "name", f"{path}[{i}].name", str, causes)
        if name:
            causes += [invalid_value(f"{path}[{i}].name", name, m) for m in is_dns1123_subdomain(name)]


class ServiceAccountStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        _validate_object_refs(obj.get("secrets"), "secrets", causes)
        _validate_object_refs(obj.get("imagePullSecrets"), "imagePullSecrets", causes)
        get(obj, "automountServiceAccountToken", "automountServiceAccountToken", bool, causes)
        return causes
