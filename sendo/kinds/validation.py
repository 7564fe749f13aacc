"""Field checks shared by every kind, worded as Kubernetes words them.

Names, label keys and values, annotations, label selectors, int-or-percent values;
the pod spec has its own module (podspec.py).

Every check returns a list of `Cause`s and never raises: objects arrive as parsed JSON
and may hold any type anywhere, and a bad one must become a 422, never a 500.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .base import Cause, Obj, Strategy, forbidden, required, unsupported
from .meta import selector_matches  # noqa: F401  (kinds import it from here)
from .quantity import parse_quantity, QuantityError

# ----------------------------------------------------------------- causes, Go-style values


def go_value(v: Any) -> str:
    """A value as Kubernetes prints it in messages: "x", 3, true, map[string]string{...}."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        inner = ", ".join(f"{json.dumps(str(k))}:{json.dumps(v[k])}" for k in sorted(v))
        return "map[string]string{" + inner + "}"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "[]string{" + ", ".join(json.dumps(x) for x in v) + "}"
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def invalid_value(path: str, value: Any, why: str) -> Cause:
    return Cause(path, f"Invalid value: {go_value(value)}: {why}", "FieldValueInvalid")


def required_because(path: str, detail: str) -> Cause:
    return Cause(path, f"Required value: {detail}", "FieldValueRequired")


def not_found(path: str, value: Any) -> Cause:
    return Cause(path, f"Not found: {go_value(value)}", "FieldValueNotFound")


def too_long(path: str, max_bytes: int) -> Cause:
    return Cause(path, f"Too long: must have at most {max_bytes} bytes", "FieldValueTooLong")


_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", bool: "a boolean"}


def type_invalid(path: str, value: Any, expected: type) -> Cause:
    return Cause(path, f"Invalid value: {go_value(value)}: must be {_TYPE_NAMES[expected]}", "FieldValueTypeInvalid")


def is_type(v: Any, t: type) -> bool:
    """JSON-aware isinstance: booleans are not integers."""
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, t)


def get(parent: Any, key: str, path: str, t: type, causes: list[Cause]) -> Any:
    """parent[key] if present with type t; a type cause (and None) when it has another type."""
    if not isinstance(parent, dict):
        return None
    v = parent.get(key)
    if v is None:
        return None
    if not is_type(v, t):
        causes.append(type_invalid(path, v, t))
        return None
    return v


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ----------------------------------------------------------------- string formats


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(f"^{_LABEL_KEY_FMT}$")
_LABEL_VALUE = re.compile(f"^({_LABEL_KEY_FMT})?$")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY = re.compile(f"^{_CONFIG_KEY_FMT}$")
_PERCENT = re.compile(r"^[0-9]+%$")


