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
- ``/openapi/v2``: the same in Swagger 2.0 (``definitions`` + ``paths``), as JSON, or
  as protobuf when asked for it (`openapi_proto`).

Every operation declares its path parameters, query parameters (typed) and request
body, as Kubernetes' documents do, so generic tools (schemathesis) can call every
operation. The fields strategic merge patch merges carry
``x-kubernetes-patch-strategy``/``-merge-key`` (the client's models lack them): kubectl
computes its apply patches from these documents.

Schemas are built on the first request that needs them, never at start-up; each
document is rendered once and kept until what it describes changes.
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from .. import __version__
from ..kinds.base import Resource
from ..kinds.registry import Registry
from ..kinds.schema import unknown_fields
from . import openapi_models, openapi_proto, patch
from .openapi_models import (FIELD_DOCS, GVK, INT_OR_STRING, LIST_META, OBJECT_META, PRESERVE, QUANTITY, REF,
                             Definitions, Schema)
from .patch import KIND_SCHEMAS, REPLACE, MergeList

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
        for f in (Path(__file__), Path(openapi_models.__file__), Path(patch.__file__)):
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

# Query parameters and their types, as Kubernetes declares them.
_QUERY_TYPES = {
    "allowWatchBookmarks": "boolean", "container": "string", "continue": "string", "dryRun": "string",
    "fieldManager": "string", "fieldSelector": "string", "fieldValidation": "string", "follow": "boolean",
    "force": "boolean", "gracePeriodSeconds": "integer", "labelSelector": "string", "limit": "integer",
    "limitBytes": "integer", "orphanDependents": "boolean", "previous": "boolean", "propagationPolicy": "string",
    "resourceVersion": "string", "resourceVersionMatch": "string", "sendInitialEvents": "boolean",
    "sinceSeconds": "integer", "tailLines": "integer", "timeoutSeconds": "integer", "timestamps": "boolean",
    "watch": "boolean"}
_READ_MANY = ("continue", "fieldSelector", "labelSelector", "limit", "resourceVersion", "resourceVersionMatch",
              "sendInitialEvents", "timeoutSeconds")
LIST_PARAMS = ("allowWatchBookmarks", *_READ_MANY, "watch")
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
PATCH_PARAMS = (*WRITE_PARAMS, "force")
DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
DELETE_MANY_PARAMS = (*DELETE_PARAMS, *_READ_MANY)
LOG_PARAMS = ("container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps")

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
DELETE_OPTIONS, STATUS, PATCH = f"{META}.DeleteOptions", f"{META}.Status", f"{META}.Patch"
PATCH_SCHEMA = {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
                "request body.", "type": "object"}
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
SMP = "application/strategic-merge-patch+json"
# Request and response types of the subresources, besides the kind itself.
EXTRA_KINDS = (("", "v1", "Binding"), ("autoscaling", "v1", "Scale"), ("authentication.k8s.io", "v1", "TokenRequest"),
               ("", "v1", "DeleteOptions"), ("", "v1", "Status"), ("policy", "v1", "Eviction"))


@dataclass(frozen=True)
class Op:
    """One operation of a path: its HTTP method, Kubernetes action, query parameters,
    request body and answer (definition names, or None when untyped)."""
    method: str
    action: str
    params: tuple[str, ...] = ()
    body: str | None = None
    answer: str | None = None
    codes: tuple[str, ...] = ("200",)


def _gv_prefix(group: str, version: str) -> str:
    """`apps/v1` → AppsV1, core → CoreV1, `rbac.authorization.k8s.io` → RbacAuthorizationV1."""
    g = group.removesuffix(".k8s.io") if group else "core"
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[.-]", g)) + version[:1].upper() + version[1:]


def _named(defs: Definitions | None, group: str, version: str, kind: str) -> str | None:
    return defs.name_of(group, version, kind) if defs is not None else None


def _ops(r: Resource, defs: Definitions | None) -> dict[str, list[Op]]:
    """Every path of a resource (relative to its collection URL) and its operations."""
    one, many = _schema_ref(defs, r), _schema_ref(defs, r, list_kind=True)
    status = _named(defs, "", "v1", "Status")
    delete = _named(defs, "", "v1", "DeleteOptions")
    written = ("200", "201", "202")
    paths = {"": [Op("get", "list", LIST_PARAMS, answer=many),
                  Op("post", "post", WRITE_PARAMS, one, one, written),
                  Op("delete", "deletecollection", DELETE_MANY_PARAMS, delete, status)],
             "/{name}": [Op("get", "get", answer=one), Op("put", "put", WRITE_PARAMS, one, one, ("200", "201")),
                         Op("patch", "patch", PATCH_PARAMS, PATCH, one, ("200", "201")),
                         Op("delete", "delete", DELETE_PARAMS, delete, status, ("200", "202"))]}
    for sub in sorted(r.subresources):
        if sub in ("status", "scale", "approval"):
            t = one if sub != "scale" else _named(defs, "autoscaling", "v1", "Scale")
            paths[f"/{{name}}/{sub}"] = [Op("get", "get", answer=t), Op("put", "put", WRITE_PARAMS, t, t),
                                         Op("patch", "patch", PATCH_PARAMS, PATCH, t)]
        elif sub == "finalize":
            paths["/{name}/finalize"] = [Op("put", "put", WRITE_PARAMS, one, one)]
        elif sub in ("binding", "token", "eviction"):
            t = {"binding": _named(defs, "", "v1", "Binding"),
                 "token": _named(defs, "authentication.k8s.io", "v1", "TokenRequest"),
                 "eviction": _named(defs, "policy", "v1", "Eviction")}[sub]
            paths[f"/{{name}}/{sub}"] = [Op("post", "post", WRITE_PARAMS, t, t, written)]
        elif sub == "log":
            paths["/{name}/log"] = [Op("get", "get", LOG_PARAMS)]
        # portforward, exec and attach are connection upgrades (WebSocket), not REST operations
    return paths


def _query(name: str, v2: bool) -> dict[str, Any]:
    t = _QUERY_TYPES[name]
    return ({"name": name, "in": "query", "type": t, "uniqueItems": True} if v2 else
            {"name": name, "in": "query", "schema": {"type": t, "uniqueItems": True}})


def _path_param(name: str, v2: bool) -> dict[str, Any]:
    what = {"name": "name of the object", "namespace": "object name and auth scope, such as for teams and projects"}
    p: dict[str, Any] = {"name": name, "in": "path", "required": True, "description": what[name]}
    return {**p, "type": "string", "uniqueItems": True} if v2 else {**p, "schema": {"type": "string",
                                                                                   "uniqueItems": True}}


def _ref(name: str | None, v2: bool) -> dict[str, Any]:
    return {"$ref": (V2_REF if v2 else REF) + name} if name else {"type": "object"}


_OP_VERBS = {"post": "create", "put": "replace", "get": "read"}  # operationId verbs, as Kubernetes names them


def _operation(r: Resource, sub: str, op: Op, v2: bool) -> dict[str, Any]:
    op_id = (_OP_VERBS.get(op.action, op.action) + _gv_prefix(r.group, r.version) + "Namespaced" * r.namespaced
             + r.kind + sub[:1].upper() + sub[1:])
    params = [_query(p, v2) for p in op.params]
    patch_types = [t for t in PATCH_TYPES if not (r.custom and t == SMP)]  # custom kinds take no SMP
    answer = _ref(op.answer, v2) if op.answer else ({"type": "string"} if sub == "log" else None)
    if v2:
        if op.body:
            params.insert(0, {"name": "body", "in": "body", "required": True, "schema": _ref(op.body, v2)})
        ok: dict[str, Any] = {"description": "OK"}
        if answer:
            ok["schema"] = answer
    else:
        ok = {"description": "OK"}
        if answer:
            ok["content"] = {t: {"schema": answer} for t in (("text/plain",) if sub == "log" else
                                                              ("application/json", "application/yaml"))}
    out: dict[str, Any] = {"operationId": op_id, "parameters": params, "x-kubernetes-action": op.action,
                           "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version,
                                                               "kind": r.kind},
                           "responses": {**{c: ok for c in op.codes}, "401": {"description": "Unauthorized"}}}
    if v2:
        out["consumes"] = patch_types if op.body == PATCH else ["*/*"]
        out["produces"] = ["text/plain"] if sub == "log" else ["application/json", "application/yaml"]
    elif op.body:
        types = patch_types if op.body == PATCH else ["application/json", "application/yaml"]
        out["requestBody"] = {"required": True, "content": {t: {"schema": _ref(op.body, v2)} for t in types}}
    return out


