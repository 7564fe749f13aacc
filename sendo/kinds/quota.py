"""ResourceQuota and LimitRange (v1): what a namespace may hold, and per-container bounds.

This module is the judgement both the API server (admission) and the resourcequota
controller use, with no I/O:

* ``object_usage``: what one object counts against a quota (``pods``, ``requests.cpu``,
  ``count/deployments.apps``, ``services.nodeports``, ``requests.storage``, …);
* ``exceeded`` and ``missing_compute``: Kubernetes' refusals, word for word;
* ``apply_limit_defaults`` and ``limit_violations``: LimitRange defaults for container
  requests and limits, and the min/max/ratio bounds of Container, Pod and
  PersistentVolumeClaim items.

Quantities are exact (``quantity.parse_quantity``); sums are formatted back in the
canonical form Kubernetes prints (``1``, ``500m``, ``128Mi``, ``1k``).
"""
from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from typing import Any, Iterable

from .base import Cause, Column, forbidden, Obj, Printer, required, unsupported
from .printing import age_column, as_dict, dicts, name_column, name_of, object_age, parse_timestamp
from .quantity import parse_quantity, QuantityError
from .validation import (get, invalid_value, is_qualified_name, KindStrategy, NoStatus, nonnegative_quantity,
                         type_invalid)

Usage = dict[str, Fraction]

# ======================================================================= quantities

_DECIMAL_UP = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_BINARY_UP = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def is_binary(q: Any) -> bool:
    """Whether a quantity was written with a binary suffix (Ki…Ei): sums keep that form."""
    return isinstance(q, str) and q.endswith("i")


