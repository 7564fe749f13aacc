"""apps/v1 kinds: Deployments, ReplicaSets, DaemonSets and StatefulSets.

Each carries a pod template that is defaulted and validated exactly like a Pod's spec
(podspec.default_pod_spec, podspec.validate_pod_template), plus a selector that must
select that template and can never change once the object exists (the controllers
find their pods by it).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from .base import (Cause, Column, Obj, Printer, Resource, ScaleSpec, forbidden, required, set_default, strip_nulls,
                   unsupported)
from .podspec import default_pod_spec, validate_pod_template
from .pvc import default_pvc_spec, validate_pvc_spec
from .printing import (age_column, as_dict, container_cells, dicts, format_labels, format_selector, name_column,
                       name_of, object_age, selector_string)
from .validation import (KindStrategy, check_enum, check_int, check_name, get, go_selector, go_value,
                         int_or_percent_value, invalid_value, is_dns1123_label, is_dns1123_subdomain,
                         normalized_selector, required_because, selector_is_empty, selector_matches, type_invalid,
                         validate_int_or_percent, validate_label_selector, validate_object_meta)

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
    selector_ok = isinstance(sel, dict) and not selector_is_empty(sel) and not causes
    matches = (lambda labels: selector_matches(sel, labels)) if selector_ok else None
    return causes + validate_workload_template(spec.get("template"), matches, kind)


def validate_workload_template(template: Any, matches: Callable[[dict], bool] | None, kind: str) -> list[Cause]:
    """A valid always-restarting pod template whose labels the selector matches (None: the
    selector is itself invalid, so it is not compared)."""
    causes = validate_pod_template(template, "spec.template")
    if not isinstance(template, dict):
        return causes
    labels = as_dict(template.get("metadata")).get("labels") or {}
    if matches is not None and isinstance(labels, dict) and not matches(labels):
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
    """What workload kinds share: a cleared status on create, a fixed selector, and the status
    counters Kubernetes always writes (they are not omitempty: the official clients refuse a
    DaemonSet, StatefulSet or ReplicaSet whose status lacks them, even right after create)."""

    required_status: tuple[str, ...] = ()

    def default(self, obj: Obj) -> None:
        self.default_spec(obj)
        status = obj.get("status")
        for key in self.required_status:
            set_default(status, key, 0)

    def default_spec(self, obj: Obj) -> None:
        """The kind's own defaults."""

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = dict.fromkeys(self.required_status, 0)

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
    return [name_column(), *first, age_column(),
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
    def default_spec(self, obj: Obj) -> None:
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
    required_status = ("replicas",)

    def default_spec(self, obj: Obj) -> None:
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


# ----------------------------------------------------------------- DaemonSet

DAEMONSET_STRATEGY_TYPES = ["OnDelete", "RollingUpdate"]
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"


def validate_rolling_update_daemonset(rolling: Any, path: str) -> list[Cause]:
    """maxUnavailable and maxSurge: ints or percents up to 100%, exactly one of them non-zero."""
    if not isinstance(rolling, dict):
        return [type_invalid(path, rolling, dict)]
    causes: list[Cause] = []
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    causes += validate_int_or_percent(unavailable, f"{path}.maxUnavailable")
    causes += validate_int_or_percent(surge, f"{path}.maxSurge")
    for key, v in (("maxUnavailable", unavailable), ("maxSurge", surge)):
        if isinstance(v, str) and int_or_percent_value(v) > 100:
            causes.append(invalid_value(f"{path}.{key}", v, "must not be greater than 100%"))
    has_unavailable, has_surge = int_or_percent_value(unavailable) != 0, int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        causes.append(invalid_value(f"{path}.maxSurge", surge, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        causes.append(required_because(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return causes


def validate_daemonset_strategy(strategy: Any) -> list[Cause]:
    path = "spec.updateStrategy"
    if strategy is None:
        return []
    if not isinstance(strategy, dict):
        return [type_invalid(path, strategy, dict)]
    stype = strategy.get("type")
    if stype == "OnDelete":
        return []
    if stype == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return [required(f"{path}.rollingUpdate")]
        return validate_rolling_update_daemonset(rolling, f"{path}.rollingUpdate")
    return [unsupported(path, stype, ["RollingUpdate", "OnDelete"]) if stype else required(f"{path}.type")]


def daemonset_row(ds: Obj) -> list[Any]:
    spec, status = as_dict(ds.get("spec")), as_dict(ds.get("status"))
    tspec = as_dict(as_dict(spec.get("template")).get("spec"))
    names, images = container_cells(tspec.get("containers"))

    def n(key: str) -> int:
        v = status.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0
    return [name_of(ds), n("desiredNumberScheduled"), n("currentNumberScheduled"), n("numberReady"),
            n("updatedNumberScheduled"), n("numberAvailable"), format_labels(tspec.get("nodeSelector")),
            object_age(ds), names, images, format_selector(spec.get("selector"))]


DAEMONSET_PRINTER = Printer(
    columns=[Column("Name", format="name", description="Name of the object, unique within its namespace."),
             Column("Desired", type="integer", description="Nodes that should run the daemon pod."),
             Column("Current", type="integer", description="Nodes that run at least one daemon pod."),
             Column("Ready", type="integer", description="Nodes whose daemon pod is ready."),
             Column("Up-to-date", type="integer", description="Nodes that run the latest template."),
             Column("Available", type="integer", description="Nodes whose daemon pod is available."),
             Column("Node Selector", description="The nodes the daemon pods may run on."),
             Column("Age", description="Time since the object was created."),
             Column("Containers", priority=1, description="Names of the containers in the pod template."),
             Column("Images", priority=1, description="Images of the containers in the pod template."),
             Column("Selector", priority=1, description="Labels of the pods this object manages.")],
    row=daemonset_row,
)


class DaemonSetStrategy(WorkloadStrategy):
    required_status = ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady")

    def default_spec(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "updateStrategy", {})
        strategy = spec["updateStrategy"]
        if isinstance(strategy, dict):
            set_default(strategy, "type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                set_default(strategy, "rollingUpdate", {})
                set_default(strategy["rollingUpdate"], "maxUnavailable", 1)
                set_default(strategy["rollingUpdate"], "maxSurge", 0)
        set_default(spec, "revisionHistoryLimit", 10)
        default_template(spec)

    def prepare_create(self, obj: Obj) -> None:
        super().prepare_create(obj)
        _set_template_generation(obj, 1)

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """Each template change counts one more template generation (the annotation kubectl shows)."""
        old_gen = as_dict(as_dict(old.get("metadata")).get("annotations")).get(TEMPLATE_GENERATION_ANNOTATION)
        try:
            gen = int(old_gen)
        except (TypeError, ValueError):
            return
        same = strip_nulls(as_dict(obj.get("spec")).get("template")) == \
            strip_nulls(as_dict(old.get("spec")).get("template"))
        _set_template_generation(obj, gen if same else gen + 1)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec, causes = _spec_or_causes(obj)
        if spec is None:
            return causes
        causes += validate_selector_and_template(spec, "DaemonSet")
        causes += validate_daemonset_strategy(spec.get("updateStrategy"))
        for key in ("minReadySeconds", "templateGeneration", "revisionHistoryLimit"):
            check_int(spec, key, f"spec.{key}", causes, minimum=0, int64=key == "templateGeneration")
        return causes


def _set_template_generation(obj: Obj, gen: int) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    annotations = meta.get("annotations")
    if annotations is None:
        annotations = meta["annotations"] = {}
    if isinstance(annotations, dict):
        annotations[TEMPLATE_GENERATION_ANNOTATION] = str(gen)


# ----------------------------------------------------------------- StatefulSet

POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")
PVC_RETENTION_POLICIES = ["Delete", "Retain"]
STATEFULSET_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
STATEFULSET_UPDATE_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


def _claim_template_names(spec: dict) -> list[str]:
    return [str(as_dict(t.get("metadata")).get("name")) for t in dicts(spec.get("volumeClaimTemplates"))
            if as_dict(t.get("metadata")).get("name")]


def _spec_with_claim_volumes(spec: dict) -> dict:
    """The spec as its pods will be: each claim template is a volume the containers may mount."""
    template = spec.get("template")
    tspec = as_dict(template).get("spec") if isinstance(template, dict) else None
    if not isinstance(tspec, dict) or not isinstance(tspec.get("volumes", []), list):
        return spec
    have = {v.get("name") for v in dicts(tspec.get("volumes")) if isinstance(v.get("name"), str)}
    extra = [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in _claim_template_names(spec)
             if n not in have]
    if not extra:
        return spec
    out = dict(spec)
    out["template"] = dict(template)
    out["template"]["spec"] = {**tspec, "volumes": list(tspec.get("volumes") or []) + extra}
    return out


def validate_statefulset_strategy(strategy: Any) -> list[Cause]:
    path = "spec.updateStrategy"
    if strategy is None:
        return [required(path)]
    if not isinstance(strategy, dict):
        return [type_invalid(path, strategy, dict)]
    stype, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if not stype:
        return [required(path)]
    if stype == "OnDelete":
        if rolling is not None:
            return [invalid_value(f"{path}.rollingUpdate", rolling, "only allowed for updateStrategy 'RollingUpdate'")]
        return []
    if stype != "RollingUpdate":
        return [invalid_value(path, strategy, "must be 'RollingUpdate' or 'OnDelete'")]
    if rolling is None:
        return []
    if not isinstance(rolling, dict):
        return [type_invalid(f"{path}.rollingUpdate", rolling, dict)]
    causes: list[Cause] = []
    check_int(rolling, "partition", f"{path}.rollingUpdate.partition", causes, minimum=0)
    unavailable = rolling.get("maxUnavailable")
    if unavailable is not None:
        causes += validate_int_or_percent(unavailable, f"{path}.rollingUpdate.maxUnavailable")
        if int_or_percent_value(unavailable) == 0:
            causes.append(invalid_value(f"{path}.rollingUpdate.maxUnavailable", unavailable, "must be greater than 0"))
    return causes


def _validate_claim_templates(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    templates = spec.get("volumeClaimTemplates")
    if templates is None:
        return causes
    if not isinstance(templates, list):
        return [type_invalid("spec.volumeClaimTemplates", templates, list)]
    names: set[str] = set()
    for i, t in enumerate(templates):
        p = f"spec.volumeClaimTemplates[{i}]"
        if not isinstance(t, dict):
            causes.append(type_invalid(p, t, dict))
            continue
        meta = t.get("metadata")
        name = as_dict(meta).get("name")
        check_name(name, f"{p}.metadata.name", is_dns1123_subdomain, causes)
        if isinstance(name, str) and name:
            if name in names:
                causes.append(Cause(f"{p}.metadata.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
            names.add(name)
        causes += validate_object_meta(meta, f"{p}.metadata")
        causes += validate_pvc_spec(t.get("spec"), f"{p}.spec")
    return causes


def validate_statefulset_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    policy = spec.get("podManagementPolicy")
    if not policy:
        causes.append(required("spec.podManagementPolicy"))
    elif policy not in POD_MANAGEMENT_POLICIES:
        causes.append(invalid_value("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    causes += validate_statefulset_strategy(spec.get("updateStrategy"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        if not isinstance(retention, dict):
            causes.append(type_invalid("spec.persistentVolumeClaimRetentionPolicy", retention, dict))
        else:
            for key in ("whenDeleted", "whenScaled"):
                check_enum(retention.get(key), f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                           PVC_RETENTION_POLICIES, causes)
    check_int(spec, "replicas", "spec.replicas", causes, minimum=0)
    check_int(spec, "minReadySeconds", "spec.minReadySeconds", causes, minimum=0)
    check_int(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit", causes, minimum=0)
    ordinals = spec.get("ordinals")
    if ordinals is not None:
        if not isinstance(ordinals, dict):
            causes.append(type_invalid("spec.ordinals", ordinals, dict))
        else:
            check_int(ordinals, "start", "spec.ordinals.start", causes, minimum=0)
    service = get(spec, "serviceName", "spec.serviceName", str, causes)
    if service:
        causes += [invalid_value("spec.serviceName", service, m) for m in is_dns1123_label(service)]
    causes += validate_selector_and_template(_spec_with_claim_volumes(spec), "StatefulSet")
    causes += _validate_claim_templates(spec)
    return causes


def statefulset_row(sts: Obj) -> list[Any]:
    spec, status = as_dict(sts.get("spec")), as_dict(sts.get("status"))
    names, images = container_cells(as_dict(as_dict(spec.get("template")).get("spec")).get("containers"))
    return [name_of(sts), f"{status.get('readyReplicas') or 0}/{spec.get('replicas') or 0}", object_age(sts),
            names, images]


STATEFULSET_PRINTER = Printer(
    columns=[Column("Name", format="name", description="Name of the object, unique within its namespace."),
             Column("Ready", description="Ready pods out of the desired number."),
             Column("Age", description="Time since the object was created."),
             Column("Containers", priority=1, description="Names of the containers in the pod template."),
             Column("Images", priority=1, description="Images of the containers in the pod template.")],
    row=statefulset_row,
)


class StatefulSetStrategy(WorkloadStrategy):
    # availableReplicas is not omitempty in StatefulSetStatus either: `status.availableReplicas`
    # reads 0 right after create (kr8s's wait on it fails on a missing field)
    required_status = ("replicas", "availableReplicas")

    def default_spec(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "podManagementPolicy", "OrderedReady")
        set_default(spec, "updateStrategy", {})
        strategy = spec["updateStrategy"]
        if isinstance(strategy, dict):
            if not strategy.get("type"):
                strategy["type"] = "RollingUpdate"
                set_default(strategy, "rollingUpdate", {})
            if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
                set_default(strategy["rollingUpdate"], "partition", 0)
        set_default(spec, "persistentVolumeClaimRetentionPolicy", {})
        retention = spec["persistentVolumeClaimRetentionPolicy"]
        if isinstance(retention, dict):
            set_default(retention, "whenDeleted", "Retain")
            set_default(retention, "whenScaled", "Retain")
        set_default(spec, "replicas", 1)
        set_default(spec, "revisionHistoryLimit", 10)
        default_template(spec)
        for claim in dicts(spec.get("volumeClaimTemplates")):
            default_pvc_spec(claim.get("spec"))
            set_default(claim, "status", {"phase": "Pending"})

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec, causes = _spec_or_causes(obj)
        return causes if spec is None else validate_statefulset_spec(spec)

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        spec, old_spec = copy.deepcopy(as_dict(obj.get("spec"))), as_dict(old.get("spec"))
        for key in STATEFULSET_UPDATABLE:
            spec.pop(key, None)
        frozen_old = {k: v for k, v in old_spec.items() if k not in STATEFULSET_UPDATABLE}
        if strip_nulls(spec) != strip_nulls(frozen_old):
            return [forbidden("spec", STATEFULSET_UPDATE_FORBIDDEN)]
        return []


# ----------------------------------------------------------------- ControllerRevision


def controllerrevision_row(cr: Obj) -> list[Any]:
    refs = [r for r in dicts(as_dict(cr.get("metadata")).get("ownerReferences")) if r.get("controller")]
    owner = f"{str(refs[0].get('kind', '')).lower()}.{str(refs[0].get('apiVersion', '')).split('/')[0]}/" \
        f"{refs[0].get('name', '')}" if refs else "<none>"
    return [name_of(cr), owner, cr.get("revision", 0), object_age(cr)]


CONTROLLERREVISION_PRINTER = Printer(
    columns=[name_column(), Column("Controller", description="The object this revision belongs to."),
             Column("Revision", type="integer", description="The revision number."), age_column()],
    row=controllerrevision_row,
)


class ControllerRevisionStrategy(KindStrategy):
    """A snapshot of a DaemonSet's or StatefulSet's template: data and revision, no status.
    The data never changes once written (only the revision number may be raised)."""

    has_status = False
    has_spec = False

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        if obj.get("revision") is None:
            causes.append(required("revision"))
        check_int(obj, "revision", "revision", causes, minimum=0, int64=True)
        data = obj.get("data")
        if data is not None and not isinstance(data, dict):
            causes.append(type_invalid("data", data, dict))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        if strip_nulls(obj.get("data")) != strip_nulls(old.get("data")):
            return [invalid_value("data", "", "field is immutable")]
        return []


RESOURCES = [
    Resource("apps", "v1", "Deployment", "deployments", True, short_names=["deploy"], categories=["all"],
             subresources={"status", "scale"}, scale=ScaleSpec(), strategy=DeploymentStrategy(),
             printer=DEPLOYMENT_PRINTER),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, short_names=["rs"], categories=["all"],
             subresources={"status", "scale"}, scale=ScaleSpec(), strategy=ReplicaSetStrategy(),
             printer=REPLICASET_PRINTER),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True, short_names=["ds"], categories=["all"],
             subresources={"status"}, strategy=DaemonSetStrategy(), printer=DAEMONSET_PRINTER),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, short_names=["sts"], categories=["all"],
             subresources={"status", "scale"}, scale=ScaleSpec(), strategy=StatefulSetStrategy(),
             printer=STATEFULSET_PRINTER),
    Resource("apps", "v1", "ControllerRevision", "controllerrevisions", True, strategy=ControllerRevisionStrategy(),
             printer=CONTROLLERREVISION_PRINTER),
]
