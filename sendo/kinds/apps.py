"""apps/v1 kinds: Deployments and ReplicaSets.

Both carry a pod template that is defaulted and validated exactly like a Pod's spec
(core.default_pod_spec, validation.validate_pod_template), plus a selector that must
select that template and can never change once the object exists (the controllers
find their pods by it).
"""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, ScaleSpec, forbidden, required, unsupported
from .core import default_pod_spec, set_default
from .printing import as_dict, container_cells, format_selector, name_of, object_age, selector_string
from .validation import (KindStrategy, check_int, go_selector, go_value, int_or_percent_value, invalid_value,
                         normalized_selector, required_because, selector_is_empty, selector_matches,
                         type_invalid, validate_int_or_percent, validate_label_selector, validate_pod_template)

STRATEGY_TYPES = ["Recreate", "RollingUpdate"]


def default_template(spec: dict) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.get("spec"))


# ----------------------------------------------------------------- shared workload rules


def validate_selector_and_template(spec: dict, kind: str) -> list[Cause]:
    """A non-empty valid selector that selects the template; the template a valid always-restarting pod."""
    causes: list[Cause] = []
    sel = spec.get("selector")
    if sel is None:
        causes.append(required("spec.selector"))
    else:
        causes += validate_label_selector(sel, "spec.selector")
        if isinstance(sel, dict) and selector_is_empty(sel):
            causes.append(Cause("spec.selector", f"Invalid value: {go_selector(sel)}: empty selector is invalid for {kind.lower()}"))
    template = spec.get("template")
    causes += validate_pod_template(template, "spec.template")
    if not isinstance(template, dict):
        return causes
    labels = as_dict(template.get("metadata")).get("labels") or {}
    selector_ok = isinstance(sel, dict) and not selector_is_empty(sel) and \
        not any(c.field.startswith("spec.selector") for c in causes)
    if selector_ok and not selector_matches(sel, labels):
        causes.append(Cause("spec.template.metadata.labels",
                            f"Invalid value: {go_value(labels)}: `selector` does not match template `labels`"))
    tspec = as_dict(template.get("spec"))
    restart = tspec.get("restartPolicy")
    if restart and restart != "Always":
        causes.append(unsupported("spec.template.spec.restartPolicy", restart, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        causes.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                                f"activeDeadlineSeconds in {kind} is not Supported"))
    return causes


def validate_selector_unchanged(obj: Obj, old: Obj) -> list[Cause]:
    """In apps/v1 a workload's selector is fixed: changing it would orphan its pods."""
    new_sel = as_dict(obj.get("spec")).get("selector")
    old_sel = as_dict(old.get("spec")).get("selector")
    if normalized_selector(new_sel) != normalized_selector(old_sel):
        return [Cause("spec.selector", f"Invalid value: {go_selector(new_sel)}: field is immutable")]
    return []


def _spec_or_causes(obj: Obj) -> tuple[dict | None, list[Cause]]:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        return spec, []
    return None, [required("spec.selector") if spec is None else type_invalid("spec", spec, dict)]


class WorkloadStrategy(KindStrategy):
    """What Deployments and ReplicaSets share: a cleared status on create, a fixed selector."""

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {}

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return validate_selector_unchanged(obj, old)


# ----------------------------------------------------------------- Deployment