def format_quantity(value: Fraction | int, binary: bool = False) -> str:
    """The canonical form Kubernetes prints: the largest exact suffix of the same family,
    fractions as milli (rounded up), e.g. 2 -> "2", 1/2 -> "500m", 2**27 (binary) -> "128Mi"."""
    value = Fraction(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value.denominator != 1:
        for suffix, scale in (("m", 10**3), ("u", 10**6), ("n", 10**9)):
            if (value * scale).denominator == 1:
                return f"{sign}{value * scale}{suffix}"
        return f"{sign}{math.ceil(value * 10**9)}n"
    n = int(value)
    if n == 0:
        return "0"
    for suffix, unit in (_BINARY_UP if binary else ()) + _DECIMAL_UP:
        if n % unit == 0:
            return f"{sign}{n // unit}{suffix}"
    return f"{sign}{n}"


def canonical(q: Any) -> str:
    """A quantity as Kubernetes prints it back ("1000m" -> "1", "0.5" -> "500m")."""
    try:
        return format_quantity(parse_quantity(q), is_binary(q))
    except QuantityError:
        return str(q)


def quantities(d: Any) -> Usage:
    """The parseable quantities of a resource list (validation reports the others)."""
    out: Usage = {}
    for k, v in as_dict(d).items():
        try:
            out[k] = parse_quantity(v)
        except QuantityError:
            pass
    return out


def pretty(usage: dict[str, str]) -> str:
    return ",".join(f"{k}={usage[k]}" for k in sorted(usage))


# ======================================================================= usage of objects

COMPUTE = ("cpu", "memory")
# quotas on these make every container name them (a pre-QoS rule Kubernetes keeps)
COMPUTE_QUOTA_NAMES = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
OBJECT_COUNTS = {"pods": ("", "pods"), "services": ("", "services"), "configmaps": ("", "configmaps"),
                 "secrets": ("", "secrets"), "persistentvolumeclaims": ("", "persistentvolumeclaims"),
                 "replicationcontrollers": ("", "replicationcontrollers"),
                 "resourcequotas": ("", "resourcequotas"), "services.nodeports": ("", "services"),
                 "services.loadbalancers": ("", "services")}
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
TERMINAL = ("Succeeded", "Failed")


def count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def tracked_kind(resource: str) -> tuple[str, str] | None:
    """(group, plural) of the objects a quota's resource name counts."""
    if resource in OBJECT_COUNTS:
        return OBJECT_COUNTS[resource]
    if resource.startswith("count/"):
        plural, _, group = resource[len("count/"):].partition(".")
        return group, plural
    if resource == "requests.storage" or STORAGE_CLASS_SUFFIX in resource:
        return "", "persistentvolumeclaims"
    if resource.startswith(("requests.", "limits.")) or resource in ("cpu", "memory", "ephemeral-storage"):
        return "", "pods"
    return None


def pod_requests_limits(spec: Any) -> tuple[Usage, Usage]:
    """A pod's effective requests and limits: the sum over its containers, at least the largest
    init container's, plus the pod overhead (as the scheduler and quota count them)."""
    spec = as_dict(spec)
    total: list[Usage] = [{}, {}]
    for c in dicts(spec.get("containers")):
        res = as_dict(c.get("resources"))
        for i, section in enumerate(("requests", "limits")):
            for k, v in quantities(res.get(section)).items():
                total[i][k] = total[i].get(k, 0) + v
    for c in dicts(spec.get("initContainers")):
        res = as_dict(c.get("resources"))
        for i, section in enumerate(("requests", "limits")):
            for k, v in quantities(res.get(section)).items():
                total[i][k] = max(total[i].get(k, Fraction(0)), v)
    for k, v in quantities(spec.get("overhead")).items():
        for part in total:
            if k in part:
                part[k] += v
    return total[0], total[1]


def pod_is_terminal(pod: Obj) -> bool:
    return as_dict(pod.get("status")).get("phase") in TERMINAL


def object_usage(group: str, plural: str, obj: Obj) -> Usage:
    """What one object counts against any quota (keys not in a quota's hard are ignored)."""
    one = Fraction(1)
    if plural == "pods" and not group:
        if pod_is_terminal(obj):
            return {}
        requests, limits = pod_requests_limits(obj.get("spec"))
        usage: Usage = {"pods": one, count_name(group, plural): one}
        for k, v in requests.items():
            usage[f"requests.{k}"] = v
            if k in (*COMPUTE, "ephemeral-storage"):
                usage[k] = v
        for k, v in limits.items():
            usage[f"limits.{k}"] = v
        return usage
    usage = {count_name(group, plural): one}
    if group:
        return usage
    if plural in ("services", "configmaps", "secrets", "replicationcontrollers", "resourcequotas",
                  "persistentvolumeclaims"):
        usage[plural] = one
    spec = as_dict(obj.get("spec"))
    if plural == "services":
        stype = spec.get("type")
        if stype == "LoadBalancer":
            usage["services.loadbalancers"] = one
        if stype in ("NodePort", "LoadBalancer"):
            usage["services.nodeports"] = Fraction(len(dicts(spec.get("ports"))))
    elif plural == "persistentvolumeclaims":
        storage = quantities(as_dict(spec.get("resources")).get("requests")).get("storage", Fraction(0))
        usage["requests.storage"] = storage
        cls = spec.get("storageClassName")
        if isinstance(cls, str) and cls:
            usage[f"{cls}{STORAGE_CLASS_SUFFIX}requests.storage"] = storage
            usage[f"{cls}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = one
    return usage


# ----------------------------------------------------------------- scopes (pods only)

SCOPES = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
          "Terminating", "VolumeAttributesClass"]
SCOPE_OPERATORS = ["DoesNotExist", "Exists", "In", "NotIn"]


def _scope_holds(scope: str, pod: Obj, operator: str = "Exists", values: Iterable[str] = ()) -> bool:
    spec = as_dict(pod.get("spec"))
    requests, limits = pod_requests_limits(spec)
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "BestEffort":
        return not requests and not limits
    if scope == "NotBestEffort":
        return bool(requests or limits)
    if scope == "PriorityClass":
        cls = spec.get("priorityClassName") or ""
        values = list(values)
        return {"Exists": bool(cls), "DoesNotExist": not cls, "In": cls in values,
                "NotIn": cls not in values}.get(operator, False)
    return False  # scopes about objects sendo does not count this way


def quota_applies(quota: Obj, group: str, plural: str, obj: Obj) -> bool:
    """Whether a quota's scopes select this object (scoped quotas count pods only)."""
    spec = as_dict(quota.get("spec"))
    scopes = [s for s in spec.get("scopes") or [] if isinstance(s, str)]
    exprs = dicts(as_dict(spec.get("scopeSelector")).get("matchExpressions"))
    if not scopes and not exprs:
        return True
    if group or plural != "pods":
        return False
    return (all(_scope_holds(s, obj) for s in scopes)
            and all(_scope_holds(str(e.get("scopeName")), obj, str(e.get("operator")), e.get("values") or [])
                    for e in exprs))


# ----------------------------------------------------------------- the quota's arithmetic

def hard_of(quota: Obj) -> dict[str, Any]:
    """The limits in force: spec.hard (status.hard mirrors it once the controller has seen it)."""
    return as_dict(as_dict(quota.get("spec")).get("hard"))


def used_of(quota: Obj) -> Usage:
    return quantities(as_dict(quota.get("status")).get("used"))


def requested_of(quota: Obj, usage: Usage) -> Usage:
    """The part of an object's usage this quota limits."""
    hard = hard_of(quota)
    return {k: v for k, v in usage.items() if k in hard}


def exceeded(quota: Obj, requested: Usage, used: Usage) -> str | None:
    """Kubernetes' refusal when used + requested passes hard, else None."""
    hard = hard_of(quota)
    hard_q = quantities(hard)
    over = sorted(k for k, v in requested.items() if k in hard_q and used.get(k, 0) + v > hard_q[k])
    if not over:
        return None
    binary = {k: is_binary(hard.get(k)) for k in over}
    return (f"exceeded quota: {name_of(quota)}, "
            f"requested: {pretty({k: format_quantity(requested[k], binary[k]) for k in over})}, "
            f"used: {pretty({k: format_quantity(used.get(k, 0), binary[k]) for k in over})}, "
            f"limited: {pretty({k: canonical(hard[k]) for k in over})}")


def missing_compute(quota: Obj, pod: Obj) -> str | None:
    """A compute quota needs every container to name what it limits: 'must specify limits.cpu for: app'."""
    wanted = COMPUTE_QUOTA_NAMES & set(hard_of(quota))
    if not wanted:
        return None
    spec = as_dict(pod.get("spec"))
    missing: dict[str, list[str]] = {}
    for c in dicts(spec.get("initContainers")) + dicts(spec.get("containers")):
        res = as_dict(c.get("resources"))
        has = {f"requests.{k}" for k in as_dict(res.get("requests"))} | {f"limits.{k}" for k in as_dict(res.get("limits"))}
        has |= {k for k in COMPUTE if f"requests.{k}" in has}
        for name in sorted(wanted - has):
            missing.setdefault(name, []).append(str(c.get("name") or ""))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{k} for: {','.join(sorted(v))}" for k, v in sorted(missing.items()))


def add_usage(quota: Obj, used: Usage, delta: Usage) -> dict[str, str]:
    """status.used after adding ``delta`` (negative to give back), for every resource in hard."""
    hard = hard_of(quota)
    out = {}
    for k in hard:
        out[k] = format_quantity(max(used.get(k, Fraction(0)) + delta.get(k, Fraction(0)), Fraction(0)),
                                 is_binary(hard[k]))
    return out


def total_usage(quota: Obj, objects: dict[tuple[str, str], list[Obj]], counts: dict[tuple[str, str], int]) -> Usage:
    """What a namespace uses of each of the quota's resources: ``objects`` (decoded, for kinds whose
    usage depends on their content) and ``counts`` (object counts of the other kinds)."""
    hard = hard_of(quota)
    total: Usage = {k: Fraction(0) for k in hard}
    for (group, plural), n in counts.items():
        for k in (count_name(group, plural), plural if not group else ""):
            if k in total:
                total[k] += n
    for (group, plural), objs in objects.items():
        for obj in objs:
            if not quota_applies(quota, group, plural, obj):
                continue
            for k, v in object_usage(group, plural, obj).items():
                if k in total:
                    total[k] += v
    return total


def needs_content(group: str, plural: str, quota: Obj) -> bool:
    """Whether counting this kind for the quota needs the objects (not only how many there are)."""
    return (not group and plural in ("pods", "services", "persistentvolumeclaims")) or bool(
        as_dict(quota.get("spec")).get("scopes") or as_dict(quota.get("spec")).get("scopeSelector"))


def tracked_kinds(quota: Obj) -> set[tuple[str, str]]:
    return {t for t in (tracked_kind(k) for k in hard_of(quota)) if t is not None}


# ======================================================================= ResourceQuota kind

_INTEGER_RESOURCES = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims", "replicationcontrollers",
                      "resourcequotas", "services.nodeports", "services.loadbalancers")


