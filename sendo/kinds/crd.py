"""apiextensions.k8s.io/v1 CustomResourceDefinition: the kind that defines kinds.

This module checks a CRD the way Kubernetes does (names, scope, versions, schemas,
subresources, printer columns) and knows its lifecycle rules: the status carries
`acceptedNames`, `storedVersions` and the `NamesAccepted` / `Established` /
`Terminating` conditions; the first delete does not remove it but adds the
`customresourcecleanup.apiextensions.k8s.io` finalizer, which the registrar
(`sendo.api.crds`) takes off once every custom object is gone. Serving the custom
kind itself is the registrar's job.
"""
from __future__ import annotations

import re
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, required, unsupported
from .meta import set_status_condition
from .printing import as_dict, dicts, name_of
from .schema import check_schema
from .validation import KindStrategy, go_value, invalid_value, is_dns1123_subdomain

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ["Cluster", "Namespaced"]
COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
COLUMN_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]

_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = re.compile(f"^{_DNS1035_FMT}$")


def is_dns1035_label(v: str) -> list[str]:
    """RFC 1035 label: resource names, version names (start with a letter, max 63)."""
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035.match(v):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                    f"regex used for validation is '{_DNS1035_FMT}')")
    return errs


# ----------------------------------------------------------------- JSONPath (printer columns)

_STEP = re.compile(r"""
    \.(?P<name>[A-Za-z0-9_\-/$]+)                          # .field
  | \[(?P<index>-?\d+)\]                                    # [0]
  | (?P<all>\[\*\]|\.\*)                                    # [*] or .*
  | \[(?P<q>['"])(?P<key>.+?)(?P=q)\]                       # ['dotted.key']
  | \[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_\-/]+)+)\s*==\s*        # [?(@.type=="Ready")]
        (?:(?P<fq>['"])(?P<fval>.*?)(?P=fq)|(?P<fraw>[^)\s]+))\s*\)\]
""", re.VERBOSE)


class JSONPathError(ValueError):
    pass


