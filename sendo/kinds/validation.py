"""Field checks shared by every kind, worded as Kubernetes words them.

Names, label keys and values, annotations, label selectors, and the whole pod spec
(Pod, and the templates of Deployments and ReplicaSets use the same function with a
different path prefix, so "spec.template.spec.containers[0].image" comes for free).

Every check returns a list of `Cause`s and never raises: objects arrive as parsed JSON
and may hold any type anywhere, and a bad one must become a 422, never a 500.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .base import Cause, Obj, Strategy, duplicate, forbidden, required, unsupported
from .quantity import QuantityError, parse_quantity

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


def check_int(parent: Any, key: str, path: str, causes: list[Cause], *, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    """An optional integer field within bounds; returns it when present and well-typed."""
    v = get(parent, key, path, int, causes)
    if v is None:
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
        return _format_causes(validate_object_meta(obj.get("metadata"))) + self.validate_object(obj)

    def validate_object(self, obj: Obj) -> list[Cause]:
        return []


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


def selector_matches(sel: Any, labels: Any) -> bool:
    """Whether a LabelSelector selects an object with these labels (empty selects all)."""
    labels = labels if isinstance(labels, dict) else {}
    if not isinstance(sel, dict):
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


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
        return [invalid_value(path, v, "must be greater than or equal to 0")] if v < 0 else []
    if isinstance(v, str):
        if is_percent(v):
            return []
        return [invalid_value(path, v, _regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'", "[0-9]+%", "1%", "93%"))]
    return [invalid_value(path, v, "must be an integer or percentage (e.g '5%')")]


# ----------------------------------------------------------------- pod spec

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["TCP", "UDP", "SCTP"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
TOLERATION_OPERATORS = ["Exists", "Equal"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"]
ENV_RESOURCE_FIELDS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory",
                       "requests.cpu", "requests.ephemeral-storage", "requests.memory"]
PROBE_HANDLERS = ["exec", "httpGet", "tcpSocket", "grpc"]
MAX_INT32 = 2**31 - 1


def validate_pod_template(template: Any, path: str) -> list[Cause]:
    """A PodTemplateSpec (Deployment, ReplicaSet): its labels and annotations, then its spec."""
    if template is None:
        return [required(path)]
    if not isinstance(template, dict):
        return [type_invalid(path, template, dict)]
    causes = validate_object_meta(template.get("metadata"), f"{path}.metadata")
    spec = template.get("spec")
    if not isinstance(spec, dict):
        causes.append(required(f"{path}.spec.containers") if spec is None else type_invalid(f"{path}.spec", spec, dict))
        return causes
    return causes + validate_pod_spec(spec, f"{path}.spec")


def validate_pod_spec(spec: dict, path: str) -> list[Cause]:
    """Everything inside a PodSpec; `path` is "spec" for a Pod, "spec.template.spec" for templates."""
    causes: list[Cause] = []
    volumes = validate_volumes(spec, path, causes)
    containers = spec.get("containers")
    if containers is None or containers == []:
        causes.append(required(f"{path}.containers"))
    elif not isinstance(containers, list):
        causes.append(type_invalid(f"{path}.containers", containers, list))
        containers = []
    seen: set[str] = set()
    for i, c in enumerate(get(spec, "initContainers", f"{path}.initContainers", list, causes) or []):
        causes += validate_container(c, f"{path}.initContainers[{i}]", volumes, seen, init=True)
    for i, c in enumerate(containers or []):
        causes += validate_container(c, f"{path}.containers[{i}]", volumes, seen, init=False)
    check_enum(spec.get("restartPolicy"), f"{path}.restartPolicy", RESTART_POLICIES, causes)
    check_enum(spec.get("dnsPolicy"), f"{path}.dnsPolicy", DNS_POLICIES, causes)
    if spec.get("dnsPolicy") == "None" and not isinstance(spec.get("dnsConfig"), dict):
        causes.append(required_because(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    check_int(spec, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds", causes, minimum=0)
    check_int(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds", causes, minimum=1, maximum=MAX_INT32)
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key, check in (("nodeName", is_dns1123_subdomain), ("serviceAccountName", is_dns1123_subdomain),
                       ("hostname", is_dns1123_label), ("subdomain", is_dns1123_label)):
        v = get(spec, key, f"{path}.{key}", str, causes)
        if v:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in check(v)]
    causes += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    return causes


def validate_volumes(spec: dict, path: str, causes: list[Cause]) -> set[str]:
    """Unique DNS-label names and exactly one source each; returns the names for volumeMounts."""
    names: set[str] = set()
    for i, vol in enumerate(get(spec, "volumes", f"{path}.volumes", list, causes) or []):
        p = f"{path}.volumes[{i}]"
        if not isinstance(vol, dict):
            causes.append(type_invalid(p, vol, dict))
            continue
        name = vol.get("name")
        check_name(name, f"{p}.name", is_dns1123_label, causes)
        if isinstance(name, str) and name:
            if name in names:
                causes.append(duplicate(f"{p}.name", name))
            names.add(name)
        sources = [k for k, v in vol.items() if k != "name" and v is not None]
        if not sources:
            causes.append(required_because(p, "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(forbidden(f"{p}.{extra}", "may not specify more than 1 volume type"))
    return names


def validate_container(c: Any, path: str, volumes: set[str], seen: set[str], *, init: bool) -> list[Cause]:
    """One container; `seen` carries names across containers and initContainers (must be unique)."""
    if not isinstance(c, dict):
        return [type_invalid(path, c, dict)]
    causes: list[Cause] = []
    name = c.get("name")
    check_name(name, f"{path}.name", is_dns1123_label, causes)
    if isinstance(name, str) and name:
        if name in seen:
            causes.append(duplicate(f"{path}.name", name))
        seen.add(name)
    image = c.get("image")
    if image is None or image == "":
        causes.append(required(f"{path}.image"))
    elif not isinstance(image, str):
        causes.append(type_invalid(f"{path}.image", image, str))
    elif image != image.strip():
        causes.append(invalid_value(f"{path}.image", image, "must not have leading or trailing whitespace"))
    check_enum(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", PULL_POLICIES, causes)
    check_enum(c.get("terminationMessagePolicy"), f"{path}.terminationMessagePolicy",
               TERMINATION_MESSAGE_POLICIES, causes)
    for key in ("command", "args"):
        check_string_list(c, key, f"{path}.{key}", causes)
    get(c, "workingDir", f"{path}.workingDir", str, causes)
    causes += validate_container_ports(c.get("ports"), f"{path}.ports")
    causes += validate_env(c.get("env"), f"{path}.env")
    causes += validate_env_from(c.get("envFrom"), f"{path}.envFrom")
    causes += validate_resources(c.get("resources"), f"{path}.resources")
    causes += validate_volume_mounts(c.get("volumeMounts"), f"{path}.volumeMounts", volumes)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        causes += validate_probe(c.get(probe), f"{path}.{probe}", single_success=probe != "readinessProbe")
    restart = c.get("restartPolicy")
    if restart is not None:
        if init:
            check_enum(restart, f"{path}.restartPolicy", ["Always"], causes)
        else:
            causes.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
    return causes


def validate_container_ports(ports: Any, path: str) -> list[Cause]:
    """containerPort 1-65535, protocol TCP/UDP/SCTP, optional unique IANA service names."""
    causes: list[Cause] = []
    if ports is None:
        return causes
    if not isinstance(ports, list):
        return [type_invalid(path, ports, list)]
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        if not isinstance(port, dict):
            causes.append(type_invalid(p, port, dict))
            continue
        name = get(port, "name", f"{p}.name", str, causes)
        if name:
            causes += [invalid_value(f"{p}.name", name, m) for m in is_port_name(name)]
            if name in names:
                causes.append(duplicate(f"{p}.name", name))
            names.add(name)
        cp = port.get("containerPort")
        if cp is None or cp == 0:
            causes.append(required(f"{p}.containerPort"))
        elif not is_type(cp, int):
            causes.append(type_invalid(f"{p}.containerPort", cp, int))
        else:
            causes += [invalid_value(f"{p}.containerPort", cp, m) for m in is_port_number(cp)]
        hp = get(port, "hostPort", f"{p}.hostPort", int, causes)
        if hp:
            causes += [invalid_value(f"{p}.hostPort", hp, m) for m in is_port_number(hp)]
        check_enum(port.get("protocol"), f"{p}.protocol", PROTOCOLS, causes)
    return causes


def validate_env(env: Any, path: str) -> list[Cause]:
    """Named variables with a literal value or exactly one valueFrom source."""
    causes: list[Cause] = []
    if env is None:
        return causes
    if not isinstance(env, list):
        return [type_invalid(path, env, list)]
    for i, ev in enumerate(env):
        p = f"{path}[{i}]"
        if not isinstance(ev, dict):
            causes.append(type_invalid(p, ev, dict))
            continue
        check_name(ev.get("name"), f"{p}.name", is_env_var_name, causes)
        get(ev, "value", f"{p}.value", str, causes)
        causes += validate_env_value_from(ev, f"{p}.valueFrom")
    return causes


def validate_env_value_from(ev: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    vf = get(ev, "valueFrom", path, dict, causes)
    if vf is None:
        return causes
    sources = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if vf.get(k) is not None]
    if not sources:
        causes.append(invalid_value(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                              "`configMapKeyRef` or `secretKeyRef`"))
    elif ev.get("value"):
        causes.append(invalid_value(path, "", "may not be specified when `value` is not empty"))
    elif len(sources) > 1:
        causes.append(invalid_value(path, "", "may not have more than one field specified at a time"))
    for src in sources:
        ref = get(vf, src, f"{path}.{src}", dict, causes)
        if ref is None:
            continue
        p = f"{path}.{src}"
        if src == "fieldRef":
            fp = ref.get("fieldPath")
            if not fp:
                causes.append(required(f"{p}.fieldPath"))
            elif not (fp in ENV_FIELD_PATHS or re.match(r"^metadata\.(labels|annotations)\['[^']+'\]$", str(fp))):
                causes.append(unsupported(f"{p}.fieldPath", fp, ENV_FIELD_PATHS))
        elif src == "resourceFieldRef":
            check_enum(ref.get("resource"), f"{p}.resource", ENV_RESOURCE_FIELDS, causes)
        else:
            check_name(ref.get("name"), f"{p}.name", is_dns1123_subdomain, causes)
            check_name(ref.get("key"), f"{p}.key", is_config_key, causes)
    return causes


def validate_env_from(env_from: Any, path: str) -> list[Cause]:
    if env_from is None:
        return []
    if not isinstance(env_from, list):
        return [type_invalid(path, env_from, list)]
    causes: list[Cause] = []
    for i, src in enumerate(env_from):
        p = f"{path}[{i}]"
        if not isinstance(src, dict):
            causes.append(type_invalid(p, src, dict))
            continue
        refs = [k for k in ("configMapRef", "secretRef") if src.get(k) is not None]
        if not refs:
            causes.append(invalid_value(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            causes.append(invalid_value(path, "", "may not have more than one field specified at a time"))
        for r in refs:
            ref = get(src, r, f"{p}.{r}", dict, causes)
            if ref is not None:
                check_name(ref.get("name"), f"{p}.{r}.name", is_dns1123_subdomain, causes)
    return causes


def _overcommit_allowed(resource: str) -> bool:
    """Native resources may request less than their limit; extended ones and hugepages may not."""
    native = "/" not in resource or "kubernetes.io/" in resource
    return native and not resource.startswith("hugepages-")


def validate_resource_name(name: str, path: str) -> list[Cause]:
    if "/" not in name:
        if name in STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-"):
            return []
        return [invalid_value(path, name, "must be a standard resource for containers")]
    return [invalid_value(path, name, m) for m in is_qualified_name(name)]


def validate_resources(res: Any, path: str) -> list[Cause]:
    """Parseable, non-negative quantities, and every request at most its limit."""
    causes: list[Cause] = []
    if res is None:
        return causes
    if not isinstance(res, dict):
        return [type_invalid(path, res, dict)]
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("limits", "requests"):
        parsed[section] = {}
        for name, q in (get(res, section, f"{path}.{section}", dict, causes) or {}).items():
            p = f"{path}.{section}[{name}]"
            causes += validate_resource_name(name, p)
            try:
                value = parse_quantity(q)
            except QuantityError as e:
                causes.append(invalid_value(p, q, e.reason))
                continue
            if value < 0:
                causes.append(invalid_value(p, q, "must be greater than or equal to 0"))
            parsed[section][name] = (q, value)
    for name, (q, value) in parsed["requests"].items():
        if name not in parsed["limits"]:
            continue
        lim_text, lim = parsed["limits"][name]
        if value != lim and not _overcommit_allowed(name):
            causes.append(invalid_value(f"{path}.requests", str(q), f"must be equal to {name} limit of {lim_text}"))
        elif value > lim:
            causes.append(invalid_value(f"{path}.requests", str(q),
                                        f"must be less than or equal to {name} limit of {lim_text}"))
    return causes


def validate_volume_mounts(mounts: Any, path: str, volumes: set[str]) -> list[Cause]:
    """Each mount names a volume of the pod and a mountPath not used twice."""
    causes: list[Cause] = []
    if mounts is None:
        return causes
    if not isinstance(mounts, list):
        return [type_invalid(path, mounts, list)]
    paths: set[str] = set()
    for i, m in enumerate(mounts):
        p = f"{path}[{i}]"
        if not isinstance(m, dict):
            causes.append(type_invalid(p, m, dict))
            continue
        name = m.get("name")
        if not name:
            causes.append(required(f"{p}.name"))
        elif name not in volumes:
            causes.append(not_found(f"{p}.name", name))
        mp = m.get("mountPath")
        if not mp:
            causes.append(required(f"{p}.mountPath"))
        elif not isinstance(mp, str):
            causes.append(type_invalid(f"{p}.mountPath", mp, str))
        else:
            if mp in paths:
                causes.append(invalid_value(f"{p}.mountPath", mp, "must be unique"))
            paths.add(mp)
    return causes


def validate_probe(probe: Any, path: str, *, single_success: bool) -> list[Cause]:
    """Exactly one handler, non-negative timings; liveness and startup need successThreshold 1."""
    causes: list[Cause] = []
    if probe is None:
        return causes
    if not isinstance(probe, dict):
        return [type_invalid(path, probe, dict)]
    handlers = [h for h in PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        causes.append(required_because(path, "must specify a handler type"))
    for extra in handlers[1:]:
        causes.append(forbidden(f"{path}.{extra}", "may not specify more than 1 handler type"))
    for h in ("httpGet", "tcpSocket"):
        action = get(probe, h, f"{path}.{h}", dict, causes)
        if action is not None:
            causes += validate_port_ref(action.get("port"), f"{path}.{h}.port")
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        check_int(probe, key, f"{path}.{key}", causes, minimum=0)
    st = probe.get("successThreshold")
    if single_success and is_type(st, int) and st != 1:
        causes.append(invalid_value(f"{path}.successThreshold", st, "must be 1"))
    if not single_success and probe.get("terminationGracePeriodSeconds") is not None:
        causes.append(invalid_value(f"{path}.terminationGracePeriodSeconds",
                                    probe["terminationGracePeriodSeconds"], "must not be set for readinessProbes"))
    return causes


def validate_port_ref(port: Any, path: str) -> list[Cause]:
    """A port given as a number (1-65535) or by the name of a container port."""
    if port is None or port == "" or port == 0:
        return [required(path)]
    if is_type(port, int):
        return [invalid_value(path, port, m) for m in is_port_number(port)]
    if isinstance(port, str):
        return [invalid_value(path, port, m) for m in is_port_name(port)]
    return [type_invalid(path, port, int)]


def validate_tolerations(tolerations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if tolerations is None:
        return causes
    if not isinstance(tolerations, list):
        return [type_invalid(path, tolerations, list)]
    for i, t in enumerate(tolerations):
        p = f"{path}[{i}]"
        if not isinstance(t, dict):
            causes.append(type_invalid(p, t, dict))
            continue
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if key:
            check_name(key, f"{p}.key", is_qualified_name, causes)
        check_enum(op, f"{p}.operator", TOLERATION_OPERATORS, causes)
        if not key and op != "Exists":
            causes.append(invalid_value(f"{p}.operator", op, 'operator must be Exists when `key` is empty, '
                                                             'which means "match all values and all keys"'))
        if op == "Exists" and t.get("value"):
            causes.append(invalid_value(f"{p}.operator", t.get("value"),
                                        "value must be empty when `operator` is 'Exists'"))
        check_enum(t.get("effect"), f"{p}.effect", TAINT_EFFECTS, causes, optional=True)
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            causes.append(invalid_value(f"{p}.effect", t.get("effect"),
                                        "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return causes