def _is_integer_resource(name: str) -> bool:
    return name in _INTEGER_RESOURCES or name.startswith("count/") or name.endswith("/persistentvolumeclaims")


def validate_resource_list(d: Any, path: str, causes: list[Cause], integer_check: bool = True) -> Usage:
    """A map of resource name -> quantity; every value parses and is >= 0."""
    out: Usage = {}
    if d is None:
        return out
    if not isinstance(d, dict):
        causes.append(type_invalid(path, d, dict))
        return out
    for name, q in d.items():
        key = f"{path}[{name}]"
        causes += [invalid_value(key, name, m) for m in is_qualified_name(name.removeprefix("count/"))]
        v = nonnegative_quantity(q, key, causes)
        if v is None:
            continue
        if integer_check and _is_integer_resource(name) and v.denominator != 1:
            causes.append(invalid_value(key, q, "must be an integer"))
        out[name] = v
    return out


def _resources_cell(quota: Obj, limits: bool) -> str:
    status = as_dict(quota.get("status"))
    hard, used = as_dict(status.get("hard")), as_dict(status.get("used"))
    cells = []
    for k in sorted(hard):
        if k.startswith("limits.") == limits:
            cells.append(f"{k}: {canonical(used.get(k, '0'))}/{canonical(hard[k])}")
    return ", ".join(cells)


