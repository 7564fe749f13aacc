"""Schemas of the built-in kinds, read from the official `kubernetes` Python client.

The client has one model class per Kubernetes type (`V1Pod`, `V1ObjectMeta`, …) with
`openapi_types` (attribute → type string: ``str``, ``int``, ``List[V1Container]``,
``Dict[str, str]``, ``object``, …), `attribute_map` (attribute → JSON name), the
type's description as the class docstring and each field's description (pydantic
``Field(description=…)``; older clients: the property docstring). `build` walks the
types reachable from the kinds we serve and turns them into OpenAPI v3 component
schemas named as Kubernetes names them (`V1Pod` → ``io.k8s.api.core.v1.Pod``).

Importing the ~380 pydantic model classes this needs costs ~0.7 s and ~16 MB that a
process never gets back, so the server does not do it itself: the first request that
needs a schema (`/openapi/...`, or a write with ``fieldValidation=Strict|Warn``) runs
``python -m sendo.api.openapi_models`` once, in a child process, while the event loop
goes on serving, and keeps only the JSON it prints (~450 KB; a few MB as dicts, see
`definitions`). An idle server never pays anything; if the child cannot run, the
schemas are built in a worker thread instead.

`FieldTree` is what the write path uses: a per-kind tree of known field names
compiled once from these schemas, to list the unknown fields of an object quickly.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

Schema = dict[str, Any]
REF = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
TIME = f"{META}.Time"
MICRO_TIME = f"{META}.MicroTime"
FIELDS_V1 = f"{META}.FieldsV1"
OBJECT_META = f"{META}.ObjectMeta"
LIST_META = f"{META}.ListMeta"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
GVK = "x-kubernetes-group-version-kind"

# The apimachinery types (meta/v1) that the client names like any V1 type.
META_TYPES = {"ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "ManagedFieldsEntry",
              "OwnerReference", "Condition", "Status", "StatusDetails", "StatusCause", "DeleteOptions",
              "Preconditions", "APIResource", "APIResourceList", "APIGroup", "APIGroupList", "APIVersions",
              "GroupVersionForDiscovery", "ServerAddressByClientCIDR", "WatchEvent", "FieldSelectorRequirement"}

# Types the client flattens to plain strings or `object`; Kubernetes gives them names.
SPECIAL: dict[str, Schema] = {
    TIME: {"description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and "
           "JSON. Wrappers are provided for many of the factory methods that the time package offers.",
           "type": "string", "format": "date-time"},
    MICRO_TIME: {"description": "MicroTime is version of Time with microsecond level precision.",
                 "type": "string", "format": "date-time"},
    INT_OR_STRING: {"description": "IntOrString is a type that can hold an int32 or a string. When used in JSON "
                    "or YAML marshalling and unmarshalling, it produces or consumes the inner type. This allows "
                    "you to have, for example, a JSON field that can accept a name or number.",
                    "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True},
    QUANTITY: {"description": "Quantity is a fixed-point representation of a number. It provides convenient "
               "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors. "
               "The serialization format is: <quantity> ::= <signedNumber><suffix> (for example 100m, 1.5Gi, "
               "2).", "oneOf": [{"type": "string"}, {"type": "number"}]},
    FIELDS_V1: {"description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON "
                "format.", "type": "object", PRESERVE: True},
    RAW_EXTENSION: {"description": "RawExtension is used to hold extensions in external versions.",
                    "type": "object", PRESERVE: True},
}

# Fields that hold Quantities (the client types them str / Dict[str, str]).
QUANTITY_FIELDS = {"limits", "requests", "capacity", "allocatable", "overhead", "allocatedResources", "sizeLimit",
                   "hard", "used", "maximumVolumeSize"}
QUANTITY_FIELDS_OF = {"V1LimitRangeItem": {"default", "defaultRequest", "max", "min", "maxLimitRequestRatio"}}
# Timestamps with microseconds (the client types every timestamp `datetime`).
MICRO_TIME_FIELDS = {"eventTime", "lastObservedTime", "acquireTime", "renewTime", "pingTime"}
# Descriptions Kubernetes gives fields whose type is a struct (the client drops them).
FIELD_DOCS = {
    "metadata": "Standard object's metadata. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    "list-metadata": "Standard list metadata. More info: "
                     "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
}

_VERSION = r"V\d+(?:alpha\d+|beta\d+)?"
_PREFIXED = re.compile(rf"^([A-Z][a-z]+)({_VERSION})([A-Z]\w*)$")
_PLAIN = re.compile(rf"^({_VERSION})([A-Z]\w*)$")
_NOT_MODELS = {"List", "Dict", "list", "dict", "str", "bytes", "int", "bool", "float", "object", "datetime", "date"}
_API_MODULE = re.compile(r"^(\w+?)_(v\d+(?:alpha\d+|beta\d+)?)_api\.py$")
_RETURNS = re.compile(r"\) -> (\w+):")
_NOQA = re.compile(r"\s*#\s*noqa(:\s*[A-Z]\d+)?")
_GETS = re.compile(r"^\s*Gets the \w+ of this \w+\.\s*$", re.M)


def package(group: str, version: str) -> str:
    """The prefix of a group-version's definition names, as Kubernetes' Go packages name it."""
    if group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}"
    if group == "apiregistration.k8s.io":
        return f"io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}"
    pkg = {"": "core", "internal.apiserver.k8s.io": "apiserverinternal"}.get(group, group.split(".")[0])
    return f"io.k8s.api.{pkg}.{version}"


def _group_of_prefix(prefix: str) -> str:
    """`CoreV1Event` → "", `RbacV1Subject` → rbac.authorization.k8s.io, …"""
    p = prefix.lower()
    return {"core": "", "apps": "apps", "batch": "batch", "policy": "policy", "autoscaling": "autoscaling",
            "rbac": "rbac.authorization.k8s.io", "flowcontrol": "flowcontrol.apiserver.k8s.io",
            "internal": "internal.apiserver.k8s.io"}.get(p, f"{p}.k8s.io")


def _group_of_module(part: str) -> str:
    """`core_v1_api.py` → "", `rbac_authorization_v1_api.py` → rbac.authorization.k8s.io."""
    if part == "core":
        return ""
    if part in ("apps", "batch", "policy", "autoscaling"):
        return part
    return part.replace("_", ".") + ".k8s.io"


def model_names(group: str, version: str, kind: str) -> list[str]:
    """Client class names a kind may have: `CoreV1Event` before `V1Event`."""
    ver = version[:1].upper() + version[1:]
    prefix = "Core" if not group else group.split(".")[0].capitalize()
    return [prefix + ver + kind, ver + kind]


def clean_doc(text: str | None) -> str:
    """A description without the generator's boilerplate."""
    if not text:
        return ""
    text = text.split("\n    Attributes:")[0]
    if "auto generated by OpenAPI Generator" in text:
        return ""
    text = _GETS.sub("", _NOQA.sub("", text))
    lines = [ln.strip() for ln in text.strip().splitlines()]
    while lines and re.match(r"^:(return|rtype|param)", lines[-1]):
        lines.pop()
    return "\n".join(lines).strip()


