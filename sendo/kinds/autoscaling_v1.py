"""autoscaling/v1 HorizontalPodAutoscaler, served from the autoscaling/v2 objects in the store.

As in Kubernetes, the stored form is v2 and v1 is a view of it. v1 has one metric,
`spec.targetCPUUtilizationPercentage` (the CPU `Resource` metric with a `Utilization`
target; none means 80 %), and `status.currentCPUUtilizationPercentage`. What v1 has no
field for travels in annotations, with Kubernetes' names and formats, so a v1 client that
reads, changes and writes back an object loses nothing:

* ``autoscaling.alpha.kubernetes.io/metrics``: the metrics other than CPU utilization,
  in v1's metric format (``targetAverageUtilization``, ``metricName``, …);
* ``autoscaling.alpha.kubernetes.io/current-metrics``: every current metric, same format;
* ``autoscaling.alpha.kubernetes.io/conditions``: ``status.conditions``;
* ``autoscaling.alpha.kubernetes.io/behavior``: ``spec.behavior`` (capitalized keys, as
  kube-apiserver writes them).

Reading v1 makes these annotations; writing v1 consumes them (they are never stored).
"""
from __future__ import annotations

import copy
from typing import Any

import orjson

from .autoscaling import DEFAULT_CPU_UTILIZATION, HPA_PRINTER, HPAStrategy, hpa_row, validate_hpa_spec
from .base import Cause, Conversion, Obj, Printer, Resource, set_default
from .printing import as_dict, dicts
from .validation import check_int, invalid_value

V2, V1 = "autoscaling/v2", "autoscaling/v1"
METRICS = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP = (METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR)
SPEC_FIELDS = ("scaleTargetRef", "minReplicas", "maxReplicas")
STATUS_FIELDS = ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
SOURCE_FIELD = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
                "Object": "object", "External": "external"}


