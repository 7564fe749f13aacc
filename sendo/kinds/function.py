"""sendo.dev/v1alpha1 Function: Python code that sendo runs behind HTTP, cron and cluster events.

Served as a built-in kind with the shape of a custom resource (an openAPIV3Schema, so
kubectl sees a schema, merge patches, and `kubectl explain` work as for any CRD). Besides
the schema, a Function is checked at apply: ``spec.source.inline`` must compile as Python
(the 422 names the field and the line), ``spec.handler`` must be ``module.function``
with a function of that name defined at the top level of an inline source, exactly one
source is given, and ``spec.source.files.path`` (a directory on the node, which the server
cannot read) is absolute and normalised.
`controllers/function.py` runs it; `sendo/functions/` holds the runtime pieces.
"""
from __future__ import annotations

import ast
import hashlib
import posixpath
from typing import Any

import orjson

from .base import Cause, Column, Obj, Printer, Resource
from .printing import as_dict, dicts, object_age
from .schema import Schema, normalize, validate_object
from .validation import KindStrategy, invalid_value

GROUP = "sendo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
EVENT_TYPES = ["ADDED", "MODIFIED", "DELETED"]
SOURCES = ("inline", "configMapRef", "files")
FILES_LABEL = "sendo.dev/function-files"  # on the ConfigMaps `sendo fn deploy --dir` packs a directory in
FILES_KEY = "files.zip"  # the archive's key in a `source.files.configMapRef` ConfigMap (binaryData)

_INT = {"type": "integer", "format": "int32"}
_OBJ_ANY = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

SPEC_SCHEMA: Schema = {
    "type": "object",
    "required": ["handler", "source"],
    "properties": {
        "runtime": {"type": "string", "enum": ["python3"], "default": "python3"},
        "handler": {"type": "string", "minLength": 1},
        "source": {"type": "object", "properties": {
            "inline": {"type": "string"},
            "configMapRef": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "key": {"type": "string"}}},
            "files": {"type": "object", "properties": {
                "path": {"type": "string"},
                "configMapRef": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}}}}},
        }},
        "requirements": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "array", "items": _OBJ_ANY},
        "concurrency": {**_INT, "minimum": 1, "default": 10},
        "queueDepth": {**_INT, "minimum": 0, "default": 100},
        "minScale": {**_INT, "minimum": 0, "default": 0},
        "maxScale": {**_INT, "minimum": 1, "default": 10},
        "scaleToZeroAfterSeconds": {**_INT, "minimum": 1, "default": 60},
        "timeoutSeconds": {**_INT, "minimum": 1, "default": 30},
        "autoscaling": {"type": "object", "properties": {
            "targetUtilization": {"type": "number", "minimum": 0.01, "maximum": 1},
            "stableWindowSeconds": {"type": "number", "minimum": 1},
            "panicWindowSeconds": {"type": "number", "minimum": 1},
            "panicThreshold": {"type": "number", "minimum": 1},
        }},
        "triggers": {"type": "array", "items": {"type": "object", "properties": {
            "http": {"type": "object", "properties": {"port": {**_INT, "minimum": 1, "maximum": 65535}}},
            "cron": {"type": "object", "required": ["schedule"], "properties": {
                "schedule": {"type": "string"}, "timeZone": {"type": "string"}}},
            "event": {"type": "object", "required": ["kind"], "properties": {
                "apiVersion": {"type": "string", "default": "v1"},
                "kind": {"type": "string"},
                "namespace": {"type": "string"},
                "labelSelector": {"type": "string"},
                "types": {"type": "array", "items": {"type": "string", "enum": EVENT_TYPES}}}},
            "retries": {**_INT, "minimum": 0},
        }}},
    },
}
SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": SPEC_SCHEMA,
        "status": _OBJ_ANY,
    },
}


def source_error(source: str) -> tuple[int, str] | None:
    """(line, message) of the first syntax error in source, or None when it compiles."""
    try:
        compile(source, "<function source>", "exec", dont_inherit=True)
    except SyntaxError as e:
        return e.lineno or 0, e.msg
    except ValueError as e:  # e.g. NUL bytes
        return 0, str(e)
    return None


