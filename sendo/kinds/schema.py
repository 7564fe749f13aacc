"""OpenAPI v3 schemas of custom resources: pruning, defaulting and validation.

A CustomResourceDefinition carries one `openAPIV3Schema` per version. Kubernetes
treats such a "structural" schema as the whole truth about an object: on every write
it drops fields the schema does not know (pruning), fills in `default`s, and only
then validates, so what is stored is always shaped by the schema. This module does
the same three steps on plain JSON values, and also checks that a schema given in a
CRD is structural enough to do them (`check_schema`).

Errors are `Cause`s worded the way the Kubernetes API server words them, e.g.
``spec.replicas: Invalid value: "string": spec.replicas in body must be of type
integer: "string"``, so a user sees the same message they would see on a real cluster.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import uuid
from typing import Any

from .base import Cause, forbidden, required
from .userregex import PatternError, pattern_error, search
from .validation import go_value

Schema = dict[str, Any]

TYPES = ["array", "boolean", "integer", "number", "object", "string"]
ROOT_FIELDS = ("apiVersion", "kind", "metadata")  # implicitly specified in every object
OBJECT_META_FIELDS = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
                      "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
                      "annotations", "ownerReferences", "finalizers", "managedFields"}
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
EMBEDDED = "x-kubernetes-embedded-resource"
INT32 = (-(2 ** 31), 2 ** 31 - 1)
INT64 = (-(2 ** 63), 2 ** 63 - 1)


# ----------------------------------------------------------------- JSON helpers


def json_type(v: Any) -> str:
    """The JSON type name of a value; a float with no fraction counts as an integer, as in Go."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values where true is not 1 (Python says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def number(x: Any) -> str:
    """A number as Go's %v prints it: 1 rather than 1.0."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    return str(x)


def shown(v: Any) -> str:
    """A bad value as it appears after "Invalid value:"."""
    if isinstance(v, float):
        return number(v)
    return go_value(v)


def _quoted(v: Any) -> str:
    return json.dumps(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))


def _name(path: str) -> str:
    return path or "body"


def _is_int(v: Any) -> bool:
    return json_type(v) == "integer"


# ----------------------------------------------------------------- formats

_DATE = r"\d{4}-\d{2}-\d{2}"
_DATE_TIME = re.compile(_DATE + r"[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")
_DATE_ONLY = re.compile(_DATE + "$")
_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w))+$|^0$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _valid_date_time(s: str) -> bool:
    if not _DATE_TIME.match(s):
        return False
    month, day = int(s[5:7]), int(s[8:10])
    hour, minute = int(s[11:13]), int(s[14:16])
    return 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60


def _valid_date(s: str) -> bool:
    return bool(_DATE_ONLY.match(s)) and 1 <= int(s[5:7]) <= 12 and 1 <= int(s[8:10]) <= 31


def _valid_ip(s: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(s).version == version
    except ValueError:
        return False


def _valid_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
        return "/" in s
    except ValueError:
        return False


def _valid_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return len(s) == 36
    except ValueError:
        return False


def _valid_byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
        return True
    except ValueError:
        return False


STRING_FORMATS = {
    "date-time": _valid_date_time, "datetime": _valid_date_time, "date": _valid_date,
    "duration": lambda s: bool(_DURATION.match(s)), "uuid": _valid_uuid, "byte": _valid_byte,
    "ipv4": lambda s: _valid_ip(s, 4), "ipv6": lambda s: _valid_ip(s, 6), "cidr": _valid_cidr,
    "hostname": lambda s: bool(_HOSTNAME.match(s)), "email": lambda s: bool(_EMAIL.match(s)),
}
"""Formats checked on strings; others (password, uri, …) are accepted as Kubernetes does."""

INT_FORMATS = {"int32": INT32, "int64": INT64}


# ----------------------------------------------------------------- pruning


def prune(value: Any, schema: Schema, *, root: bool = True, dropped: list[str] | None = None,
          path: str = "") -> Any:
    """Drop what the schema does not specify, in place; returns the value.

    Unknown object fields go unless `x-kubernetes-preserve-unknown-fields` (or
    `additionalProperties`) keeps them. A null for a field that is not `nullable`
    goes too, so that the field's default can apply (Kubernetes prunes those nulls
    before defaulting). At the root, and in embedded resources, `apiVersion`, `kind`
    and `metadata` are always specified. The paths of unknown fields are appended to
    `dropped` when given (what `fieldValidation=Strict` reports).
    """
    if isinstance(value, dict):
        _prune_object(value, schema, root, dropped, path)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                prune(item, items, root=False, dropped=dropped, path=f"{path}[{i}]")
    return value


def unknown_fields(obj: Any, schema: Schema) -> list[str]:
    """Paths of the fields pruning would drop, e.g. ["spec.unknownField"] (obj is left alone)."""
    dropped: list[str] = []
    prune(copy.deepcopy(obj), schema, dropped=dropped)
    return dropped


def _prune_object(obj: dict, schema: Schema, root: bool, dropped: list[str] | None, path: str) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    keep_unknown = schema.get(PRESERVE) is True or extra is True
    embedded = root or schema.get(EMBEDDED) is True
    for key in list(obj):
        if embedded and key in ROOT_FIELDS:
            if key == "metadata" and not root and isinstance(obj[key], dict):
                for k in [k for k in obj[key] if k not in OBJECT_META_FIELDS]:
                    del obj[key][k]
            continue
        sub = props.get(key) if isinstance(props, dict) else None
        if sub is None and isinstance(extra, dict):
            sub = extra
        if not isinstance(sub, dict):
            if not keep_unknown:
                del obj[key]
                if dropped is not None:
                    dropped.append(_join(path, key))
            continue
        if obj[key] is None and not sub.get("nullable"):
            del obj[key]
            continue
        prune(obj[key], sub, root=False, dropped=dropped, path=_join(path, key))


# ----------------------------------------------------------------- defaulting


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill missing fields from `default`, in place, then descend (into defaults too)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else extra
            if isinstance(sub, dict):
                apply_defaults(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def normalize(obj: Any, schema: Schema) -> Any:
    """Prune, then default, as Kubernetes does to every object it is asked to store."""
    return apply_defaults(prune(obj, schema), schema)


# ----------------------------------------------------------------- validation


def validate(value: Any, schema: Schema, path: str = "") -> list[Cause]:
    """Every way value breaks schema, as field causes (never raises on odd input)."""
    causes: list[Cause] = []
    _check(value, schema, path, causes)
    return causes


def validate_object(obj: dict, schema: Schema) -> list[Cause]:
    """A whole custom object: apiVersion, kind and metadata belong to the API server,
    except that a schema may restrict metadata.name and metadata.generateName."""
    props = dict(schema.get("properties") or {})
    meta_schema = props.pop("metadata", None)
    for k in ROOT_FIELDS:
        props.pop(k, None)
    body_schema = {**schema, "properties": props,
                   "required": [r for r in schema.get("required") or [] if r not in ROOT_FIELDS]}
    causes = validate({k: v for k, v in obj.items() if k not in ROOT_FIELDS}, body_schema)
    meta = obj.get("metadata")
    if isinstance(meta_schema, dict) and isinstance(meta, dict):
        for k in ("name", "generateName"):
            sub = (meta_schema.get("properties") or {}).get(k)
            if isinstance(sub, dict) and k in meta:
                causes += validate(meta[k], sub, f"metadata.{k}")
    return causes


def _type_error(path: str, actual: str, wanted: str) -> Cause:
    return Cause(path, f'Invalid value: "{actual}": {_name(path)} in body must be of type {wanted}: "{actual}"',
                 "FieldValueTypeInvalid")


def _invalid(path: str, value: Any, why: str) -> Cause:
    return Cause(path, f"Invalid value: {shown(value)}: {_name(path)} in body {why}", "FieldValueInvalid")


def _check(v: Any, s: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(s, dict):
        return
    int_or_string = s.get(INT_OR_STRING) is True
    stype = s.get("type")
    if v is None:
        if not s.get("nullable") and (stype or int_or_string):
            causes.append(_type_error(path, "null", "integer,string" if int_or_string else stype))
        return
    actual = json_type(v)
    if int_or_string:
        if actual not in ("integer", "string"):
            causes.append(_type_error(path, actual, "integer,string"))
            return
    elif stype and not (actual == stype or (stype == "number" and actual == "integer")):
        causes.append(_type_error(path, actual, stype))
        return
    if "enum" in s and isinstance(s["enum"], list) and not any(json_equal(v, e) for e in s["enum"]):
        allowed = ", ".join(_quoted(e) for e in s["enum"])
        causes.append(Cause(path, f"Unsupported value: {shown(v)}: supported values: {allowed}",
                            "FieldValueNotSupported"))
    if isinstance(v, str):
        _check_string(v, s, path, causes)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        _check_number(v, s, path, causes)
    elif isinstance(v, list):
        _check_array(v, s, path, causes)
    elif isinstance(v, dict):
        _check_object(v, s, path, causes)
    _check_junctors(v, s, path, causes)


def _check_string(v: str, s: Schema, path: str, causes: list[Cause]) -> None:
    fmt = s.get("format")
    check = STRING_FORMATS.get(fmt) if isinstance(fmt, str) else None
    if check is not None and not check(v):
        causes.append(Cause(path, f"Invalid value: {shown(v)}: {_name(path)} in body must be of type {fmt}: "
                                  f"{json.dumps(v)}", "FieldValueTypeInvalid"))
    min_len, max_len = s.get("minLength"), s.get("maxLength")
    if _is_int(max_len) and len(v) > max_len:
        causes.append(Cause(path, f"Too long: may not be more than {number(max_len)} bytes", "FieldValueTooLong"))
    if _is_int(min_len) and len(v) < min_len:
        causes.append(_invalid(path, v, f"should be at least {number(min_len)} chars long"))
    pattern = s.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = search(pattern, v)
        except PatternError:
            matched = True  # check_schema refuses such schemas; never fail a write on our side
        if not matched:
            causes.append(_invalid(path, v, f"should match '{pattern}'"))


def _check_number(v: int | float, s: Schema, path: str, causes: list[Cause]) -> None:
    lo, hi = s.get("minimum"), s.get("maximum")
    if isinstance(hi, (int, float)):
        if s.get("exclusiveMaximum") is True and v >= hi:
            causes.append(_invalid(path, v, f"should be less than {number(hi)}"))
        elif v > hi:
            causes.append(_invalid(path, v, f"should be less than or equal to {number(hi)}"))
    if isinstance(lo, (int, float)):
        if s.get("exclusiveMinimum") is True and v <= lo:
            causes.append(_invalid(path, v, f"should be greater than {number(lo)}"))
        elif v < lo:
            causes.append(_invalid(path, v, f"should be greater than or equal to {number(lo)}"))
    factor = s.get("multipleOf")
    if isinstance(factor, (int, float)) and factor > 0 and (v / factor) != int(v / factor):
        causes.append(_invalid(path, v, f"should be a multiple of {number(factor)}"))
    bounds = INT_FORMATS.get(s.get("format")) if isinstance(s.get("format"), str) else None
    if bounds is not None and json_type(v) == "integer" and not bounds[0] <= v <= bounds[1]:
        causes.append(Cause(path, f"Invalid value: {shown(v)}: {_name(path)} in body must be of type "
                                  f"{s['format']}: \"{number(v)}\"", "FieldValueTypeInvalid"))


def _check_array(v: list, s: Schema, path: str, causes: list[Cause]) -> None:
    lo, hi = s.get("minItems"), s.get("maxItems")
    if _is_int(hi) and len(v) > hi:
        causes.append(Cause(path, f"Too many: {len(v)}: must have at most {number(hi)} items", "FieldValueTooMany"))
    if _is_int(lo) and len(v) < lo:
        causes.append(_invalid(path, len(v), f"should have at least {number(lo)} items"))
    if s.get("uniqueItems") is True and any(json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i)):
        causes.append(_invalid(path, "", "shouldn't contain duplicates"))
    list_type = s.get("x-kubernetes-list-type")
    if list_type == "set":
        for i, item in enumerate(v):
            if any(json_equal(item, v[j]) for j in range(i)):
                causes.append(Cause(f"{path}[{i}]", f"Duplicate value: {shown(item)}", "FieldValueDuplicate"))
    elif list_type == "map":
        keys = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
        seen: list[dict] = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys}
            if any(json_equal(key, other) for other in seen):
                causes.append(Cause(f"{path}[{i}]", f"Duplicate value: {go_value(key)}", "FieldValueDuplicate"))
            seen.append(key)
    items = s.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(v):
            _check(item, items, f"{path}[{i}]", causes)


def _check_object(v: dict, s: Schema, path: str, causes: list[Cause]) -> None:
    for key in s.get("required") or []:
        if key not in v:
            causes.append(required(_join(path, key)))
    lo, hi = s.get("minProperties"), s.get("maxProperties")
    if _is_int(hi) and len(v) > hi:
        causes.append(Cause(path, f"Too many: {len(v)}: must have at most {number(hi)} items", "FieldValueTooMany"))
    if _is_int(lo) and len(v) < lo:
        causes.append(_invalid(path, len(v), f"should have at least {number(lo)} properties"))
    if s.get(EMBEDDED) is True:
        for key in ("apiVersion", "kind"):
            if not v.get(key):
                causes.append(Cause(_join(path, key), "Required value: must not be empty", "FieldValueRequired"))
    props = s.get("properties") or {}
    extra = s.get("additionalProperties")
    for key, item in v.items():
        sub = props.get(key) if key in props else extra
        if isinstance(sub, dict):
            _check(item, sub, _join(path, key), causes)


def _check_junctors(v: Any, s: Schema, path: str, causes: list[Cause]) -> None:
    """allOf / anyOf / oneOf / not, as go-openapi words them."""
    def ok(sub: Any) -> bool:
        return not validate(v, sub, path)
    for sub in s.get("allOf") or []:
        _check(v, sub, path, causes)
    any_of = s.get("anyOf")
    if isinstance(any_of, list) and any_of and not any(ok(sub) for sub in any_of):
        causes.append(_invalid(path, v, "must validate at least one schema (anyOf)"))
    one_of = s.get("oneOf")
    if isinstance(one_of, list) and one_of and sum(ok(sub) for sub in one_of) != 1:
        causes.append(_invalid(path, v, "must validate one and only one schema (oneOf)"))
    if isinstance(s.get("not"), dict) and ok(s["not"]):
        causes.append(_invalid(path, v, "must not validate the schema (not)"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ----------------------------------------------------------------- is this schema usable?

_UNSUPPORTED_KEYS = {
    "$ref": "$ref is not supported", "definitions": "definitions are not supported",
    "dependencies": "dependencies are not supported", "patternProperties": "patternProperties is not supported",
    "additionalItems": "additionalItems is not supported", "id": "id is not supported",
    "$schema": "$schema is not supported",
}
_JUNCTORS = ("allOf", "anyOf", "oneOf")
_NUMERIC_KEYS = ("minimum", "maximum", "multipleOf")
_COUNT_KEYS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


def check_schema(schema: Any, path: str) -> list[Cause]:
    """Why a CRD's openAPIV3Schema cannot be used to prune, default and validate.

    The rules are Kubernetes' for structural schemas: a type on every specified node
    (unless int-or-string or preserve-unknown-fields), a root of type object,
    properties and additionalProperties mutually exclusive, only name and
    generateName restricted in metadata, and defaults that are pruned and valid.
    """
    if not isinstance(schema, dict):
        return [Cause(path, f"Invalid value: {go_value(schema)}: must be an object", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    stype = schema.get("type")
    if not stype:
        causes.append(Cause(f"{path}.type", "Required value: must not be empty at the root", "FieldValueRequired"))
    elif stype != "object":
        causes.append(Cause(f"{path}.type", f"Invalid value: {go_value(stype)}: must be object at the root"))
    for key in ("nullable", INT_OR_STRING, EMBEDDED):
        if schema.get(key) is True:
            causes.append(forbidden(f"{path}.{key}", f"{key} must be false at the root"))
    meta = (schema.get("properties") or {}).get("metadata") if isinstance(schema.get("properties"), dict) else None
    if isinstance(meta, dict):
        causes += _check_metadata_schema(meta, f"{path}.properties[metadata]")
    causes += _check_node(schema, path, in_junctor=False, where="root")
    return causes


def _check_metadata_schema(meta: Schema, path: str) -> list[Cause]:
    allowed = {"type", "properties", "description"}
    causes = [forbidden(f"{path}.{k}", "must not be specified, metadata is implicitly specified")
              for k in meta if k not in allowed]
    props = meta.get("properties") or {}
    if isinstance(props, dict):
        causes += [forbidden(f"{path}.properties[{k}]", "must not be specified, only name and generateName "
                             "may be restricted") for k in props if k not in ("name", "generateName")]
    if meta.get("type") not in (None, "object"):
        causes.append(Cause(f"{path}.type", f"Invalid value: {go_value(meta.get('type'))}: must be object"))
    return causes


def _check_node(s: Any, path: str, *, in_junctor: bool, where: str) -> list[Cause]:
    if not isinstance(s, dict):
        return [Cause(path, f"Invalid value: {go_value(s)}: must be a schema object", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    stype = s.get("type")
    int_or_string = s.get(INT_OR_STRING) is True
    preserve = s.get(PRESERVE)
    if preserve is False:
        causes.append(Cause(f"{path}.{PRESERVE}", "Invalid value: false: must be true or undefined"))
    if not in_junctor and where != "root":
        if not stype and not int_or_string and preserve is not True:
            what = "specified array items" if where == "items" else "specified object fields"
            causes.append(Cause(f"{path}.type", f"Required value: must not be empty for {what}",
                                "FieldValueRequired"))
    if stype and stype not in TYPES:
        allowed = ", ".join(f'"{t}"' for t in TYPES)
        causes.append(Cause(f"{path}.type", f"Unsupported value: {go_value(stype)}: supported values: {allowed}",
                            "FieldValueNotSupported"))
    if int_or_string and stype:
        causes.append(Cause(f"{path}.type", f"Invalid value: {go_value(stype)}: must be empty to be structural "
                                            "when x-kubernetes-int-or-string is true"))
    if s.get(EMBEDDED) is True and stype != "object":
        causes.append(Cause(f"{path}.type", f"Invalid value: {go_value(stype or '')}: must be object if "
                                            "x-kubernetes-embedded-resource is true"))
    for key, why in _UNSUPPORTED_KEYS.items():
        if key in s:
            causes.append(forbidden(f"{path}.{key}", why))
    if s.get("uniqueItems") is True:
        causes.append(forbidden(f"{path}.uniqueItems",
                                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    causes += _check_keywords(s, path)
    props, extra = s.get("properties"), s.get("additionalProperties")
    if extra is False:
        causes.append(forbidden(f"{path}.additionalProperties", "additionalProperties cannot be set to false"))
    elif props and extra is not None:
        causes.append(forbidden(f"{path}.additionalProperties",
                                "additionalProperties and properties are mutual exclusive"))
    if props is not None and not isinstance(props, dict):
        causes.append(Cause(f"{path}.properties", f"Invalid value: {go_value(props)}: must be an object",
                            "FieldValueTypeInvalid"))
    elif props:
        for name, sub in props.items():
            if where == "root" and name == "metadata":
                continue  # checked by _check_metadata_schema
            causes += _check_node(sub, f"{path}.properties[{name}]", in_junctor=in_junctor, where="property")
    if isinstance(extra, dict):
        causes += _check_node(extra, f"{path}.additionalProperties", in_junctor=in_junctor, where="property")
    items = s.get("items")
    if items is not None:
        if isinstance(items, list):
            causes.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
        else:
            causes += _check_node(items, f"{path}.items", in_junctor=in_junctor, where="items")
    elif stype == "array" and not in_junctor:
        causes.append(Cause(f"{path}.items", "Required value: must be specified", "FieldValueRequired"))
    for junctor in _JUNCTORS:
        subs = s.get(junctor)
        if subs is None:
            continue
        if not isinstance(subs, list):
            causes.append(Cause(f"{path}.{junctor}", f"Invalid value: {go_value(subs)}: must be a list of schemas",
                                "FieldValueTypeInvalid"))
            continue
        for i, sub in enumerate(subs):
            causes += _check_node(sub, f"{path}.{junctor}[{i}]", in_junctor=True, where=where)
    if "not" in s:
        causes += _check_node(s["not"], f"{path}.not", in_junctor=True, where=where)
    if "default" in s and not in_junctor:
        causes += _check_default(s, path, where)
    return causes


def _check_keywords(s: Schema, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in _NUMERIC_KEYS:
        if key in s and json_type(s[key]) not in ("integer", "number"):
            causes.append(Cause(f"{path}.{key}", f"Invalid value: {go_value(s[key])}: must be a number",
                                "FieldValueTypeInvalid"))
    for key in _COUNT_KEYS:
        if key in s and (not _is_int(s[key]) or s[key] < 0):
            causes.append(Cause(f"{path}.{key}", f"Invalid value: {go_value(s[key])}: must be a non-negative "
                                                 "integer", "FieldValueInvalid"))
    if "required" in s and not (isinstance(s["required"], list) and all(isinstance(r, str) for r in s["required"])):
        causes.append(Cause(f"{path}.required", f"Invalid value: {go_value(s['required'])}: must be a list of "
                                                "strings", "FieldValueTypeInvalid"))
    if "enum" in s and not isinstance(s["enum"], list):
        causes.append(Cause(f"{path}.enum", f"Invalid value: {go_value(s['enum'])}: must be a list",
                            "FieldValueTypeInvalid"))
    pattern = s.get("pattern")
    if pattern is not None:
        why = pattern_error(pattern) if isinstance(pattern, str) else "must be a string"
        if why is not None:
            causes.append(Cause(f"{path}.pattern", f"Invalid value: {go_value(pattern)}: must be a valid regular "
                                                   f"expression (RE2 syntax), but isn't: {why}"))
    return causes


def _check_default(s: Schema, path: str, where: str) -> list[Cause]:
    """A default must survive pruning unchanged and be valid where it lands."""
    default = s["default"]
    if where == "root":
        return [forbidden(f"{path}.default", "must not be set at the root")]
    pruned = prune(copy.deepcopy(default), s, root=False)
    causes: list[Cause] = []
    if not json_equal(pruned, default):
        causes.append(Cause(f"{path}.default", f"Invalid value: {go_value(default)}: must not have unknown fields"))
    if default is None and not s.get("nullable"):
        return causes + [Cause(f"{path}.default", "Invalid value: null: must not be null unless nullable is true")]
    filled = apply_defaults(copy.deepcopy(pruned), s)
    return causes + validate(filled, s, f"{path}.default")