class ConversionError(ValueError):
    """An annotation that does not hold what it should; `field` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.field = key, f"metadata.annotations[{key}]"


def _cpu_utilization(m: Obj) -> int | None:
    res = as_dict(m.get("resource"))
    target = as_dict(res.get("target"))
    if m.get("type") == "Resource" and res.get("name") == "cpu" and target.get("averageUtilization") is not None:
        return target["averageUtilization"]
    return None


def _cpu_metric(utilization: Any) -> Obj:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                          "averageUtilization": utilization}}}


# ----------------------------------------------------------------- one metric, v2 ⇄ v1 format
# per metric type: (v1 field, where it is in the v2 source); `{}` is target (specs) or current (statuses)
_FIELDS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "Resource": [("name", ("name",)), ("container", ("container",)),
                 ("{}AverageUtilization", ("{}", "averageUtilization")), ("{}AverageValue", ("{}", "averageValue"))],
    "Pods": [("metricName", ("metric", "name")), ("selector", ("metric", "selector")),
             ("{}AverageValue", ("{}", "averageValue"))],
    "Object": [("target", ("describedObject",)), ("metricName", ("metric", "name")),
               ("selector", ("metric", "selector")), ("{}Value", ("{}", "value")), ("averageValue", ("{}", "averageValue"))],
    "External": [("metricName", ("metric", "name")), ("metricSelector", ("metric", "selector")),
                 ("{}Value", ("{}", "value")), ("{}AverageValue", ("{}", "averageValue"))],
}
_FIELDS["ContainerResource"] = _FIELDS["Resource"]
TARGET_TYPES = (("averageUtilization", "Utilization"), ("averageValue", "AverageValue"), ("value", "Value"))


def _fields(typ: str, status: bool) -> list[tuple[str, tuple[str, ...]]]:
    word = "current" if status else "target"
    return [(v1.format(word), tuple(p.format(word) for p in path)) for v1, path in _FIELDS[typ]]


def _metric_to_v1(m: Obj, status: bool) -> Obj:
    typ = str(m.get("type"))
    if typ not in _FIELDS:
        return copy.deepcopy(m)
    src, out = as_dict(m.get(SOURCE_FIELD[typ])), {}  # type: Obj, Obj
    for v1_field, path in _fields(typ, status):
        v: Any = src
        for step in path:
            v = as_dict(v).get(step)
        if v is not None:
            out[v1_field] = copy.deepcopy(v)
    return {"type": typ, SOURCE_FIELD[typ]: out}


def _metric_to_v2(m: Obj, status: bool) -> Obj:
    typ = str(m.get("type"))
    if typ not in _FIELDS:
        return copy.deepcopy(m)
    src, out = as_dict(m.get(SOURCE_FIELD[typ])), {}  # type: Obj, Obj
    for v1_field, path in _fields(typ, status):
        if src.get(v1_field) is not None:
            where = out
            for step in path[:-1]:
                where = where.setdefault(step, {})
            where[path[-1]] = copy.deepcopy(src[v1_field])
    if not status:
        target = out.setdefault("target", {})
        target_type = next((t for k, t in TARGET_TYPES if k in target), None)
        if target_type:
            target["type"] = target_type
    return {"type": typ, SOURCE_FIELD[typ]: out}


def metric_to_v1(m: Obj) -> Obj:
    return _metric_to_v1(m, False)


def metric_to_v2(m: Obj) -> Obj:
    return _metric_to_v2(m, False)


def current_to_v1(m: Obj) -> Obj:
    return _metric_to_v1(m, True)


def current_to_v2(m: Obj) -> Obj:
    return _metric_to_v2(m, True)


def _recase(v: Any, upper: bool) -> Any:
    """Keys with their first letter upper case (kube-apiserver's behavior annotation) or lower."""
    if isinstance(v, dict):
        return {(k[:1].upper() if upper else k[:1].lower()) + k[1:]: _recase(x, upper) for k, x in v.items()}
    if isinstance(v, list):
        return [_recase(x, upper) for x in v]
    return v


# ----------------------------------------------------------------- whole objects

def _dump(v: Any) -> str:
    return orjson.dumps(v).decode()


def to_v1(obj: Obj) -> Obj:
    """The v1 view of a stored (v2) HorizontalPodAutoscaler."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = V1
    meta = out.setdefault("metadata", {})
    notes = {k: v for k, v in as_dict(meta.get("annotations")).items() if k not in ROUND_TRIP}
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    v1spec = {k: copy.deepcopy(spec[k]) for k in SPEC_FIELDS if k in spec}
    others = []
    for m in dicts(spec.get("metrics")):
        cpu = _cpu_utilization(m)
        if cpu is None:
            others.append(metric_to_v1(m))
        elif "targetCPUUtilizationPercentage" not in v1spec:
            v1spec["targetCPUUtilizationPercentage"] = cpu
    if others:
        notes[METRICS] = _dump(others)
    if spec.get("behavior") is not None:
        notes[BEHAVIOR] = _dump(_recase(spec["behavior"], True))
    v1status = {k: copy.deepcopy(status[k]) for k in STATUS_FIELDS if k in status}
    currents = dicts(status.get("currentMetrics"))
    for m in currents:
        res = as_dict(m.get("resource"))
        value = as_dict(res.get("current")).get("averageUtilization")
        if m.get("type") == "Resource" and res.get("name") == "cpu" and value is not None:
            v1status["currentCPUUtilizationPercentage"] = value
            break
    if currents:
        notes[CURRENT_METRICS] = _dump([current_to_v1(m) for m in currents])
    if status.get("conditions"):
        notes[CONDITIONS] = _dump(status["conditions"])
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)
    out["spec"] = v1spec
    if "status" in obj:
        out["status"] = v1status
    return out


def _annotation(notes: Obj, key: str) -> list | dict | None:
    raw = notes.get(key)
    if raw is None:
        return None
    try:
        v = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError as e:
        raise ConversionError(key, f"is not valid JSON: {e}")
    if not isinstance(v, dict if key == BEHAVIOR else list):
        raise ConversionError(key, "must be a JSON " + ("object" if key == BEHAVIOR else "list"))
    return v


def to_v2(obj: Obj) -> Obj:
    """The stored (v2) form of a v1 HorizontalPodAutoscaler; ConversionError for a round-trip
    annotation that does not parse."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = V2
    meta = out.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return out | {"spec": copy.deepcopy(obj.get("spec"))}
    notes = as_dict(meta.get("annotations"))
    spec, status = obj.get("spec"), as_dict(obj.get("status"))
    if isinstance(spec, dict):
        v2spec: Obj = {k: copy.deepcopy(spec[k]) for k in SPEC_FIELDS if k in spec}
        metrics = [] if spec.get("targetCPUUtilizationPercentage") is None else [
            _cpu_metric(spec["targetCPUUtilizationPercentage"])]
        others = _annotation(notes, METRICS)
        if others is not None:
            metrics = [metric_to_v2(m) for m in others if isinstance(m, dict)] + metrics
        v2spec["metrics"] = metrics or [_cpu_metric(DEFAULT_CPU_UTILIZATION)]
        behavior = _annotation(notes, BEHAVIOR)
        if behavior is not None:
            v2spec["behavior"] = _recase(behavior, False)
        out["spec"] = v2spec
    elif spec is not None or "spec" in obj:
        out["spec"] = copy.deepcopy(spec)
    if "status" in obj:
        v2status = {k: copy.deepcopy(status[k]) for k in STATUS_FIELDS if k in status}
        if status.get("currentCPUUtilizationPercentage") is not None:
            v2status["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
        currents = _annotation(notes, CURRENT_METRICS)
        if currents is not None:
            v2status["currentMetrics"] = [current_to_v2(m) for m in currents if isinstance(m, dict)]
        conditions = _annotation(notes, CONDITIONS)
        if conditions is not None:
            v2status["conditions"] = conditions
        out["status"] = v2status
    if isinstance(meta.get("annotations"), dict):
        kept = {k: v for k, v in meta["annotations"].items() if k not in ROUND_TRIP}
        if kept:
            meta["annotations"] = kept
        else:
            meta.pop("annotations")
    return out


class HPAV1Strategy(HPAStrategy):
    """Defaults and checks of a v1 object: those of its v2 form, as Kubernetes validates
    the one internal form whatever version was written."""

    def default(self, obj: Obj) -> None:
        set_default(obj.get("spec"), "minReplicas", 1)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        causes: list[Cause] = []
        if isinstance(spec, dict):
            check_int(spec, "targetCPUUtilizationPercentage", "spec.targetCPUUtilizationPercentage", causes,
                      minimum=1)
        if causes:
            return causes
        try:
            converted = to_v2(obj)
        except ConversionError as e:
            return [invalid_value(e.field, as_dict(obj["metadata"].get("annotations")).get(e.key), str(e))]
        return validate_hpa_spec(converted.get("spec"))


V1_PRINTER = Printer(columns=HPA_PRINTER.columns, row=lambda hpa: hpa_row(to_v2(hpa)))

RESOURCES = [
    Resource("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
             short_names=["hpa"], categories=["all"], subresources={"status"}, strategy=HPAV1Strategy(),
             printer=V1_PRINTER, conversion=Conversion("v2", to_served=to_v1, to_stored=to_v2)),
]