QUOTA_PRINTER = Printer(
    columns=[name_column(), age_column(),
             Column("Request", description="Request represents a minimum amount of cpu/memory that a container "
                                           "may consume."),
             Column("Limit", description="Limits control the maximum amount of cpu/memory that a container may use "
                                         "independent of contention on the node.")],
    row=lambda q: [name_of(q), object_age(q), _resources_cell(q, False), _resources_cell(q, True)],
)


class ResourceQuotaStrategy(KindStrategy):
    has_spec = False  # no metadata.generation, as in Kubernetes

    def prepare_create(self, obj: Obj) -> None:
        obj.pop("status", None)  # the controller (or the first admission it limits) fills it

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes) or {}
        validate_resource_list(spec.get("hard"), "spec.hard", causes)
        status = get(obj, "status", "status", dict, causes) or {}
        validate_resource_list(status.get("hard"), "status.hard", causes, integer_check=False)
        validate_resource_list(status.get("used"), "status.used", causes, integer_check=False)
        scopes = get(spec, "scopes", "spec.scopes", list, causes) or []
        for i, s in enumerate(scopes):
            if s not in SCOPES:
                causes.append(unsupported(f"spec.scopes[{i}]", s, SCOPES))
        if "BestEffort" in scopes and "NotBestEffort" in scopes or "Terminating" in scopes and "NotTerminating" in scopes:
            causes.append(invalid_value("spec.scopes", scopes, "conflicting scopes"))
        selector = get(spec, "scopeSelector", "spec.scopeSelector", dict, causes) or {}
        exprs = get(selector, "matchExpressions", "spec.scopeSelector.matchExpressions", list, causes) or []
        for i, e in enumerate(exprs):
            path = f"spec.scopeSelector.matchExpressions[{i}]"
            if not isinstance(e, dict):
                causes.append(type_invalid(path, e, dict))
                continue
            if e.get("scopeName") not in SCOPES:
                causes.append(unsupported(f"{path}.scopeName", e.get("scopeName"), SCOPES))
            op = e.get("operator")
            if op not in SCOPE_OPERATORS:
                causes.append(unsupported(f"{path}.operator", op, SCOPE_OPERATORS))
            elif op in ("In", "NotIn") and not e.get("values"):
                causes.append(required(f"{path}.values"))
            elif op in ("Exists", "DoesNotExist") and e.get("values"):
                causes.append(invalid_value(f"{path}.values", e.get("values"),
                                            "must be no value when `operator` is 'Exist' or 'DoesNotExist'"))
        return causes


