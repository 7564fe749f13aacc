"""OpenAPI documents (`/openapi/v3`, `/openapi/v3/<group-version>`, `/openapi/v2`) and the
unknown-field check behind ``fieldValidation``.

- ``/openapi/v3`` lists one document per group-version, each URL carrying a hash of
  what that document holds (kubectl caches documents by it).
- ``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>``: the paths and
  operations of every kind served there (kubectl reads the ``fieldValidation``
  parameter of PATCH to learn that the server validates fields itself) and
  ``components.schemas``: every kind's schema with what it refers to. Built-in kinds
  come from the `kubernetes` client's models (`openapi_models`); a custom kind's is its
  CRD version's ``openAPIV3Schema`` with apiVersion, kind and metadata added. This is
  what ``kubectl explain`` reads.
- ``/openapi/v2``: the same in Swagger 2.0 (``definitions`` + ``paths``), as JSON.

Schemas are built on the first request that needs them, never at start-up; each
document is rendered once and kept until what it describes changes.

PATCH operations deliberately carry no ``requestBody``: kubectl then computes
strategic merge patches from its compiled-in types, whose patch merge keys the
client's models do not carry.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Callable

import orjson

from .. import __version__
from ..kinds.base import Resource
from ..kinds.registry import Registry
from ..kinds.schema import unknown_fields
from . import openapi_models
from .openapi_models import (FIELD_DOCS, GVK, INT_OR_STRING, LIST_META, OBJECT_META, PRESERVE, QUANTITY, REF,
                             Definitions, Schema)

QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
V2_REF = "#/definitions/"
API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                   "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
                   "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
                   "#resources")
KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may infer "
            "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
INFO = {"title": "Kubernetes", "version": "v1.37.0"}
_V2_DROP = ("nullable", "oneOf", "anyOf", "not", "x-kubernetes-validations")

_source_hash: str | None = None


def _sources() -> str:
    """A digest of the code that shapes the documents and of the client that feeds them."""
    global _source_hash
    if _source_hash is None:
        from importlib import metadata
        try:
            client = metadata.version("kubernetes")
        except metadata.PackageNotFoundError:
            client = ""
        h = hashlib.sha256(f"{__version__}/{client}".encode())
        for f in (Path(__file__), Path(openapi_models.__file__)):
            h.update(f.read_bytes())
        _source_hash = h.hexdigest()
    return _source_hash


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def custom_name(r: Resource, kind: str | None = None) -> str:
    """A custom kind's schema name, as Kubernetes names it: stable.example.com → com.example.stable."""
    return ".".join(reversed(r.group.split("."))) + f".{r.version}.{kind or r.kind}"


def _schema_ref(defs: Definitions | None, r: Resource, list_kind: bool = False) -> str | None:
    if r.custom:
        return custom_name(r, r.list_kind if list_kind else None)
    if defs is None:
        return None
    return defs.name_of(r.group, r.version, r.list_kind if list_kind else r.kind)


# ----------------------------------------------------------------- paths


def _operation(r: Resource, verb: str, schema: str | None, v2: bool) -> dict[str, Any]:
    if v2:
        params = [{"name": p, "in": "query", "type": "string", "uniqueItems": True} for p in QUERY_PARAMS]
        ok: dict[str, Any] = {"description": "OK"}
        if schema:
            ok["schema"] = {"$ref": V2_REF + schema}
    else:
        params = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in QUERY_PARAMS]
        ok = {"description": "OK"}
        if schema:
            ok["content"] = {"application/json": {"schema": {"$ref": REF + schema}}}
    op = {"operationId": f"{verb}{r.kind}", "parameters": params, "x-kubernetes-action": verb,
          "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
          "responses": {"200": ok}}
    if v2:
        op["consumes"] = ["*/*"]
        op["produces"] = ["application/json", "application/yaml"]
    return op