# ----------------------------------------------------------------- the builder (child process)


def _plain_type(ann: Any) -> str:
    """What an `object` field really is, from its pydantic annotation."""
    union = typing.get_origin(ann) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(ann) if a is not type(None)] if union else [ann]
    bases = set()
    for a in args:
        while typing.get_origin(a) is typing.Annotated:
            a = typing.get_args(a)[0]
        bases.add(typing.get_origin(a) or a)
    if bases == {int, str}:
        return "intstr"
    if bases == {dict}:
        return "dict"
    return "any"


def _inner(ann: Any) -> Any:
    """The element annotation of an (optional) List[...] / Dict[str, ...]."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    args = typing.get_args(ann)
    return args[-1] if args else Any


class _Builder:
    def __init__(self) -> None:
        import kubernetes.client.models as models  # the child process pays this, not the server

        self.models = models
        self.group_of: dict[str, tuple[str, str]] = {}  # model name → (group, version)

    def cls(self, name: str):
        return getattr(self.models, name, None)

    def refs_of(self, name: str) -> list[str]:
        c = self.cls(name)
        if c is None:
            return []
        return [w for t in c.openapi_types.values() for w in re.findall(r"\w+", t)
                if w not in _NOT_MODELS and self.cls(w) is not None]

    def closure(self, roots: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        todo = list(reversed(roots))
        while todo:
            n = todo.pop()
            if n in seen or self.cls(n) is None:
                continue
            seen[n] = None
            todo.extend(reversed(self.refs_of(n)))
        return list(seen)

    @staticmethod
    def version_of(name: str) -> str:
        m = _PREFIXED.match(name) or _PLAIN.match(name)
        if not m:
            return ""
        return (m.group(2) if m.re is _PREFIXED else m.group(1)).lower()

    # -- which Go package each type lives in
    def classify(self, roots: list[tuple[str, str, str]], needed: list[str]) -> None:
        for name in needed:
            m = _PREFIXED.match(name)
            if m:
                self.group_of[name] = (_group_of_prefix(m.group(1)), m.group(2).lower())
                continue
            m = _PLAIN.match(name)
            if m and m.group(1) == "V1" and m.group(2) in META_TYPES:
                self.group_of[name] = ("meta", "v1")
        for name, (group, version) in roots:
            self.group_of.setdefault(name, (group, version))
        pending = [n for n in needed if n not in self.group_of]
        if not pending:
            return
        # Each API module's top-level types (what its operations return) and what they reach
        # belong to that group, core first: a type other groups borrow (PodTemplateSpec) is core.
        api_dir = Path(self.models.__file__).parent.parent / "api"
        modules: list[tuple[str, str, Path]] = []
        for p in sorted(api_dir.glob("*_api.py")):
            m = _API_MODULE.match(p.name)
            if m:
                modules.append((_group_of_module(m.group(1)), m.group(2), p))
        served = [(g, v) for _, (g, v) in roots]
        modules.sort(key=lambda t: (t[0] != "", (t[0], t[1]) not in served, t[0], t[1]))
        for group, version, path in modules:
            pending = [n for n in pending if n not in self.group_of]
            if not pending:
                return
            if version not in {self.version_of(n) for n in pending}:
                continue
            tops = [n for n in dict.fromkeys(_RETURNS.findall(path.read_text()))
                    if self.version_of(n) == version and self.cls(n) is not None]
            for n in self.closure(tops):
                if n not in self.group_of and self.version_of(n) == version and not _PREFIXED.match(n):
                    self.group_of[n] = (group, version)
        # Not reachable from any API's results: join the group that owns the other types of
        # that version here (v1alpha3 scheduling types used by a v1 Job), else core.
        for n in pending:
            if n in self.group_of:
                continue
            version = self.version_of(n)
            owners = [g for m, (g, v) in self.group_of.items() if v == version and g != "meta" and m in needed]
            self.group_of[n] = (max(set(owners), key=owners.count) if owners else "", version)

    def def_name(self, name: str) -> str:
        group, version = self.group_of[name]
        m = _PREFIXED.match(name) or _PLAIN.match(name)
        short = m.group(3) if m.re is _PREFIXED else m.group(2)
        if group == "meta":
            return f"{META}.{short}"
        return f"{package(group, version)}.{short}"

    # -- schemas
    def type_schema(self, owner: str, field: str, typ: str, ann: Any) -> Schema:
        typ = typ.strip()  # List[V1Container], Dict[str, str]; older clients: list[...], dict(str, str)
        if typ[:5] in ("List[", "list[") and typ.endswith("]"):
            return {"type": "array", "items": self.type_schema(owner, field, typ[5:-1], _inner(ann))}
        if (typ.startswith("Dict[") and typ.endswith("]")) or (typ.startswith("dict(") and typ.endswith(")")):
            value = typ[5:-1].split(",", 1)[1]
            return {"type": "object",
                    "additionalProperties": self.type_schema(owner, field, value, _inner(ann))}
        if typ == "str":
            if field in QUANTITY_FIELDS or field in QUANTITY_FIELDS_OF.get(owner, ()):
                return {"$ref": REF + QUANTITY}
            return {"type": "string"}
        if typ == "int":
            return {"type": "integer", "format": "int64"}
        if typ == "float":
            return {"type": "number", "format": "double"}
        if typ == "bool":
            return {"type": "boolean"}
        if typ == "bytes":
            return {"type": "string", "format": "byte"}
        if typ in ("datetime", "date"):
            return {"$ref": REF + (MICRO_TIME if field in MICRO_TIME_FIELDS else TIME)}
        if typ == "object":
            if field == "fieldsV1":
                return {"$ref": REF + FIELDS_V1}
            kind = _plain_type(ann)
            if kind == "intstr":
                return {"$ref": REF + INT_OR_STRING}
            if kind == "dict":
                return {"type": "object", PRESERVE: True}
            return {PRESERVE: True}
        if self.cls(typ) is not None:
            return {"$ref": REF + self.def_name(typ)}
        return {}

    def model_schema(self, name: str) -> Schema:
        c = self.cls(name)
        fields = getattr(c, "model_fields", {})
        props: dict[str, Schema] = {}
        required: list[str] = []
        for attr, typ in c.openapi_types.items():
            json_name = c.attribute_map.get(attr, attr)
            f = fields.get(attr)
            desc = clean_doc(f.description if f is not None else getattr(getattr(c, attr, None), "__doc__", ""))
            s = self.type_schema(name, json_name, typ, f.annotation if f is not None else Any)
            if not desc and json_name == "metadata" and "$ref" in s:
                desc = FIELD_DOCS["list-metadata" if s["$ref"].endswith(".ListMeta") else "metadata"]
            if desc:
                s = {"allOf": [s], "description": desc} if "$ref" in s else {"description": desc, **s}
            elif "$ref" in s and self.cls(typ) is not None:
                # The client drops a struct field's own description. Beside the $ref (where
                # schema readers ignore it) the type's words still fill kubectl explain's
                # field list, and are not printed twice when the field itself is explained.
                doc = clean_doc(self.cls(typ).__doc__)
                if doc:
                    s = {**s, "description": doc}
            props[json_name] = s
            if f is not None and f.is_required():
                required.append(json_name)
        out: Schema = {"description": clean_doc(c.__doc__), "type": "object", "properties": props}
        if not out["description"]:
            del out["description"]
        if required:
            out["required"] = required
        return out

    def build(self, kinds: list[tuple[str, str, str]]) -> dict[str, Any]:
        roots: list[tuple[str, tuple[str, str]]] = []
        top: dict[str, dict[str, str]] = {}  # model → its group-version-kind
        kind_names: dict[str, str] = {}
        for group, version, kind in kinds:
            for candidate in model_names(group, version, kind):
                if self.cls(candidate) is not None:
                    roots.append((candidate, (group, version)))
                    top[candidate] = {"group": group, "version": version, "kind": kind}
                    lst = candidate + "List"
                    if self.cls(lst) is not None:
                        roots.append((lst, (group, version)))
                        top[lst] = {"group": group, "version": version, "kind": kind + "List"}
                    break
        needed = self.closure([n for n, _ in roots])
        self.classify(roots, needed)
        defs: dict[str, Schema] = {}
        for n in needed:
            s = self.model_schema(n)
            if n in top:
                s[GVK] = [top[n]]
                gvk = top[n]
                kind_names[f"{gvk['group']}/{gvk['version']}/{gvk['kind']}"] = self.def_name(n)
            defs[self.def_name(n)] = s
        defs.update(SPECIAL)
        return {"definitions": dict(sorted(defs.items())), "kinds": kind_names}


def build(kinds: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Definitions for these kinds (group, version, kind) and every type they reach.

    Returns {"definitions": {name: schema}, "kinds": {"group/version/Kind": name}}.
    """
    return _Builder().build([tuple(k) for k in kinds])  # type: ignore[misc]


