"""Pod (v1): status cells and `kubectl get pods` columns, and its Strategy (spec rules in podspec.py)."""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, required, set_default
from .printing import age_column, as_dict, dicts, human_age, name_column, name_of, object_age, parse_timestamp
from .validation import is_type, KindStrategy, type_invalid
from .podspec import (default_pod_spec, default_requests_from_limits, pod_qos_class,
                      validate_pod_spec, validate_pod_update)


# ======================================================================= Pod


def _restartable_init(c: Any) -> bool:
    """A sidecar: an init container that keeps running (restartPolicy Always)."""
    return isinstance(c, dict) and c.get("restartPolicy") == "Always"


def _condition_true(status: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in dicts(status.get("conditions")))


def _terminated_reason(term: dict, prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


class _PodCounts:
    """What the READY, STATUS and RESTARTS cells are computed from."""

    def __init__(self, reason: str):
        self.reason = reason
        self.ready = 0
        self.restarts = 0
        self.last_restart = None

    def count_restarts(self, cs: dict) -> None:
        if is_type(cs.get("restartCount"), int):
            self.restarts += cs["restartCount"]
        finished = parse_timestamp(as_dict(as_dict(cs.get("lastState")).get("terminated")).get("finishedAt"))
        if finished and (self.last_restart is None or finished > self.last_restart):
            self.last_restart = finished


def _pod_init_status(pod_spec: dict, status: dict, counts: _PodCounts) -> tuple[bool, int, Any]:
    """Walk init containers as kubectl does; returns (initializing, sidecar restarts, last sidecar restart)."""
    init_specs = {c.get("name"): c for c in dicts(pod_spec.get("initContainers"))}
    sidecar = _PodCounts("")
    for i, cs in enumerate(dicts(status.get("initContainerStatuses"))):
        counts.count_restarts(cs)
        restartable = _restartable_init(init_specs.get(cs.get("name")))
        if restartable:
            sidecar.count_restarts(cs)
        state = as_dict(cs.get("state"))
        term, wait = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and (term.get("exitCode") or 0) == 0:
            continue
        if restartable and cs.get("started"):
            counts.ready += 1 if cs.get("ready") else 0
            continue
        if isinstance(term, dict):
            counts.reason = _terminated_reason(term, "Init:")
        elif isinstance(wait, dict) and wait.get("reason") and wait.get("reason") != "PodInitializing":
            counts.reason = f"Init:{wait['reason']}"
        else:
            counts.reason = f"Init:{i}/{len(init_specs)}"
        return True, sidecar.restarts, sidecar.last_restart
    return False, sidecar.restarts, sidecar.last_restart


def _pod_main_status(status: dict, counts: _PodCounts) -> None:
    """The last container with something to say sets STATUS; running-and-ready ones count as ready."""
    has_running = False
    for cs in reversed(dicts(status.get("containerStatuses"))):
        counts.count_restarts(cs)
        state = as_dict(cs.get("state"))
        wait, term = as_dict(state.get("waiting")), state.get("terminated")
        if wait.get("reason"):
            counts.reason = str(wait["reason"])
        elif isinstance(term, dict):
            counts.reason = _terminated_reason(term)
        elif cs.get("ready") and isinstance(state.get("running"), dict):
            has_running = True
            counts.ready += 1
    if counts.reason == "Completed" and has_running:
        counts.reason = "Running" if _condition_true(status, "Ready") else "NotReady"


def pod_status_cells(pod: Obj) -> tuple[str, str, str]:
    """READY ("1/2"), STATUS (Running, CrashLoopBackOff, Init:0/1, Terminating, …) and RESTARTS."""
    spec, status, meta = as_dict(pod.get("spec")), as_dict(pod.get("status")), as_dict(pod.get("metadata"))
    phase = str(status.get("phase") or "")
    counts = _PodCounts(str(status.get("reason") or phase))
    for cond in dicts(status.get("conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            counts.reason = "SchedulingGated"
    total = len(dicts(spec.get("containers"))) + sum(_restartable_init(c) for c in dicts(spec.get("initContainers")))
    initializing, sidecar_restarts, sidecar_last = _pod_init_status(spec, status, counts)
    if not initializing or _condition_true(status, "Initialized"):
        counts.restarts, counts.last_restart = sidecar_restarts, sidecar_last
        _pod_main_status(status, counts)
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        counts.reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        counts.reason = "Terminating"
    restarts = str(counts.restarts)
    if counts.restarts and counts.last_restart:
        restarts += f" ({human_age(counts.last_restart)} ago)"
    return f"{counts.ready}/{total}", counts.reason, restarts


def _readiness_gates(spec: dict, status: dict) -> str:
    gates = dicts(spec.get("readinessGates"))
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in dicts(status.get("conditions"))}
    true = sum(conditions.get(g.get("conditionType")) == "True" for g in gates)
    return f"{true}/{len(gates)}"


def pod_row(pod: Obj) -> list[Any]:
    spec, status = as_dict(pod.get("spec")), as_dict(pod.get("status"))
    ready, reason, restarts = pod_status_cells(pod)
    ips = dicts(status.get("podIPs"))
    ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
    return [name_of(pod), ready, reason, restarts, object_age(pod),
            ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            _readiness_gates(spec, status)]


POD_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Ready", description="Ready containers out of all containers."),
        Column("Status", description="The aggregate state of the pod's containers."),
        Column("Restarts", description="Container restarts, and how long ago the last one was."),
        age_column(),
        Column("IP", priority=1, description="The pod's IP address."),
        Column("Node", priority=1, description="The node the pod is bound to."),
        Column("Nominated Node", priority=1, description="The node a preempting pod is waiting for."),
        Column("Readiness Gates", priority=1, description="Readiness gates that are true, out of all."),
    ],
    row=pod_row,
)


class PodStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        default_pod_spec(spec)
        set_default(spec, "enableServiceLinks", True)
        default_requests_from_limits(spec)

    def prepare_create(self, obj: Obj) -> None:
        """Clients cannot create status: a new pod is Pending, with its QoS class decided now.
        Its identity is decided now too (as Kubernetes' ServiceAccount admission does): the
        `default` ServiceAccount unless it names one (`serviceAccount` is the old name)."""
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj.get("spec"))}
        spec = obj.get("spec")
        if isinstance(spec, dict):
            sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            spec["serviceAccountName"] = sa
            if not spec.get("serviceAccount"):
                spec["serviceAccount"] = sa

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """The identity set at creation stays when an update omits it (it cannot change). (The
        default tolerations come back through the API server's admission, api/admission.py.)"""
        spec, old_spec = obj.get("spec"), old.get("spec")
        if isinstance(spec, dict) and isinstance(old_spec, dict):
            for key in ("serviceAccountName", "serviceAccount"):
                if not spec.get(key) and old_spec.get(key):
                    spec[key] = old_spec[key]

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec.containers") if spec is None else type_invalid("spec", spec, dict)]
        return validate_pod_spec(spec, "spec")

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return validate_pod_update(obj, old)

    def validate_status(self, obj: Obj, old: Obj) -> list[Cause]:
        # the kind's own rules are the spec's; a status write keeps the stored spec, which
        # was checked when written (Kubernetes' status update does not validate the spec)
        if obj.get("spec") == old.get("spec"):
            return self.validate_labels(obj)
        return self.validate(obj)