# ======================================================================= LimitRange kind

LIMIT_TYPES = ["Container", "PersistentVolumeClaim", "Pod"]
_SECTIONS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


def default_limit_item(item: Any) -> None:
    """Container items: default falls back to max, defaultRequest to default, then to min."""
    if not isinstance(item, dict) or item.get("type") != "Container":
        return
    for section in ("default", "defaultRequest"):
        if item.get(section) is None:
            item[section] = {}
    if not all(isinstance(item.get(s), dict) for s in ("default", "defaultRequest")):
        return
    for source, target in (("max", "default"), ("default", "defaultRequest"), ("min", "defaultRequest")):
        for k, v in as_dict(item.get(source)).items():
            item[target].setdefault(k, v)
    for section in ("default", "defaultRequest"):
        if not item[section]:
            del item[section]


def _check_item(item: dict, path: str, causes: list[Cause]) -> None:
    ltype = item.get("type")
    if ltype not in LIMIT_TYPES:
        causes.append(required(f"{path}.type") if ltype is None else unsupported(f"{path}.type", ltype, LIMIT_TYPES))
    q = {s: validate_resource_list(item.get(s), f"{path}.{s}", causes, integer_check=False) for s in _SECTIONS}
    if ltype == "Pod":
        for s in ("default", "defaultRequest"):
            if item.get(s):
                causes.append(forbidden(f"{path}.{s}", "may not be specified when `type` is 'Pod'"))
    if ltype == "PersistentVolumeClaim" and "storage" not in q["min"] and "storage" not in q["max"]:
        causes.append(required_msg(f"{path}.limits",
                                   "either minimum or maximum storage value is required, but neither was provided"))
    raw = {s: as_dict(item.get(s)) for s in _SECTIONS}
    keys = set().union(*(q[s] for s in _SECTIONS))
    pairs = (("min", "max", "min", "min value {a} is greater than max value {b}"),
             ("min", "defaultRequest", "defaultRequest", "min value {a} is greater than default request value {b}"),
             ("defaultRequest", "max", "defaultRequest", "default request value {a} is greater than max value {b}"),
             ("defaultRequest", "default", "defaultRequest",
              "default request value {a} is greater than default limit value {b}"),
             ("min", "default", "default", "min value {a} is greater than default value {b}"),
             ("default", "max", "default", "default value {a} is greater than max value {b}"))
    for k in sorted(keys):
        for low, high, at, why in pairs:
            if k in q[low] and k in q[high] and q[low][k] > q[high][k]:
                shown = raw[at][k]
                causes.append(invalid_value(f"{path}.{at}[{k}]", shown,
                                            why.format(a=canonical(raw[low][k]), b=canonical(raw[high][k]))))
        ratio = q["maxLimitRequestRatio"].get(k)
        if ratio is not None and ratio < 1:
            causes.append(invalid_value(f"{path}.maxLimitRequestRatio[{k}]", raw["maxLimitRequestRatio"][k],
                                        f"ratio {canonical(raw['maxLimitRequestRatio'][k])} is less than 1"))
        elif ratio is not None and k in q["min"] and k in q["max"] and q["min"][k] > 0 \
                and ratio > q["max"][k] / q["min"][k]:
            causes.append(invalid_value(f"{path}.maxLimitRequestRatio[{k}]", raw["maxLimitRequestRatio"][k],
                                        f"ratio {canonical(raw['maxLimitRequestRatio'][k])} is greater than max/min = "
                                        f"{float(q['max'][k] / q['min'][k]):f}"))