def validate_strategy(strategy: Any) -> list[Cause]:
    """RollingUpdate with non-negative maxSurge/maxUnavailable (not both 0), or Recreate alone."""
    causes: list[Cause] = []
    if strategy is None:
        return causes
    if not isinstance(strategy, dict):
        return [type_invalid("spec.strategy", strategy, dict)]
    stype = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate":
        if rolling is not None:
            causes.append(forbidden("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        if not isinstance(rolling, dict):
            causes.append(required_because("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
            return causes
        p = "spec.strategy.rollingUpdate"
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        causes += validate_int_or_percent(unavailable, f"{p}.maxUnavailable")
        causes += validate_int_or_percent(surge, f"{p}.maxSurge")
        if int_or_percent_value(unavailable) == 0 and int_or_percent_value(surge) == 0:
            causes.append(invalid_value(f"{p}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"))
        if isinstance(unavailable, str) and int_or_percent_value(unavailable) > 100:
            causes.append(invalid_value(f"{p}.maxUnavailable", unavailable, "must not be greater than 100%"))
    else:
        causes.append(unsupported("spec.strategy.type", stype, STRATEGY_TYPES) if stype
                      else required("spec.strategy.type"))
    return causes


def validate_deployment_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    check_int(spec, "replicas", "spec.replicas", causes, minimum=0)
    causes += validate_selector_and_template(spec, "Deployment")
    causes += validate_strategy(spec.get("strategy"))
    min_ready = check_int(spec, "minReadySeconds", "spec.minReadySeconds", causes, minimum=0) or 0
    check_int(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit", causes, minimum=0)
    deadline = check_int(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds", causes, minimum=0)
    if deadline is not None and deadline <= min_ready:
        causes.append(invalid_value("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return causes


def deployment_row(d: Obj) -> list[Any]:
    spec, status = as_dict(d.get("spec")), as_dict(d.get("status"))
    names, images = container_cells(as_dict(as_dict(spec.get("template")).get("spec")).get("containers"))
    return [name_of(d), f"{status.get('readyReplicas') or 0}/{spec.get('replicas') or 0}",
            status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0, object_age(d),
            names, images, selector_string(spec.get("selector"))]


def _workload_columns(first: list[Column]) -> list[Column]:
    return [Column("Name", format="name", description="Name of the object, unique within its namespace."),
            *first,
            Column("Age", description="Time since the object was created."),
            Column("Containers", priority=1, description="Names of the containers in the pod template."),
            Column("Images", priority=1, description="Images of the containers in the pod template."),
            Column("Selector", priority=1, description="Labels of the pods this object manages.")]


DEPLOYMENT_PRINTER = Printer(
    columns=_workload_columns([
        Column("Ready", description="Ready pods out of the desired number."),
        Column("Up-to-date", type="integer", description="Pods running the latest template."),
        Column("Available", type="integer", description="Pods ready for at least minReadySeconds."),
    ]),
    row=deployment_row,
)


class DeploymentStrategy(WorkloadStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "replicas", 1)
        set_default(spec, "strategy", {})
        strategy = spec["strategy"]
        if isinstance(strategy, dict):
            set_default(strategy, "type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                set_default(strategy, "rollingUpdate", {})
                set_default(strategy["rollingUpdate"], "maxUnavailable", "25%")
                set_default(strategy["rollingUpdate"], "maxSurge", "25%")
        set_default(spec, "revisionHistoryLimit", 10)
        set_default(spec, "progressDeadlineSeconds", 600)
        default_template(spec)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec, causes = _spec_or_causes(obj)
        return causes if spec is None else validate_deployment_spec(spec)


# ----------------------------------------------------------------- ReplicaSet


def replicaset_row(rs: Obj) -> list[Any]:
    spec, status = as_dict(rs.get("spec")), as_dict(rs.get("status"))
    names, images = container_cells(as_dict(as_dict(spec.get("template")).get("spec")).get("containers"))
    return [name_of(rs), spec.get("replicas") or 0, status.get("replicas") or 0, status.get("readyReplicas") or 0,
            object_age(rs), names, images, format_selector(spec.get("selector"))]


REPLICASET_PRINTER = Printer(
    columns=_workload_columns([
        Column("Desired", type="integer", description="The number of pods wanted."),
        Column("Current", type="integer", description="The number of pods that exist."),
        Column("Ready", type="integer", description="The number of pods that are ready."),
    ]),
    row=replicaset_row,
)


class ReplicaSetStrategy(WorkloadStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            set_default(spec, "replicas", 1)
            default_template(spec)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec, causes = _spec_or_causes(obj)
        if spec is None:
            return causes
        check_int(spec, "replicas", "spec.replicas", causes, minimum=0)
        check_int(spec, "minReadySeconds", "spec.minReadySeconds", causes, minimum=0)
        return causes + validate_selector_and_template(spec, "ReplicaSet")


RESOURCES = [
    Resource("apps", "v1", "Deployment", "deployments", True, short_names=["deploy"], categories=["all"],
             subresources={"status", "scale"}, scale=ScaleSpec(), strategy=DeploymentStrategy(),
             printer=DEPLOYMENT_PRINTER),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, short_names=["rs"], categories=["all"],
             subresources={"status", "scale"}, scale=ScaleSpec(), strategy=ReplicaSetStrategy(),
             printer=REPLICASET_PRINTER),
]