def main() -> None:
    kinds = orjson.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    sys.stdout.buffer.write(orjson.dumps(build(kinds)))


# ----------------------------------------------------------------- in the server


class Definitions:
    """The built schemas, and the field trees compiled from them on demand."""

    def __init__(self, data: dict[str, Any]):
        self.schemas: dict[str, Schema] = data.get("definitions") or {}
        self.kinds: dict[str, str] = data.get("kinds") or {}
        self._refs: dict[str, tuple[str, ...]] = {}
        self._trees: dict[str, FieldTree] = {}

    def name_of(self, group: str, version: str, kind: str) -> str | None:
        return self.kinds.get(f"{group}/{version}/{kind}")

    def refs(self, name: str) -> tuple[str, ...]:
        """Names of the definitions `name` refers to directly."""
        got = self._refs.get(name)
        if got is None:
            found: list[str] = []
            collect_refs(self.schemas.get(name), found)
            got = self._refs[name] = tuple(dict.fromkeys(found))
        return got

    def closure(self, names: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        todo = list(names)
        while todo:
            n = todo.pop()
            if n in seen or n not in self.schemas:
                continue
            seen[n] = None
            todo.extend(self.refs(n))
        return sorted(seen)

    def tree(self, name: str) -> FieldTree | None:
        """The field tree of a definition; compiled once, shared by every kind that uses it."""
        if name not in self.schemas:
            return None
        t = self._trees.get(name)
        if t is None:
            t = compile_tree(self.schemas, name, self._trees)
        return t


def collect_refs(s: Any, out: list[str]) -> None:
    if isinstance(s, dict):
        ref = s.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            out.append(ref[len(REF):])
        for v in s.values():
            if isinstance(v, (dict, list)):
                collect_refs(v, out)
    elif isinstance(s, list):
        for v in s:
            collect_refs(v, out)


# -- unknown fields

OBJ, ARR, MAP, ANY, LEAF = range(5)


class FieldTree:
    """Known fields of an object (OBJ), or the element of an array (ARR) or map (MAP)."""

    __slots__ = ("kind", "fields", "elem")

    def __init__(self, kind: int):
        self.kind = kind
        self.fields: dict[str, FieldTree] = {}
        self.elem: FieldTree | None = None

    def unknown(self, obj: Any) -> list[str]:
        """Paths of the fields of obj this tree does not know, as Kubernetes prints them."""
        out: list[str] = []
        _walk(obj, self, "", out)
        return out


_ANY_TREE = FieldTree(ANY)
_LEAF_TREE = FieldTree(LEAF)


def _walk(v: Any, t: FieldTree, path: str, out: list[str]) -> None:
    k = t.kind
    if k == OBJ:
        if type(v) is dict:
            fields = t.fields
            for key, sub in v.items():
                n = fields.get(key)
                if n is None:
                    out.append(f"{path}.{key}" if path else key)
                elif n.kind < ANY and sub is not None:
                    _walk(sub, n, f"{path}.{key}" if path else key, out)
    elif k == ARR:
        if type(v) is list:
            elem = t.elem
            for i, item in enumerate(v):
                _walk(item, elem, f"{path}[{i}]", out)
    elif k == MAP:
        if type(v) is dict:
            elem = t.elem
            for key, item in v.items():
                _walk(item, elem, f"{path}.{key}" if path else key, out)


def _deref(schemas: dict[str, Schema], s: Schema) -> tuple[str | None, Schema]:
    ref = s.get("$ref")
    if ref is None and isinstance(s.get("allOf"), list) and len(s["allOf"]) == 1:
        ref = s["allOf"][0].get("$ref")
    if isinstance(ref, str) and ref.startswith(REF):
        name = ref[len(REF):]
        return name, schemas.get(name) or {}
    return None, s


def compile_tree(schemas: dict[str, Schema], name: str, memo: dict[str, FieldTree]) -> FieldTree:
    """A FieldTree for a definition; recursive types (JSONSchemaProps) share nodes through memo."""
    return _compile(schemas, {"$ref": REF + name}, memo)


def _compile(schemas: dict[str, Schema], s: Schema, memo: dict[str, FieldTree]) -> FieldTree:
    name, s = _deref(schemas, s)
    if name is not None and name in memo:
        return memo[name]
    if s.get(PRESERVE) is True or s.get("x-kubernetes-int-or-string") is True:
        t = _ANY_TREE
    elif s.get("type") == "array":
        t = FieldTree(ARR)
        if name is not None:
            memo[name] = t
        t.elem = _compile(schemas, s.get("items") or {}, memo)
        return t
    elif s.get("type") == "object" or "properties" in s:
        props = s.get("properties")
        extra = s.get("additionalProperties")
        if isinstance(props, dict) and props:
            t = FieldTree(OBJ)
            if name is not None:
                memo[name] = t
            for key, sub in props.items():
                t.fields[key] = _compile(schemas, sub, memo)
            return t
        if isinstance(extra, dict):
            t = FieldTree(MAP)
            if name is not None:
                memo[name] = t
            t.elem = _compile(schemas, extra, memo)
            return t
        t = _ANY_TREE  # an object with no declared fields: opaque (RawExtension, FieldsV1)
    elif s.get("type") in ("string", "integer", "number", "boolean"):
        t = _LEAF_TREE
    else:
        t = _ANY_TREE
    if name is not None:
        memo[name] = t
    return t


# -- loading, once per process

_cache: dict[tuple, Definitions] = {}
_tasks: dict[tuple, asyncio.Task] = {}
BUILD_TIMEOUT = 120.0


async def definitions(kinds: tuple[tuple[str, str, str], ...]) -> Definitions:
    """The definitions for these built-in kinds, built on first use and kept.

    Concurrent first callers share one build, which a cancelled caller does not stop.
    A failed build yields empty definitions (documents without schemas, no
    unknown-field checks), logged once.
    """
    got = _cache.get(kinds)
    if got is not None:
        return got
    task = _tasks.get(kinds)
    if task is None or task.get_loop() is not asyncio.get_running_loop():
        task = _tasks[kinds] = asyncio.get_running_loop().create_task(_load(kinds))
    return await asyncio.shield(task)


async def _load(kinds: tuple[tuple[str, str, str], ...]) -> Definitions:
    try:
        defs = Definitions(await _build(kinds))
    except Exception as e:  # keep serving: documents without schemas
        log.error("could not build OpenAPI schemas from the kubernetes client: %s", e)
        defs = Definitions({})
    _cache[kinds] = defs
    _tasks.pop(kinds, None)
    return defs


async def _build(kinds: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    arg = orjson.dumps([list(k) for k in kinds]).decode()
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sendo.api.openapi_models", arg, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), BUILD_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"building the schemas took longer than {BUILD_TIMEOUT:.0f}s")
        if proc.returncode != 0:
            raise RuntimeError(err.decode(errors="replace").strip()[-2000:] or f"exit status {proc.returncode}")
        return orjson.loads(out)
    except (OSError, RuntimeError, orjson.JSONDecodeError) as e:
        log.warning("building OpenAPI schemas in a child process failed (%s); building them here", e)
        return await asyncio.to_thread(build, [list(k) for k in kinds])


if __name__ == "__main__":
    main()