def required_msg(path: str, detail: str) -> Cause:
    return Cause(path, f"Required value: {detail}", "FieldValueRequired")


class LimitRangeStrategy(NoStatus):
    def default(self, obj: Obj) -> None:
        for item in as_dict(obj.get("spec")).get("limits") or []:
            default_limit_item(item)

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes) or {}
        items = get(spec, "limits", "spec.limits", list, causes) or []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                causes.append(type_invalid(f"spec.limits[{i}]", item, dict))
                continue
            _check_item(item, f"spec.limits[{i}]", causes)
        return causes


def _created_at(obj: Obj) -> str:
    ts = parse_timestamp(as_dict(obj.get("metadata")).get("creationTimestamp"))
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


LIMITRANGE_PRINTER = Printer(
    columns=[name_column(), Column("Created At", type="date", description="CreationTimestamp is a timestamp "
                                   "representing the server time when this object was created.")],
    row=lambda lr: [name_of(lr), _created_at(lr)],
)


# ----------------------------------------------------------------- LimitRange admission

def _items(limitranges: list[Obj], ltype: str) -> list[dict]:
    return [i for lr in limitranges for i in dicts(as_dict(lr.get("spec")).get("limits")) if i.get("type") == ltype]


def apply_limit_defaults(limitranges: list[Obj], pod: Obj) -> str:
    """Fill missing container requests/limits from Container items' defaultRequest/default, as the
    LimitRanger admission plugin does; returns what was set (for the kubernetes.io/limit-ranger
    annotation), "" if nothing."""
    defaults: dict[str, Any] = {}
    default_requests: dict[str, Any] = {}
    for item in _items(limitranges, "Container"):
        item = dict(item)
        default_limit_item(item)
        for k, v in as_dict(item.get("default")).items():
            defaults.setdefault(k, v)
        for k, v in as_dict(item.get("defaultRequest")).items():
            default_requests.setdefault(k, v)
    if not defaults and not default_requests:
        return ""
    spec = as_dict(pod.get("spec"))
    notes = []
    for c in dicts(spec.get("initContainers")) + dicts(spec.get("containers")):
        res = c.get("resources")
        if res is None:
            res = c["resources"] = {}
        if not isinstance(res, dict):
            continue
        set_here: dict[str, list[str]] = {"request": [], "limit": []}
        for section, source, word in (("limits", defaults, "limit"), ("requests", default_requests, "request")):
            current = res.get(section)
            if current is None:
                current = {}
            if not isinstance(current, dict):
                continue
            for k, v in source.items():
                if k not in current:
                    current[k] = v
                    set_here[word].append(k)
            if current:
                res[section] = current
        parts = []
        for word in ("request", "limit"):
            if set_here[word]:
                parts.append(f"{', '.join(sorted(set_here[word]))} {word}")
        if parts:
            notes.append(f"{'; '.join(parts)} for container {c.get('name')}")
    return "LimitRanger plugin set: " + "; ".join(notes) if notes else ""