def _paths(rs: list[Resource], defs: Definitions | None, v2: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in sorted(rs, key=lambda r: r.plural):
        base = "/" + _gv_path(r.group, r.version)
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        for tail, ops in _ops(r, defs).items():
            sub = tail.rsplit("/", 1)[-1] if tail.count("/") == 2 else ""
            names = ["namespace"] * r.namespaced + ["name"] * ("{name}" in tail)
            item: dict[str, Any] = {op.method: _operation(r, sub, op, v2) for op in ops}
            item["parameters"] = [*(_path_param(n, v2) for n in names), _query_pretty(v2)]
            paths[coll + tail] = item
    return paths


def _query_pretty(v2: bool) -> dict[str, Any]:
    p = {"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed."}
    return {**p, "type": "string", "uniqueItems": True} if v2 else {**p, "schema": {"type": "string",
                                                                                   "uniqueItems": True}}


def _body_names(rs: list[Resource], defs: Definitions | None) -> list[str]:
    """Definitions the operations of these resources name besides the kinds themselves."""
    names = {PATCH}
    for r in rs:
        for ops in _ops(r, defs).values():
            names.update(n for op in ops for n in (op.body, op.answer) if n)
    return sorted(names)


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
        names += _body_names(rs, defs)
        for n in defs.closure(names):
            own.setdefault(n, defs.schemas[n])
        own[PATCH] = PATCH_SCHEMA
        copied: set[str] = set()
        for r in rs:
            name = None if r.custom else _schema_ref(defs, r)
            if name and r.kind in KIND_SCHEMAS:
                _patch_strategies(own, name, KIND_SCHEMAS[r.kind], copied)
    return dict(sorted(own.items()))


def _patch_strategies(own: dict[str, Schema], name: str, rules: Any, copied: set[str]) -> None:
    """Mark the fields strategic merge patch merges (x-kubernetes-patch-strategy and
    -merge-key, from the table the server's own SMP uses), as Kubernetes' documents do:
    kubectl computes its patches from them. Shared definitions are copied before the
    first change, never edited in place."""
    s = own.get(name)
    props = s.get("properties") if isinstance(s, dict) else None
    if not isinstance(props, dict):
        return
    for field, rule in rules.items():
        p = props.get(field)
        if not isinstance(p, dict):
            continue
        if isinstance(rule, MergeList) or rule == REPLACE:
            if name not in copied:
                own[name] = s = copy.deepcopy(s)
                props, p = s["properties"], s["properties"][field]
                copied.add(name)
            p["x-kubernetes-patch-strategy"] = "replace" if rule == REPLACE else "merge"
            if isinstance(rule, MergeList) and rule.key:
                p["x-kubernetes-patch-merge-key"] = rule.key
            inner, target = (rule.item, _target(p.get("items"))) if isinstance(rule, MergeList) else ({}, None)
        else:
            inner, target = rule, _target(p)
        if inner and target:
            _patch_strategies(own, target, inner, copied)


def _target(s: Any) -> str | None:
    """The definition a property refers to ($ref, or allOf with one $ref)."""
    if not isinstance(s, dict):
        return None
    ref = s.get("$ref") or (s["allOf"][0].get("$ref") if isinstance(s.get("allOf"), list) and len(s["allOf"]) == 1
                             and isinstance(s["allOf"][0], dict) else None)
    return ref[len(REF):] if isinstance(ref, str) and ref.startswith(REF) else None


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
        kinds = {(r.group, r.version, r.kind) for r in self.registry.all() if not r.custom}
        return tuple(sorted(kinds | set(EXTRA_KINDS)))

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
        self._docs.pop("v2-protobuf", None)
        return data

    async def v2_protobuf(self) -> bytes:
        """The v2 document as gnostic's `openapi.v2.Document` (what kubectl asks for)."""
        data = await self.v2()
        got = self._docs.get("v2-protobuf")
        if got is not None and got[0] == self._docs["v2"][0]:
            return got[1]
        encoded = openapi_proto.document(orjson.loads(data))
        self._docs["v2-protobuf"] = (self._docs["v2"][0], encoded)
        return encoded

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