def parse_jsonpath(path: str) -> list[tuple]:
    """The steps of a printer-column JSONPath: .a.b, [0], [*], ['k'], [?(@.k=="v")]."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text.startswith((".", "[")):
        raise JSONPathError("must be a JSON path starting with '.'")
    steps: list[tuple] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise JSONPathError(f"unrecognized JSON path at position {pos}: {text[pos:]!r}")
        if m.group("name") is not None:
            steps.append(("key", m.group("name")))
        elif m.group("index") is not None:
            steps.append(("index", int(m.group("index"))))
        elif m.group("all") is not None:
            steps.append(("all",))
        elif m.group("key") is not None:
            steps.append(("key", m.group("key")))
        else:
            want = m.group("fval") if m.group("fq") else m.group("fraw")
            steps.append(("filter", tuple(m.group("fpath")[1:].split(".")), want))
        pos = m.end()
    return steps


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def eval_jsonpath(steps: list[tuple], obj: Any) -> list[Any]:
    """Every value the path reaches in obj (missing parts reach nothing)."""
    current = [obj]
    for step in steps:
        out: list[Any] = []
        for v in current:
            if step[0] == "key" and isinstance(v, dict) and step[1] in v:
                out.append(v[step[1]])
            elif step[0] == "index" and isinstance(v, list) and -len(v) <= step[1] < len(v):
                out.append(v[step[1]])
            elif step[0] == "all":
                out.extend(v if isinstance(v, list) else v.values() if isinstance(v, dict) else [])
            elif step[0] == "filter" and isinstance(v, list):
                for item in v:
                    got = item
                    for k in step[1]:
                        got = got.get(k) if isinstance(got, dict) else None
                    if got is not None and _as_text(got) == step[2]:
                        out.append(item)
        current = out
    return current


def simple_path(path: str) -> tuple[str, ...] | None:
    """".spec.replicas" as ("spec", "replicas"); None when it is not plain dot notation."""
    if not re.fullmatch(r"(\.[A-Za-z0-9_\-]+)+", path or ""):
        return None
    return tuple(path[1:].split("."))


# ----------------------------------------------------------------- validation


def _names(spec: dict) -> dict:
    return as_dict(spec.get("names"))


def storage_version(crd: Obj) -> str | None:
    for v in dicts(as_dict(crd.get("spec")).get("versions")):
        if v.get("storage") is True:
            return v.get("name")
    return None


def condition(crd: Obj, ctype: str) -> dict | None:
    for c in dicts(as_dict(crd.get("status")).get("conditions")):
        if c.get("type") == ctype:
            return c
    return None


def is_established(crd: Obj) -> bool:
    return (condition(crd, "Established") or {}).get("status") == "True"


def validate_names(names: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in ("plural", "singular"):
        v = names.get(key)
        if isinstance(v, str) and v:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in is_dns1035_label(v)]
    for key in ("kind", "listKind"):
        v = names.get(key)
        if isinstance(v, str) and v:
            causes += [invalid_value(f"{path}.{key}", v, "may have mixed case, but should otherwise match: " + m)
                       for m in is_dns1035_label(v.lower())]
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        causes.append(invalid_value(f"{path}.listKind", names["listKind"], "kind and listKind may not be the same"))
    for key in ("shortNames", "categories"):
        for i, v in enumerate(names.get(key) or []):
            causes += [invalid_value(f"{path}.{key}[{i}]", v, m) for m in is_dns1035_label(str(v))]
    return causes


def validate_scale(scale: Any, path: str) -> list[Cause]:
    if not isinstance(scale, dict):
        return [Cause(path, f"Invalid value: {go_value(scale)}: must be an object", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    rules = [("specReplicasPath", (".spec.",), "should be a json path under .spec", True),
             ("statusReplicasPath", (".status.",), "should be a json path under .status", True),
             ("labelSelectorPath", (".spec.", ".status."), "should be a json path under either .spec or .status",
              False)]
    for key, prefixes, why, needed in rules:
        v = scale.get(key)
        if not v:
            if needed:
                causes.append(required(f"{path}.{key}"))
        elif not isinstance(v, str) or simple_path(v) is None or not v.startswith(prefixes):
            causes.append(invalid_value(f"{path}.{key}", v, why))
    return causes


def validate_columns(columns: Any, path: str) -> list[Cause]:
    if columns is None:
        return []
    if not isinstance(columns, list):
        return [Cause(path, f"Invalid value: {go_value(columns)}: must be a list", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    for i, col in enumerate(columns):
        p = f"{path}[{i}]"
        if not isinstance(col, dict):
            causes.append(Cause(p, f"Invalid value: {go_value(col)}: must be an object", "FieldValueTypeInvalid"))
            continue
        if not col.get("name"):
            causes.append(required(f"{p}.name"))
        ctype = col.get("type")
        if not ctype:
            causes.append(required(f"{p}.type"))
        elif ctype not in COLUMN_TYPES:
            causes.append(unsupported(f"{p}.type", ctype, COLUMN_TYPES))
        fmt = col.get("format")
        if fmt and fmt not in COLUMN_FORMATS:
            causes.append(unsupported(f"{p}.format", fmt, COLUMN_FORMATS))
        prio = col.get("priority")
        if prio is not None and (not isinstance(prio, int) or isinstance(prio, bool) or prio < 0):
            causes.append(invalid_value(f"{p}.priority", prio, "must be a non-negative integer"))
        jp = col.get("jsonPath")
        if not jp:
            causes.append(required(f"{p}.jsonPath"))
        else:
            try:
                parse_jsonpath(str(jp))
            except JSONPathError as e:
                causes.append(invalid_value(f"{p}.jsonPath", jp, f"must be a simple json path: {e}"))
    return causes


def validate_version(v: Any, path: str) -> list[Cause]:
    if not isinstance(v, dict):
        return [Cause(path, f"Invalid value: {go_value(v)}: must be an object", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    name = v.get("name")
    if not name:
        causes.append(required(f"{path}.name"))
    else:
        causes += [invalid_value(f"{path}.name", name, m) for m in is_dns1035_label(str(name))]
    for key in ("served", "storage"):
        if not isinstance(v.get(key), bool):
            causes.append(required(f"{path}.{key}") if v.get(key) is None else
                          Cause(f"{path}.{key}", f"Invalid value: {go_value(v.get(key))}: must be a boolean",
                                "FieldValueTypeInvalid"))
    schema = as_dict(v.get("schema")).get("openAPIV3Schema")
    if schema is None:
        causes.append(Cause(f"{path}.schema.openAPIV3Schema", "Required value: schemas are required",
                            "FieldValueRequired"))
    else:
        causes += check_schema(schema, f"{path}.schema.openAPIV3Schema")
    subs = v.get("subresources")
    if subs is not None:
        if not isinstance(subs, dict):
            causes.append(Cause(f"{path}.subresources", f"Invalid value: {go_value(subs)}: must be an object",
                                "FieldValueTypeInvalid"))
        elif subs.get("scale") is not None:
            causes += validate_scale(subs["scale"], f"{path}.subresources.scale")
    causes += validate_columns(v.get("additionalPrinterColumns"), f"{path}.additionalPrinterColumns")
    return causes


def validate_crd_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    group = spec.get("group")
    if not group:
        causes.append(required("spec.group"))
    elif not isinstance(group, str):
        causes.append(invalid_value("spec.group", group, "must be a string"))
    elif errs := is_dns1123_subdomain(group):
        causes += [invalid_value("spec.group", group, m) for m in errs]
    elif "." not in group:
        causes.append(invalid_value("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if not scope:
        causes.append(required("spec.scope"))
    elif scope not in SCOPES:
        causes.append(unsupported("spec.scope", scope, SCOPES))
    names = _names(spec)
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            causes.append(required(f"spec.names.{key}"))
    causes += validate_names(names, "spec.names")
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(Cause("spec.versions", "Required value: must have exactly one version marked as storage "
                                             "version", "FieldValueRequired"))
    else:
        seen: set[str] = set()
        for i, v in enumerate(versions):
            causes += validate_version(v, f"spec.versions[{i}]")
            name = as_dict(v).get("name")
            if not isinstance(name, str):
                continue  # validate_version reports it
            if name in seen:
                causes.append(Cause(f"spec.versions[{i}].name", f"Duplicate value: {go_value(name)}",
                                    "FieldValueDuplicate"))
            seen.add(name)
        if sum(1 for v in dicts(versions) if v.get("storage") is True) != 1:
            listed = [as_dict(v).get("name") for v in versions]
            causes.append(invalid_value("spec.versions", listed,
                                        "must have exactly one version marked as storage version"))
    if spec.get("preserveUnknownFields") is True:
        causes.append(invalid_value("spec.preserveUnknownFields", True, "cannot set to true, set "
                                    "x-kubernetes-preserve-unknown-fields to true in "
                                    "spec.versions[*].schema instead"))
    strategy = as_dict(spec.get("conversion")).get("strategy")
    if strategy not in (None, "None"):
        causes.append(unsupported("spec.conversion.strategy", strategy, ["None"]))
    return causes


def _immutable(path: str, new: Any, old: Any) -> list[Cause]:
    return [] if new == old else [invalid_value(path, new, "field is immutable")]


class CRDStrategy(KindStrategy):
    """Defaults, checks and the delete-with-cleanup rule of CustomResourceDefinitions."""

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        names = spec.get("names")
        if isinstance(names, dict) and isinstance(names.get("kind"), str) and names["kind"]:
            if not names.get("singular"):
                names["singular"] = names["kind"].lower()
            if not names.get("listKind"):
                names["listKind"] = names["kind"] + "List"
        conversion = spec.setdefault("conversion", {"strategy": "None"})
        if isinstance(conversion, dict):
            conversion.setdefault("strategy", "None")

    def prepare_create(self, obj: Obj) -> None:
        storage = storage_version(obj)
        obj["status"] = {"acceptedNames": {"plural": "", "kind": ""}, "conditions": [],
                         "storedVersions": [storage] if storage else []}

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        storage = storage_version(obj)
        status = obj.setdefault("status", {})
        if isinstance(status, dict) and storage:
            stored = status.setdefault("storedVersions", [])
            if isinstance(stored, list) and storage not in stored:
                stored.append(storage)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        causes: list[Cause] = []
        names = _names(spec)
        name, want = name_of(obj), f"{names.get('plural')}.{spec.get('group')}"
        if name and name != want:
            causes.append(invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
        causes += validate_crd_spec(spec)
        causes += validate_names(as_dict(as_dict(obj.get("status")).get("acceptedNames")), "status.acceptedNames")
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        causes = _immutable("spec.group", spec.get("group"), old_spec.get("group"))
        causes += _immutable("spec.names.plural", _names(spec).get("plural"), _names(old_spec).get("plural"))
        if is_established(old):
            causes += _immutable("spec.scope", spec.get("scope"), old_spec.get("scope"))
            causes += _immutable("spec.names.kind", _names(spec).get("kind"), _names(old_spec).get("kind"))
        served = {v.get("name") for v in dicts(spec.get("versions"))}
        for i, v in enumerate(as_dict(obj.get("status")).get("storedVersions") or []):
            if v not in served:
                causes.append(invalid_value(f"status.storedVersions[{i}]", v, "must appear in spec.versions"))
        return causes

    def holds_deletion(self, obj: Obj) -> bool:
        # The first delete only starts the cleanup (begin_deletion adds the finalizer).
        return not as_dict(obj.get("metadata")).get("deletionTimestamp")

    def begin_deletion(self, obj: Obj) -> None:
        if condition(obj, "Terminating") is not None:
            return  # cleanup already started; a repeated delete changes nothing
        meta = obj["metadata"]
        finalizers = meta.setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        set_condition(obj, "Terminating", "True", "InstanceDeletionInProgress",
                      "CustomResource deletion is in progress")


def set_condition(crd: Obj, ctype: str, status: str, reason: str, message: str) -> None:
    """Set one status condition; lastTransitionTime moves only when status changes."""
    set_status_condition(crd.setdefault("status", {}), ctype, status, reason, message)


def crd_row(crd: Obj) -> list[Any]:
    return [name_of(crd), as_dict(crd.get("metadata")).get("creationTimestamp") or ""]


CRD_PRINTER = Printer(
    columns=[Column("Name", format="name", description="Name of the CustomResourceDefinition: <plural>.<group>."),
             Column("Created At", type="date", description="When the definition was created (RFC 3339).")],
    row=crd_row,
)

CRD_RESOURCE = Resource(GROUP, "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
                        short_names=["crd", "crds"], categories=["api-extensions"], subresources={"status"},
                        strategy=CRDStrategy(), printer=CRD_PRINTER)

RESOURCES = [CRD_RESOURCE]

