"""autoscaling/v2 HorizontalPodAutoscaler: keeps a scalable object's replicas in line with
its pods' CPU or memory, as `controllers/hpa.py` computes it.

Defaults and checks follow Kubernetes: minReplicas 1; no metrics means 80 % CPU
utilization; `behavior`, when given, has every rule it leaves out filled with the
defaults (scale up: no stabilization, the larger of 4 pods or 100 % per 15 s; scale
down: 300 s stabilization, 100 % per 15 s). The one version served is v2 (kubectl's
`autoscale` and `get hpa` use it).
"""
from __future__ import annotations

import copy
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, required, set_default, unsupported
from .printing import age_column, as_dict, dicts, name_column, name_of, object_age
from .quantity import QuantityError, parse_quantity
from .validation import (KindStrategy, check_int, get, invalid_value, is_dns1123_subdomain, required_because,
                         type_invalid)

METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]
TARGET_TYPES = ["AverageValue", "Utilization", "Value"]
POLICY_TYPES = ["Percent", "Pods"]
SELECT_POLICIES = ["Disabled", "Max", "Min"]
MAX_STABILIZATION = 3600
MAX_PERIOD = 1800
DEFAULT_CPU_UTILIZATION = 80


def default_scale_up() -> Obj:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_scale_down() -> Obj:
    return {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def effective_behavior(spec: Obj) -> Obj:
    """`behavior` with every rule filled (the controller's view; nil means all defaults)."""
    behavior = copy.deepcopy(as_dict(spec.get("behavior")))
    for key, make in (("scaleUp", default_scale_up), ("scaleDown", default_scale_down)):
        rules = behavior.get(key)
        base = make()
        if not isinstance(rules, dict):
            behavior[key] = base
            continue
        for k, v in base.items():
            if rules.get(k) is None:
                rules[k] = v
    return behavior


# ----------------------------------------------------------------- validation

def _quantity(v: Any, path: str, causes: list[Cause]) -> None:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        causes.append(type_invalid(path, v, str))
        return
    try:
        q = parse_quantity(v)
    except QuantityError as e:
        causes.append(invalid_value(path, v, e.reason))
        return
    if q <= 0:
        causes.append(invalid_value(path, v, "must be positive"))


def _validate_target(target: Any, path: str, resource: bool, causes: list[Cause]) -> None:
    if not isinstance(target, dict):
        causes.append(required(path) if target is None else type_invalid(path, target, dict))
        return
    typ = target.get("type")
    if typ is None or typ == "":
        causes.append(required(f"{path}.type"))
    elif typ not in TARGET_TYPES:
        causes.append(unsupported(f"{path}.type", typ, TARGET_TYPES))
    util = check_int(target, "averageUtilization", f"{path}.averageUtilization", causes, minimum=1)
    for key in ("value", "averageValue"):
        if target.get(key) is not None:
            _quantity(target[key], f"{path}.{key}", causes)
    if typ == "Utilization" and util is None and target.get("averageUtilization") is None:
        causes.append(required_because(f"{path}.averageUtilization", "must set averageUtilization when type is "
                                       "Utilization"))
    if typ == "AverageValue" and target.get("averageValue") is None:
        causes.append(required_because(f"{path}.averageValue", "must set averageValue when type is AverageValue"))
    if typ == "Value":
        if resource:
            causes.append(unsupported(f"{path}.type", typ, ["AverageValue", "Utilization"]))
        elif target.get("value") is None:
            causes.append(required_because(f"{path}.value", "must set value when type is Value"))
    if typ == "Utilization" and not resource:
        causes.append(invalid_value(f"{path}.type", typ, "utilization is only supported for resource metrics"))


def _validate_metrics(metrics: Any, causes: list[Cause]) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, list):
        causes.append(type_invalid("spec.metrics", metrics, list))
        return
    for i, m in enumerate(metrics):
        p = f"spec.metrics[{i}]"
        if not isinstance(m, dict):
            causes.append(type_invalid(p, m, dict))
            continue
        typ = m.get("type")
        if not typ:
            causes.append(required(f"{p}.type"))
            continue
        if typ not in METRIC_TYPES:
            causes.append(unsupported(f"{p}.type", typ, METRIC_TYPES))
            continue
        field = typ[0].lower() + typ[1:]  # Resource -> resource, ContainerResource -> containerResource
        source = m.get(field)
        if not isinstance(source, dict):
            causes.append(required_because(f"{p}.{field}", f"must populate information for the given metric "
                                           f"source (type {typ})") if source is None
                          else type_invalid(f"{p}.{field}", source, dict))
            continue
        if typ in ("Resource", "ContainerResource"):
            name = source.get("name")
            if not isinstance(name, str) or not name:
                causes.append(required(f"{p}.{field}.name"))
            if typ == "ContainerResource" and not source.get("container"):
                causes.append(required(f"{p}.{field}.container"))
            _validate_target(source.get("target"), f"{p}.{field}.target", True, causes)
        else:
            _validate_target(source.get("target"), f"{p}.{field}.target", False, causes)