def is_dns1123_label(v: str) -> list[str]:
    """RFC 1123 label: namespaces, container and port-less names (max 63)."""
    errs = []
    if len(v) > 63:
        errs.append(_max_len(63))
    if not _DNS1123_LABEL.match(v):
        if _DNS1123_SUBDOMAIN.match(v):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character", _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(v: str) -> list[str]:
    """RFC 1123 subdomain: most object names (max 253)."""
    errs = []
    if len(v) > 253:
        errs.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN.match(v):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character", _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(v: str) -> list[str]:
    """A label or annotation key: optional DNS-subdomain prefix and '/', then a name (max 63)."""
    name_msg = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
    parts = v.split("/")
    if len(parts) > 2:
        return ["a valid label key " + _regex_error(name_msg, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _LABEL_KEY.match(name):
        errs.append("name part " + _regex_error(name_msg, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(_max_len(63))
    if not _LABEL_VALUE.match(v):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character", f"({_LABEL_KEY_FMT})?", "MyValue", "my_value", "12345"))
    return errs


def is_port_name(v: str) -> list[str]:
    """IANA_SVC_NAME: the names of container and service ports (max 15, one letter at least)."""
    errs = []
    if len(v) > 15:
        errs.append(_max_len(15))
    if not re.match(r"^[-a-z0-9]+$", v):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", v):
        errs.append("must contain at least one letter (a-z)")
    if "--" in v:
        errs.append("must not contain consecutive hyphens")
    if v.startswith("-") or v.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_env_var_name(v: str) -> list[str]:
    """Kubernetes' relaxed rule (the default since 1.32): printable ASCII, no '='."""
    if not v:
        return ["environment variable name must be non-empty"]
    if any(not (32 <= ord(ch) < 127) or ch == "=" for ch in v):
        return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]
    return []


def is_config_key(v: str) -> list[str]:
    """Keys of ConfigMap/Secret data: they become file names, so no '..' tricks."""
    errs = []
    if len(v) > 253:
        errs.append(_max_len(253))
    if not _CONFIG_KEY.match(v):
        errs.append(_regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                 _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if v == ".":
        errs.append("must not be '.'")
    elif v == "..":
        errs.append("must not be '..'")
    elif v.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_port_number(v: int) -> list[str]:
    return [] if 1 <= v <= 65535 else ["must be between 1 and 65535, inclusive"]


def is_percent(v: str) -> bool:
    return bool(_PERCENT.match(v))


# ----------------------------------------------------------------- simple field rules


def check_name(value: Any, path: str, check, causes: list[Cause]) -> None:
    """Required string that must pass `check` (is_dns1123_label, is_port_name, …)."""
    if value is None or value == "":
        causes.append(required(path))
    elif not isinstance(value, str):
        causes.append(type_invalid(path, value, str))
    else:
        causes += [invalid_value(path, value, m) for m in check(value)]


def check_enum(value: Any, path: str, allowed: list[str], causes: list[Cause], *, optional: bool = False) -> None:
    if value is None or value == "":
        if not optional:
            causes.append(required(path))
    elif value not in allowed:
        causes.append(unsupported(path, value, sorted(allowed)))


MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


def fits(v: int, path: str, causes: list[Cause], *, int64: bool = False) -> bool:
    """Whether v fits the int32 (or int64) field at path; a cause when it does not."""
    top = MAX_INT64 if int64 else MAX_INT32
    if -top - 1 <= v <= top:
        return True
    causes.append(invalid_value(path, v, f"must fit in a {64 if int64 else 32}-bit integer (at most {top})"))
    return False


def check_int(parent: Any, key: str, path: str, causes: list[Cause], *, minimum: int | None = None,
              maximum: int | None = None, int64: bool = False) -> int | None:
    """An optional integer field within bounds; returns it when present and well-typed.

    Kubernetes' fields are int32 unless ``int64``: a larger number never reaches its
    validation (the decoder refuses it), so it must not reach a controller here either.
    """
    v = get(parent, key, path, int, causes)
    if v is None or not fits(v, path, causes, int64=int64):
        return None
    if minimum is not None and maximum is not None and not minimum <= v <= maximum:
        causes.append(invalid_value(path, v, f"must be between {minimum} and {maximum}, inclusive"))
    elif minimum == 0 and v < 0:
        causes.append(invalid_value(path, v, "must be greater than or equal to 0"))
    elif minimum is not None and v < minimum:
        causes.append(invalid_value(path, v, f"must be greater than {minimum - 1}"))
    return v


def check_string_list(parent: Any, key: str, path: str, causes: list[Cause]) -> None:
    for i, item in enumerate(get(parent, key, path, list, causes) or []):
        if not isinstance(item, str):
            causes.append(type_invalid(f"{path}[{i}]", item, str))


# ----------------------------------------------------------------- metadata

MAX_ANNOTATIONS_BYTES = 256 * 1024


def validate_labels(labels: Any, path: str) -> list[Cause]:
    """Label maps (metadata.labels, nodeSelector, matchLabels): qualified keys, short values."""
    causes: list[Cause] = []
    if labels is None:
        return causes
    if not isinstance(labels, dict):
        return [type_invalid(path, labels, dict)]
    for k, v in labels.items():
        causes += [invalid_value(path, k, m) for m in is_qualified_name(k)]
        if not isinstance(v, str):
            causes.append(type_invalid(path, v, str))
        else:
            causes += [invalid_value(path, v, m) for m in is_label_value(v)]
    return causes


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    """Qualified keys (case-insensitive) and 256 KiB in all, since they ride on every read."""
    causes: list[Cause] = []
    if annotations is None:
        return causes
    if not isinstance(annotations, dict):
        return [type_invalid(path, annotations, dict)]
    total = 0
    for k, v in annotations.items():
        causes += [invalid_value(path, k, m) for m in is_qualified_name(k.lower())]
        if not isinstance(v, str):
            causes.append(type_invalid(f"{path}[{k}]", v, str))
            continue
        total += len(k.encode()) + len(v.encode())
    if total > MAX_ANNOTATIONS_BYTES:
        causes.append(too_long(path, MAX_ANNOTATIONS_BYTES))
    return causes


def validate_object_meta(meta: Any, path: str = "metadata") -> list[Cause]:
    """Label and annotation formats: the API server checks an object's metadata only for types."""
    if not isinstance(meta, dict):
        return []  # the API server reports a missing or malformed metadata itself
    return validate_labels(meta.get("labels"), f"{path}.labels") + \
        validate_annotations(meta.get("annotations"), f"{path}.annotations")


def _format_causes(causes: list[Cause]) -> list[Cause]:
    """Causes about values, leaving out wrong types (the API server reports those for metadata)."""
    return [c for c in causes if c.reason != "FieldValueTypeInvalid"]


class KindStrategy(Strategy):
    """A Strategy whose validate() checks labels and annotations, then the kind's own rules."""

    def validate(self, obj: Obj) -> list[Cause]:
        return self.validate_labels(obj) + self.validate_object(obj)

    def validate_labels(self, obj: Obj) -> list[Cause]:
        return _format_causes(validate_object_meta(obj.get("metadata")))

    def validate_object(self, obj: Obj) -> list[Cause]:
        return []


class NoStatus(KindStrategy):
    """Kinds without a status subresource or generation (Event, ConfigMap, Secret)."""

    has_status = False
    has_spec = False


def name_of(obj: Obj) -> str:
    meta = obj.get("metadata")
    return meta.get("name", "") if isinstance(meta, dict) else ""


# ----------------------------------------------------------------- label selectors

SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"]


def validate_label_selector(sel: Any, path: str) -> list[Cause]:
    """A metav1.LabelSelector: valid matchLabels, and expressions whose values fit the operator."""
    causes: list[Cause] = []
    if not isinstance(sel, dict):
        return [type_invalid(path, sel, dict)] if sel is not None else causes
    causes += validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    exprs = get(sel, "matchExpressions", f"{path}.matchExpressions", list, causes) or []
    for i, e in enumerate(exprs):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            causes.append(type_invalid(p, e, dict))
            continue
        check_name(e.get("key"), f"{p}.key", is_qualified_name, causes)
        op = e.get("operator")
        check_enum(op, f"{p}.operator", SELECTOR_OPERATORS, causes)
        values = get(e, "values", f"{p}.values", list, causes) or []
        if op in ("In", "NotIn") and not values:
            causes.append(required_because(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        if op in ("Exists", "DoesNotExist") and values:
            causes.append(forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        for j, v in enumerate(values):
            if not isinstance(v, str):
                causes.append(type_invalid(f"{p}.values[{j}]", v, str))
            else:
                causes += [invalid_value(f"{p}.values[{j}]", v, m) for m in is_label_value(v)]
    return causes


def selector_is_empty(sel: Any) -> bool:
    return not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions"))


def normalized_selector(sel: Any) -> dict:
    """A selector with empty parts dropped, for comparing old and new (immutability)."""
    if not isinstance(sel, dict):
        return {}
    return {k: sel[k] for k in ("matchLabels", "matchExpressions") if sel.get(k)}


def go_selector(sel: Any) -> str:
    """A LabelSelector printed the way Kubernetes prints it in 'field is immutable' messages."""
    sel = sel if isinstance(sel, dict) else {}
    labels = sel.get("matchLabels")
    ml = go_value(labels) if isinstance(labels, dict) and labels else "map[string]string(nil)"
    exprs = sel.get("matchExpressions")
    if isinstance(exprs, list) and exprs:
        items = ", ".join(
            f'v1.LabelSelectorRequirement{{Key:{go_value(e.get("key", ""))}, Operator:{go_value(e.get("operator", ""))}, '
            f'Values:{go_value(e.get("values") or [])}}}' for e in exprs if isinstance(e, dict))
        me = "[]v1.LabelSelectorRequirement{" + items + "}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}"


# ----------------------------------------------------------------- int-or-percent


def int_or_percent_value(v: Any) -> int:
    """The number in 5 or "5%" (0 when malformed; validation reports that separately)."""
    if is_type(v, int):
        return v
    if isinstance(v, str) and is_percent(v):
        return int(v[:-1])
    return 0


def validate_int_or_percent(v: Any, path: str) -> list[Cause]:
    """A non-negative integer or a string like "25%" (maxSurge, maxUnavailable)."""
    if v is None:
        return []
    if is_type(v, int):
        causes: list[Cause] = []
        if fits(v, path, causes) and v < 0:
            causes.append(invalid_value(path, v, "must be greater than or equal to 0"))
        return causes
    if isinstance(v, str):
        if is_percent(v):
            return []
        return [invalid_value(path, v, _regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'", "[0-9]+%", "1%", "93%"))]
    return [invalid_value(path, v, "must be an integer or percentage (e.g '5%')")]


# ----------------------------------------------------------------- shared enums

PROTOCOLS = ["TCP", "UDP", "SCTP"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def nonnegative_quantity(q: Any, path: str, causes: list[Cause]) -> Any:
    """The exact value of a quantity that must parse and be >= 0 (a Fraction), else None with a cause."""
    try:
        value = parse_quantity(q)
    except QuantityError as e:
        causes.append(invalid_value(path, q, e.reason))
        return None
    if value < 0:
        causes.append(invalid_value(path, q, "must be greater than or equal to 0"))
        return None
    return value