def _enforced(item: dict, section: str) -> Iterable[tuple[str, Fraction, str]]:
    """(resource, value, as printed) of one section of a LimitRange item."""
    for k, v in quantities(item.get(section)).items():
        yield k, v, canonical(as_dict(item.get(section))[k])


def _bounds(kind: str, item: dict, requests: dict[str, Any], limits: dict[str, Any], pvc: bool = False) -> list[str]:
    """Kubernetes' min/max/ratio messages for one LimitRange item against one container (pod, claim)."""
    errs = []
    req_q, lim_q = quantities(requests), quantities(limits)

    def over(k: str, e: Fraction, word: str, values: Usage, shown_in: dict, low: bool) -> bool:
        bad = k in values and (values[k] < e if low else values[k] > e)
        if bad:
            errs.append(f"{'minimum' if low else 'maximum'} {k} usage per {kind} is {canonical(e_shown[k])}, "
                        f"but {word} is {canonical(shown_in[k])}")
        return bad
    e_shown: dict[str, str] = {}
    for k, e, shown in _enforced(item, "min"):
        e_shown[k] = shown
        if k not in req_q:
            errs.append(f"minimum {k} usage per {kind} is {shown}.  No request is specified")
        elif not over(k, e, "request", req_q, requests, True):
            over(k, e, "limit", lim_q, limits, True)
    for k, e, shown in _enforced(item, "max"):
        e_shown[k] = shown
        if not pvc and k not in lim_q:
            errs.append(f"maximum {k} usage per {kind} is {shown}.  No limit is specified")
        elif pvc or not over(k, e, "limit", lim_q, limits, False):
            over(k, e, "request", req_q, requests, False)
    for k, e, shown in _enforced(item, "maxLimitRequestRatio"):
        what = f"{k} max limit to request ratio per {kind} is {shown}"
        if not req_q.get(k):
            errs.append(f"{what}, but no request is specified or request is 0")
        elif not lim_q.get(k):
            errs.append(f"{what}, but no limit is specified or limit is 0")
        elif lim_q[k] / req_q[k] > e:
            errs.append(f"{what}, but provided ratio is {float(lim_q[k] / req_q[k]):f}")
    return errs


def limit_violations(limitranges: list[Obj], plural: str, obj: Obj) -> list[str]:
    """Every bound a pod (its containers, and the pod as a whole) or a claim breaks."""
    errs: list[str] = []
    spec = as_dict(obj.get("spec"))
    if plural == "persistentvolumeclaims":
        requests = as_dict(as_dict(spec.get("resources")).get("requests"))
        for item in _items(limitranges, "PersistentVolumeClaim"):
            errs += _bounds("PersistentVolumeClaim", item, requests, {}, pvc=True)
        return errs
    if plural != "pods":
        return errs
    for item in _items(limitranges, "Container"):
        for c in dicts(spec.get("initContainers")) + dicts(spec.get("containers")):
            res = as_dict(c.get("resources"))
            errs += _bounds("Container", item, as_dict(res.get("requests")), as_dict(res.get("limits")))
    pod_items = _items(limitranges, "Pod")
    if pod_items:
        requests, limits = pod_requests_limits(spec)
        # a pod has a limit only where every container sets one
        containers = dicts(spec.get("containers"))
        limits = {k: v for k, v in limits.items()
                  if all(k in as_dict(as_dict(c.get("resources")).get("limits")) for c in containers)}
        written = [as_dict(as_dict(c.get("resources")).get(s)) for c in containers for s in ("requests", "limits")]
        binary = {k for d in written for k, v in d.items() if is_binary(v)}
        req_s = {k: format_quantity(v, k in binary) for k, v in requests.items()}
        lim_s = {k: format_quantity(v, k in binary) for k, v in limits.items()}
        for item in pod_items:
            errs += _bounds("Pod", item, req_s, lim_s)
    return errs


def forbidden_message(errs: list[str]) -> str:
    """One error as it is; several as Kubernetes' aggregate: "[a, b]"."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