def _validate_rules(rules: Any, path: str, causes: list[Cause]) -> None:
    if rules is None:
        return
    if not isinstance(rules, dict):
        causes.append(type_invalid(path, rules, dict))
        return
    check_int(rules, "stabilizationWindowSeconds", f"{path}.stabilizationWindowSeconds", causes, minimum=0,
              maximum=MAX_STABILIZATION)
    sp = rules.get("selectPolicy")
    if sp is not None and sp not in SELECT_POLICIES:
        causes.append(unsupported(f"{path}.selectPolicy", sp, SELECT_POLICIES))
    policies = get(rules, "policies", f"{path}.policies", list, causes)
    if policies is not None and not policies:
        causes.append(required_because(f"{path}.policies", "must specify at least one Policy"))
    for j, pol in enumerate(policies or []):
        pp = f"{path}.policies[{j}]"
        if not isinstance(pol, dict):
            causes.append(type_invalid(pp, pol, dict))
            continue
        t = pol.get("type")
        if t not in POLICY_TYPES:
            causes.append(required(f"{pp}.type") if not t else unsupported(f"{pp}.type", t, POLICY_TYPES))
        if pol.get("value") is None:
            causes.append(required(f"{pp}.value"))
        else:
            check_int(pol, "value", f"{pp}.value", causes, minimum=1)
        if pol.get("periodSeconds") is None:
            causes.append(required(f"{pp}.periodSeconds"))
        else:
            check_int(pol, "periodSeconds", f"{pp}.periodSeconds", causes, minimum=1, maximum=MAX_PERIOD)


def validate_hpa_spec(spec: Any) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required("spec") if spec is None else type_invalid("spec", spec, dict)]
    causes: list[Cause] = []
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        causes.append(required("spec.scaleTargetRef") if ref is None else
                      type_invalid("spec.scaleTargetRef", ref, dict))
    else:
        for key in ("kind", "name"):
            v = ref.get(key)
            if not v:
                causes.append(required(f"spec.scaleTargetRef.{key}"))
            elif not isinstance(v, str):
                causes.append(type_invalid(f"spec.scaleTargetRef.{key}", v, str))
        name = ref.get("name")
        if isinstance(name, str) and name:
            causes += [invalid_value("spec.scaleTargetRef.name", name, m) for m in is_dns1123_subdomain(name)]
        if ref.get("apiVersion") is not None and not isinstance(ref.get("apiVersion"), str):
            causes.append(type_invalid("spec.scaleTargetRef.apiVersion", ref["apiVersion"], str))
    low = check_int(spec, "minReplicas", "spec.minReplicas", causes, minimum=1)
    if spec.get("maxReplicas") is None:
        causes.append(required("spec.maxReplicas"))
    high = check_int(spec, "maxReplicas", "spec.maxReplicas", causes, minimum=1)
    if low is not None and high is not None and high < low:
        causes.append(invalid_value("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    _validate_metrics(spec.get("metrics"), causes)
    behavior = spec.get("behavior")
    if behavior is not None:
        if not isinstance(behavior, dict):
            causes.append(type_invalid("spec.behavior", behavior, dict))
        else:
            _validate_rules(behavior.get("scaleUp"), "spec.behavior.scaleUp", causes)
            _validate_rules(behavior.get("scaleDown"), "spec.behavior.scaleDown", causes)
    return causes


class HPAStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "minReplicas", 1)
        if spec.get("metrics") is None:
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            for key, make in (("scaleUp", default_scale_up), ("scaleDown", default_scale_down)):
                rules = behavior.get(key)
                if rules is None:
                    behavior[key] = make()
                elif isinstance(rules, dict):
                    for k, v in make().items():
                        set_default(rules, k, v)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"currentReplicas": 0, "desiredReplicas": 0}

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_hpa_spec(obj.get("spec"))


# ----------------------------------------------------------------- kubectl get hpa

def _target_text(metric: Obj, current: Obj | None) -> str:
    """One metric of the TARGETS column, as kubectl prints it: `cpu: 12%/50%`."""
    typ = metric.get("type")
    field = (typ or "")[:1].lower() + (typ or "")[1:]
    source = as_dict(metric.get(field))
    target = as_dict(source.get("target"))
    name = source.get("name") or as_dict(source.get("metric")).get("name") or "<unknown>"
    cur = as_dict(as_dict(as_dict(current).get(field)).get("current"))
    if target.get("type") == "Utilization":
        shown = f"{cur['averageUtilization']}%" if cur.get("averageUtilization") is not None else "<unknown>"
        return f"{name}: {shown}/{target.get('averageUtilization')}%"
    if target.get("type") == "AverageValue":
        return f"{name}: {cur.get('averageValue', '<unknown>')}/{target.get('averageValue')}"
    return f"{name}: {cur.get('value', '<unknown>')}/{target.get('value')}"


def hpa_row(hpa: Obj) -> list[Any]:
    spec, status = as_dict(hpa.get("spec")), as_dict(hpa.get("status"))
    ref = as_dict(spec.get("scaleTargetRef"))
    metrics = dicts(spec.get("metrics"))
    currents = dicts(status.get("currentMetrics"))
    texts = []
    for i, m in enumerate(metrics):
        texts.append(_target_text(m, currents[i] if i < len(currents) else None))
    targets = ", ".join(texts) if texts else "<none>"
    if len(texts) > 2:
        targets = ", ".join(texts[:2]) + f" + {len(texts) - 2} more..."
    low = spec.get("minReplicas")
    return [name_of(hpa), f"{ref.get('kind', '')}/{ref.get('name', '')}", targets,
            "<unset>" if low is None else low, spec.get("maxReplicas", 0), status.get("currentReplicas", 0),
            object_age(hpa)]


HPA_PRINTER = Printer(
    columns=[name_column(),
             Column("Reference", description="The object whose replicas are scaled."),
             Column("Targets", description="Current and target value of each metric."),
             Column("MinPods", description="Lower limit of the replicas."),
             Column("MaxPods", type="integer", description="Upper limit of the replicas."),
             Column("Replicas", type="integer", description="Current number of replicas."),
             age_column()],
    row=hpa_row,
)

RESOURCES = [
    Resource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
             short_names=["hpa"], categories=["all"], subresources={"status"}, strategy=HPAStrategy(),
             printer=HPA_PRINTER),
]

