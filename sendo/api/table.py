"""meta.k8s.io/v1 Table responses: what `kubectl get` prints, decided by the server."""
from __future__ import annotations

from typing import Any

from ..kinds.base import Column, Obj, Printer, Resource


def _age(obj: Obj) -> str:
    from ..kinds.printing import human_age
    return human_age(obj.get("metadata", {}).get("creationTimestamp"))


DEFAULT_PRINTER = Printer([Column("Name", format="name", description="Name must be unique within a namespace."),
                           Column("Age", description="Time since the object was created.")],
                          lambda o: [o["metadata"].get("name", ""), _age(o)])


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in accept


def _column_defs(p: Printer) -> list[dict[str, Any]]:
    return [{"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in p.columns]


def _row(r: Resource, p: Printer, obj: Obj, include: str) -> dict[str, Any]:
    try:
        cells = p.row(obj)
    except Exception:  # a printer must never break a list; show what we can
        cells = [obj["metadata"].get("name", "")] + ["<unknown>"] * (len(p.columns) - 1)
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj.get("metadata", {})}
    return row


def table(r: Resource, objs: list[Obj], list_meta: dict[str, Any], include: str | None) -> dict[str, Any]:
    p = r.printer or DEFAULT_PRINTER
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": _column_defs(p),
            "rows": [_row(r, p, o, include or "PartialObjectMetadata") for o in objs]}
