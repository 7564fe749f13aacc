"""OpenAPI v3 documents, enough for kubectl to know how to talk to each kind.

kubectl reads /openapi/v3 before apply/create to learn whether the server validates
fields itself (the `fieldValidation` query parameter on PATCH). Full schemas for
`kubectl explain` are a later step; this lists each resource's operations and the
group-version-kind they belong to.
"""
from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..kinds.registry import Registry

QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(r, verb: str) -> dict[str, Any]:
    params = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in QUERY_PARAMS]
    return {"operationId": f"{verb}{r.kind}", "parameters": params,
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "responses": {"200": {"description": "OK"}}}


def group_version_doc(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    rs = registry.in_group_version(group, version)
    if not rs:
        return None
    paths: dict[str, Any] = {}
    base = "/" + _gv_path(group, version)
    for r in rs:
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        paths[coll] = {"get": _operation(r, "list"), "post": _operation(r, "post")}
        paths[coll + "/{name}"] = {"get": _operation(r, "get"), "put": _operation(r, "put"),
                                   "patch": _operation(r, "patch"), "delete": _operation(r, "delete")}
    return {"openapi": "3.0.0", "info": {"title": "sendo", "version": version}, "paths": paths,
            "components": {"schemas": {}}}


def root_doc(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.groups().items():
        for v in versions:
            doc = group_version_doc(registry, group, v)
            digest = hashlib.sha256(orjson.dumps(doc)).hexdigest()[:32].upper()
            p = _gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
    return {"paths": paths}