def _paths(rs: list[Resource], defs: Definitions | None, v2: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in sorted(rs, key=lambda r: r.plural):
        base = "/" + _gv_path(r.group, r.version)
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        one, many = _schema_ref(defs, r), _schema_ref(defs, r, list_kind=True)
        paths[coll] = {"get": _operation(r, "list", many, v2), "post": _operation(r, "post", one, v2)}
        paths[coll + "/{name}"] = {"get": _operation(r, "get", one, v2), "put": _operation(r, "put", one, v2),
                                   "patch": _operation(r, "patch", one, v2),
                                   "delete": _operation(r, "delete", None, v2)}
    return paths


# ----------------------------------------------------------------- schemas


def custom_schemas(r: Resource, defs: Definitions | None) -> dict[str, Schema]:
    """A custom kind's schema (and its List's) from the CRD version's openAPIV3Schema."""
    gvk = {"group": r.group, "version": r.version}
    have_meta = defs is not None and OBJECT_META in defs.schemas

    def meta(name: str, doc: str) -> Schema:
        return {"allOf": [{"$ref": REF + name}], "description": doc} if have_meta else {"type": "object"}

    src = getattr(r.strategy, "schema", None)
    s: Schema = copy.deepcopy(src) if isinstance(src, dict) else {"type": "object", PRESERVE: True}
    s.setdefault("type", "object")
    props = s.setdefault("properties", {})
    props["apiVersion"] = {"description": API_VERSION_DOC, "type": "string"}
    props["kind"] = {"description": KIND_DOC, "type": "string"}
    props["metadata"] = meta(OBJECT_META, FIELD_DOCS["metadata"])
    s[GVK] = [{**gvk, "kind": r.kind}]
    lst: Schema = {
        "description": f"{r.list_kind} is a list of {r.kind}", "type": "object", "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
            "items": {"description": f"List of {r.plural}. More info: "
                      "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                      "type": "array", "items": {"$ref": REF + custom_name(r)}},
            "kind": {"description": KIND_DOC, "type": "string"},
            "metadata": meta(LIST_META, FIELD_DOCS["list-metadata"])},
        GVK: [{**gvk, "kind": r.list_kind}]}
    return {custom_name(r): s, custom_name(r, r.list_kind): lst}


def _schemas(rs: list[Resource], defs: Definitions | None) -> dict[str, Schema]:
    own: dict[str, Schema] = {}
    names: list[str] = []
    for r in rs:
        if r.custom:
            own.update(custom_schemas(r, defs))
        elif defs is not None:
            names += [n for n in (_schema_ref(defs, r), _schema_ref(defs, r, True)) if n]
    if defs is not None:
        for s in own.values():
            found: list[str] = []
            openapi_models.collect_refs(s, found)
            names += found
        for n in defs.closure(names):
            own.setdefault(n, defs.schemas[n])
    return dict(sorted(own.items()))


def to_v2(s: Any) -> Any:
    """An OpenAPI v3 schema as Swagger 2.0 has it: refs to #/definitions, no v3-only keywords."""
    if isinstance(s, list):
        return [to_v2(x) for x in s]
    if not isinstance(s, dict):
        return s
    all_of = s.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict) and "$ref" in all_of[0]:
        s = {**{k: v for k, v in s.items() if k != "allOf"}, "$ref": all_of[0]["$ref"]}
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k in _V2_DROP:
            continue
        if k == "$ref" and isinstance(v, str) and v.startswith(REF):
            out[k] = V2_REF + v[len(REF):]
        elif k in ("properties", "definitions", "patternProperties") and isinstance(v, dict):
            out[k] = {name: to_v2(sub) for name, sub in v.items()}
        elif isinstance(v, (dict, list)) and k not in ("default", "example", "enum", GVK):
            out[k] = to_v2(v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------- the documents


class OpenAPI:
    """The documents of one API server, rendered on demand and kept per content."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._docs: dict[Any, tuple[str, bytes]] = {}
        self._finders: dict[tuple[str, str, str], Callable[[Any], list[str]] | None] = {}

    def builtin_kinds(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(sorted({(r.group, r.version, r.kind) for r in self.registry.all() if not r.custom}))

    async def definitions(self) -> Definitions:
        return await openapi_models.definitions(self.builtin_kinds())

    @staticmethod
    def fingerprint(rs: list[Resource]) -> str:
        """A digest of everything a group-version's document is made of."""
        parts = [_sources()]
        for r in sorted(rs, key=lambda r: r.plural):
            schema = getattr(r.strategy, "schema", None) if r.custom else None
            parts.append([r.kind, r.list_kind, r.plural, r.namespaced, r.custom, schema])
        return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32].upper()

    def root(self) -> dict[str, Any]:
        paths = {}
        for group, versions in sorted(self.registry.groups().items()):
            for v in versions:
                p = _gv_path(group, v)
                digest = self.fingerprint(self.registry.in_group_version(group, v))
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
        return {"paths": paths}

    async def group_version(self, group: str, version: str) -> bytes | None:
        rs = self.registry.in_group_version(group, version)
        if not rs:
            return None
        digest = self.fingerprint(rs)
        got = self._docs.get((group, version))
        if got is not None and got[0] == digest:
            return got[1]
        defs = await self.definitions()
        doc = {"openapi": "3.0.0", "info": INFO, "paths": _paths(rs, defs, v2=False),
               "components": {"schemas": _schemas(rs, defs)}}
        data = orjson.dumps(doc)
        self._docs[(group, version)] = (digest, data)
        return data

    async def v2(self) -> bytes:
        rs = self.registry.all()
        digest = self.fingerprint(rs)
        got = self._docs.get("v2")
        if got is not None and got[0] == digest:
            return got[1]
        defs = await self.definitions()
        definitions = {name: to_v2(s) for name, s in _schemas(rs, defs).items()}
        for name, fmt in ((QUANTITY, None), (INT_OR_STRING, "int-or-string")):  # v2 has no oneOf
            if name in definitions:
                definitions[name] = {"description": definitions[name].get("description", ""), "type": "string",
                                     **({"format": fmt} if fmt else {})}
        doc = {"swagger": "2.0", "info": INFO, "paths": _paths(rs, defs, v2=True), "definitions": definitions}
        data = orjson.dumps(doc)
        self._docs["v2"] = (digest, data)
        return data

    # ----------------------------------------------------------------- unknown fields
    async def unknown_fields_of(self, r: Resource) -> Callable[[Any], list[str]] | None:
        """A function listing an object's unknown fields ("spec.foo"), or None when the
        kind's schema is not known (then nothing is reported)."""
        if r.custom:
            schema = getattr(r.strategy, "schema", None)
            if not isinstance(schema, dict):
                return None
            return lambda obj: unknown_fields(obj, schema)
        key = (r.group, r.version, r.kind)
        if key in self._finders:  # the write path: a dict lookup once the tree is compiled
            return self._finders[key]
        defs = await self.definitions()
        name = defs.name_of(r.group, r.version, r.kind)
        tree = defs.tree(name) if name else None
        found = self._finders[key] = tree.unknown if tree is not None else None
        return found
