"""Answers in another form than the object itself, as the client's Accept header asks:
meta.k8s.io/v1 Table (what `kubectl get` prints, decided by the server) and the
metadata-only PartialObjectMetadata / PartialObjectMetadataList (what metadata
informers and garbage collectors read)."""
from __future__ import annotations

from typing import Any

from ..kinds.base import Column, Obj, Printer, Resource
from .errors import APIError


def _age(obj: Obj) -> str:
    from ..kinds.printing import human_age
    return human_age(obj.get("metadata", {}).get("creationTimestamp"))


DEFAULT_PRINTER = Printer([Column("Name", format="name", description="Name must be unique within a namespace."),
                           Column("Age", description="Time since the object was created.")],
                          lambda o: [o["metadata"].get("name", ""), _age(o)])


TABLE = "Table"
METADATA = "PartialObjectMetadata"
METADATA_LIST = "PartialObjectMetadataList"
META_VERSIONS = ("v1", "v1beta1")
# The forms each kind of read may be answered in (a watch sends objects, one per event).
FORMS = {"get": (TABLE, METADATA), "list": (TABLE, METADATA_LIST), "watch": (TABLE, METADATA)}


def answer_form(accept: str | None, read: str) -> str | None:
    """The form the Accept header asks a `read` ("get", "list" or "watch") to be answered in:
    None for the objects themselves, else TABLE, METADATA or METADATA_LIST.

    The alternatives are taken in order, as the API server does: the first one that is either
    plain (no `as=`) or names a form this read has (in group meta.k8s.io) wins; none → 406."""
    if not accept:
        return None
    transforms_only = False
    for alternative in accept.split(","):
        params: dict[str, str] = {}
        for part in alternative.split(";")[1:]:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip()
        form = params.get("as")
        if not form:
            return None
        transforms_only = True
        if form in FORMS[read] and params.get("g") == "meta.k8s.io" and params.get("v") in META_VERSIONS:
            return form
    if transforms_only:
        raise APIError(406, f"only the following media types are accepted for this {read}: application/json, "
                       f"application/json;as={';as='.join(FORMS[read])};g=meta.k8s.io;v=v1", "NotAcceptable")
    return None


def metadata_only(obj: Obj) -> dict[str, Any]:
    return {"kind": METADATA, "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def metadata_list(objs: list[Obj], list_meta: dict[str, Any]) -> dict[str, Any]:
    return {"kind": METADATA_LIST, "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "items": [metadata_only(o) for o in objs]}


def transform(r: Resource, form: str | None, objs: list[Obj], list_meta: dict[str, Any],
              include: str | None) -> dict[str, Any]:
    """One object (get, watch event) or a list's items in the form asked for (not None)."""
    if form == TABLE:
        return table(r, objs, list_meta, include)
    if form == METADATA_LIST:
        return metadata_list(objs, list_meta)
    return metadata_only(objs[0])


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
        row["object"] = metadata_only(obj)
    return row


def table(r: Resource, objs: list[Obj], list_meta: dict[str, Any], include: str | None) -> dict[str, Any]:
    p = r.printer or DEFAULT_PRINTER
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": _column_defs(p),
            "rows": [_row(r, p, o, include or "PartialObjectMetadata") for o in objs]}