def defines(source: str, name: str) -> bool:
    """Whether source binds ``name`` at its top level (def, async def, assignment or import)."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
    return False


def split_handler(handler: str) -> tuple[str, str] | None:
    """('main', 'handle') for 'main.handle'; None when it is not module.function."""
    module, _, func = handler.rpartition(".")
    if not module or not func or not func.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        return None
    return module, func


def check_spec(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    handler = spec.get("handler")
    parts = split_handler(handler) if isinstance(handler, str) else None
    if isinstance(handler, str) and parts is None:
        causes.append(invalid_value("spec.handler", handler, "must be module.function, e.g. main.handle"))
    source = as_dict(spec.get("source"))
    inline = source.get("inline")
    given = [k for k in SOURCES if source.get(k) is not None]
    if len(given) != 1:
        causes.append(Cause("spec.source", "Invalid value: exactly one of inline, configMapRef or files must be given"))
    if "files" in source:
        causes += _check_files(as_dict(source.get("files")), "spec.source.files")
    if isinstance(inline, str):
        err = source_error(inline)
        if err is not None:
            line, msg = err
            causes.append(Cause("spec.source.inline", f"Invalid value: Python syntax error at line {line}: {msg}"))
        elif parts is not None and not defines(inline, parts[1]):
            causes.append(invalid_value("spec.handler", handler,
                                        f"the source defines no top-level {parts[1]!r}"))
    lo, hi = spec.get("minScale"), spec.get("maxScale")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        causes.append(invalid_value("spec.minScale", lo, "must be less than or equal to spec.maxScale"))
    for i, t in enumerate(dicts(spec.get("triggers"))):
        kinds = [k for k in ("http", "cron", "event") if k in t]
        if len(kinds) != 1:
            causes.append(Cause(f"spec.triggers[{i}]", "Invalid value: exactly one of http, cron or event"))
        cron = as_dict(t.get("cron"))
        if cron:
            causes += _check_cron(cron, f"spec.triggers[{i}].cron")
    return causes


def _check_files(files: Obj, path: str) -> list[Cause]:
    """A directory on the node (absolute, normalised, not /) or a ConfigMap holding the archive."""
    given = [k for k in ("path", "configMapRef") if files.get(k) is not None]
    if len(given) != 1:
        return [Cause(path, "Invalid value: exactly one of path or configMapRef must be given")]
    d = files.get("path")
    if isinstance(d, str):
        if not d.startswith("/") or d.rstrip("/") == "":
            return [invalid_value(f"{path}.path", d, "must be an absolute directory other than /")]
        if posixpath.normpath(d) != d.rstrip("/") or "\x00" in d:
            return [invalid_value(f"{path}.path", d, "must be normalised (no '..', '.' or '//' parts)")]
    return []


def _check_cron(cron: Obj, path: str) -> list[Cause]:
    """The schedule as a CronJob's (five fields, a descriptor, or `@every <duration>`)."""
    from .batch import validate_schedule, validate_time_zone

    return validate_schedule(cron.get("schedule"), f"{path}.schedule") + \
        validate_time_zone(cron.get("timeZone"), f"{path}.timeZone")


def version_of(spec: Obj) -> str:
    """A short hash of what makes a new version: everything but scaling and triggers."""
    keep = {k: v for k, v in spec.items() if k not in (
        "minScale", "maxScale", "scaleToZeroAfterSeconds", "autoscaling", "triggers")}
    return hashlib.sha256(orjson.dumps(keep, option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]


class FunctionStrategy(KindStrategy):
    """The schema (prune, default, validate) plus the Python checks above."""

    has_status = True
    schema = SCHEMA

    def default(self, obj: Obj) -> None:
        normalize(obj, SCHEMA)

    def prepare_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def validate_object(self, obj: Obj) -> list[Cause]:
        normalize(obj, SCHEMA)
        causes = validate_object(obj, SCHEMA)
        return causes or check_spec(as_dict(obj.get("spec")))


def function_row(fn: Obj) -> list[Any]:
    status = as_dict(fn.get("status"))
    return [as_dict(fn.get("metadata")).get("name", ""), status.get("url") or "<none>",
            status.get("readyVersion") or "<none>", int(status.get("readyInstances") or 0),
            int(status.get("inFlight") or 0), object_age(fn)]


FUNCTION_PRINTER = Printer(
    columns=[
        Column("Name", format="name", description="Name of the function."),
        Column("URL", description="Where the function answers HTTP (its ingress path)."),
        Column("Version", description="The version every ready instance runs."),
        Column("Ready", type="integer", description="Instances ready to serve."),
        Column("In-Flight", type="integer", description="Invocations running or queued now."),
        Column("Age", description="Time since the function was created."),
    ],
    row=function_row,
)

FUNCTION_RESOURCE = Resource(GROUP, VERSION, "Function", "functions", True, short_names=["fn"],
                             subresources={"status"}, strategy=FunctionStrategy(), printer=FUNCTION_PRINTER,
                             custom=True)
RESOURCES = [FUNCTION_RESOURCE]
