"""Core group (v1) kinds: defaults, validation and `kubectl get` columns of each.

Pod spec defaults live here (as in Kubernetes' core/v1 defaulting) because the
templates of Deployments and ReplicaSets use them too; pod spec *validation* is shared
from validation.py.
"""
from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, duplicate, forbidden, required, unsupported
from .printing import (as_dict, as_list, dicts, format_labels, human_age, name_of,
                       object_age, parse_timestamp)
from .quantity import QuantityError, parse_quantity
from .validation import (KindStrategy, PROTOCOLS, TAINT_EFFECTS, check_enum, check_int, check_name, get,
                         invalid_value, is_config_key, is_dns1123_label, is_dns1123_subdomain, is_port_name,
                         is_port_number, is_qualified_name, is_type, required_because, too_long, type_invalid,
                         validate_label_selector, validate_labels, validate_pod_spec)


class NoStatus(KindStrategy):
    """Kinds without a status subresource or generation (Event, ConfigMap, Secret)."""

    has_status = False
    has_spec = False


def set_default(d: Any, key: str, value: Any) -> None:
    """Set d[key] when d is a mapping and the key is absent or null."""
    if isinstance(d, dict) and d.get(key) is None:
        d[key] = value


def _name_column() -> Column:
    return Column("Name", format="name", description="Name of the object, unique within its namespace.")


def _age_column() -> Column:
    return Column("Age", description="Time since the object was created.")


# ======================================================================= pod spec defaults


def default_image_pull_policy(image: str) -> str:
    """Always for ":latest" or an untagged image (it may move), else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"  # pinned by digest
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        set_default(probe, key, value)
    _default_http_get(probe.get("httpGet"))


def _default_http_get(action: Any) -> None:
    set_default(action, "path", "/")
    set_default(action, "scheme", "HTTP")


def default_container(c: dict) -> None:
    image = c.get("image")
    set_default(c, "imagePullPolicy", default_image_pull_policy(image) if isinstance(image, str) and image
                else "IfNotPresent")
    set_default(c, "terminationMessagePath", "/dev/termination-log")
    set_default(c, "terminationMessagePolicy", "File")
    for port in dicts(c.get("ports")):
        set_default(port, "protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        default_probe(c.get(probe))
    for hook in as_dict(c.get("lifecycle")).values():
        _default_http_get(as_dict(hook).get("httpGet"))
    for ev in dicts(c.get("env")):
        set_default(as_dict(ev.get("valueFrom")).get("fieldRef"), "apiVersion", "v1")


_VOLUME_FILE_SOURCES = ("secret", "configMap", "projected", "downwardAPI")


def default_volume(v: dict) -> None:
    """A volume with no source is an emptyDir; projected files default to mode 0644."""
    if not any(val is not None for k, val in v.items() if k != "name"):
        v["emptyDir"] = {}
    for src in _VOLUME_FILE_SOURCES:
        set_default(v.get(src), "defaultMode", 0o644)


def default_pod_spec(spec: Any) -> None:
    """PodSpec defaults, for Pods and for the templates of workload kinds alike."""
    if not isinstance(spec, dict):
        return
    set_default(spec, "restartPolicy", "Always")
    set_default(spec, "dnsPolicy", "ClusterFirst")
    set_default(spec, "terminationGracePeriodSeconds", 30)
    set_default(spec, "schedulerName", "default-scheduler")
    set_default(spec, "securityContext", {})
    for c in dicts(spec.get("containers")) + dicts(spec.get("initContainers")):
        default_container(c)
    for v in dicts(spec.get("volumes")):
        default_volume(v)


def default_requests_from_limits(spec: dict) -> None:
    """A limit without a request means request == limit (Pods only, not templates)."""
    for c in dicts(spec.get("containers")) + dicts(spec.get("initContainers")):
        res = c.get("resources")
        if not isinstance(res, dict) or not isinstance(res.get("limits"), dict) or not res["limits"]:
            continue
        requests = res.get("requests")
        if requests is None:
            requests = res["requests"] = {}
        if isinstance(requests, dict):
            for name, q in res["limits"].items():
                requests.setdefault(name, q)


# ======================================================================= pod QoS


def _positive(q: Any) -> bool:
    try:
        return parse_quantity(q) > 0
    except ValueError:
        return False


def pod_qos_class(spec: Any) -> str:
    """Guaranteed (cpu and memory limits everywhere, equal to requests), BestEffort (none), else Burstable."""
    spec = as_dict(spec)
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in dicts(spec.get("containers")) + dicts(spec.get("initContainers")):
        res = as_dict(c.get("resources"))
        for name, q in as_dict(res.get("requests")).items():
            if name in ("cpu", "memory") and _positive(q):
                requests[name] = requests.get(name, 0) + parse_quantity(q)
        found = set()
        for name, q in as_dict(res.get("limits")).items():
            if name in ("cpu", "memory") and _positive(q):
                found.add(name)
                limits[name] = limits.get(name, 0) + parse_quantity(q)
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(k) == v for k, v in requests.items()) and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# ======================================================================= pod updates

POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def strip_nulls(v: Any) -> Any:
    """JSON null and an absent key mean the same; compare without the nulls."""
    if isinstance(v, dict):
        return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_nulls(x) for x in v]
    return v


def _copy_key(dst: dict, src: dict, key: str) -> None:
    if key in src:
        dst[key] = copy.deepcopy(src[key])
    else:
        dst.pop(key, None)


def changed_paths(a: Any, b: Any, path: str, out: list[str]) -> None:
    """The innermost paths where two JSON values differ (to tell the user what to undo)."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            changed_paths(a.get(k), b.get(k), f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            changed_paths(x, y, f"{path}[{i}]", out)
    else:
        out.append(path)


def _toleration_key(t: Any) -> Any:
    t = dict(as_dict(t))
    t.pop("tolerationSeconds", None)
    if not t.get("operator"):
        t["operator"] = "Equal"
    return strip_nulls(t)


def _check_tolerations_update(new: dict, old: dict) -> list[Cause]:
    """Tolerations may be added, and an existing one may change only its tolerationSeconds."""
    new_keys = [_toleration_key(t) for t in as_list(new.get("tolerations"))]
    for t in as_list(old.get("tolerations")):
        if _toleration_key(t) not in new_keys:
            return [forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")]
    return []


def _check_active_deadline_update(new: dict, old: dict) -> list[Cause]:
    """activeDeadlineSeconds can be set or shortened, never lengthened or removed."""
    nv, ov = new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    path = "spec.activeDeadlineSeconds"
    if nv is None:
        return [invalid_value(path, None, "must not update from a positive integer to nil value")] if ov is not None else []
    if is_type(nv, int) and is_type(ov, int) and nv > ov:
        return [invalid_value(path, nv, "must be less than or equal to previous value")]
    return []


def _check_node_name_update(new: dict, old: dict) -> list[Cause]:
    """Binding sets nodeName once; moving a bound pod to another node is not an update."""
    ov, nv = old.get("nodeName"), new.get("nodeName")
    if ov and nv != ov:
        return [invalid_value("spec.nodeName", nv, "field is immutable once the pod is bound to a node")]
    return []


def _spec_with_allowed_changes_undone(new: dict, old: dict, tolerations_ok: bool) -> dict:
    """The new spec with every permitted change reverted; it must then equal the old spec."""
    munged = copy.deepcopy(new)
    for key in ("containers", "initContainers"):
        for nc, oc in zip(dicts(munged.get(key)), dicts(old.get(key))):
            _copy_key(nc, oc, "image")
    for key in ("activeDeadlineSeconds", "nodeName"):
        _copy_key(munged, old, key)
    if tolerations_ok:
        _copy_key(munged, old, "tolerations")
    old_grace = old.get("terminationGracePeriodSeconds")
    if is_type(old_grace, int) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    return munged


def validate_pod_update(new_pod: Obj, old_pod: Obj) -> list[Cause]:
    """A pod's spec is fixed once created, but for images, deadlines and added tolerations."""
    new, old = as_dict(new_pod.get("spec")), as_dict(old_pod.get("spec"))
    tolerations = _check_tolerations_update(new, old)
    causes = _check_active_deadline_update(new, old) + tolerations + _check_node_name_update(new, old)
    munged = strip_nulls(_spec_with_allowed_changes_undone(new, old, not tolerations))
    old_clean = strip_nulls(old)
    if munged != old_clean:
        changed: list[str] = []
        changed_paths(old_clean, munged, "spec", changed)
        shown = ", ".join(changed[:5]) + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else "")
        causes.append(forbidden("spec", f"{POD_UPDATE_FORBIDDEN}; changed: {shown}"))
    return causes


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
        _name_column(),
        Column("Ready", description="Ready containers out of all containers."),
        Column("Status", description="The aggregate state of the pod's containers."),
        Column("Restarts", description="Container restarts, and how long ago the last one was."),
        _age_column(),
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
        """The identity set at creation stays when an update omits it (it cannot change)."""
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


# ======================================================================= Namespace


def namespace_row(ns: Obj) -> list[Any]:
    return [name_of(ns), as_dict(ns.get("status")).get("phase", ""), object_age(ns)]


class NamespaceStrategy(KindStrategy):
    """Namespaces: Active on create, held by the "kubernetes" finalizer until their content is gone."""

    def default(self, obj: Obj) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            labels = meta.get("labels")
            if labels is None:
                labels = meta["labels"] = {}
            if isinstance(labels, dict):
                labels["kubernetes.io/metadata.name"] = meta["name"]

    def prepare_create(self, obj: Obj) -> None:
        """A new namespace is Active and carries the "kubernetes" finalizer (the namespace controller's)."""
        obj["status"] = {"phase": "Active"}
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        finalizers = spec.get("finalizers")
        if not isinstance(finalizers, list):
            finalizers = spec["finalizers"] = []
        if "kubernetes" not in finalizers:
            finalizers.append("kubernetes")

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """A write that leaves out spec.finalizers keeps them; an explicit list (even []) replaces them,
        which is how the namespace controller releases the namespace (there is no /finalize here)."""
        old_finalizers = as_dict(old.get("spec")).get("finalizers")
        if old_finalizers is None:
            return
        spec = obj.get("spec")
        if spec is None:
            spec = obj["spec"] = {}
        if isinstance(spec, dict) and spec.get("finalizers") is None:
            spec["finalizers"] = copy.deepcopy(old_finalizers)

    def holds_deletion(self, obj: Obj) -> bool:
        return bool(as_dict(obj.get("spec")).get("finalizers"))

    def begin_deletion(self, obj: Obj) -> None:
        status = obj.get("status")
        obj["status"] = {**(status if isinstance(status, dict) else {}), "phase": "Terminating"}

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []  # the name (a DNS label) is checked by the API server
        spec = get(obj, "spec", "spec", dict, causes) or {}
        for i, f in enumerate(get(spec, "finalizers", "spec.finalizers", list, causes) or []):
            check_name(f, f"spec.finalizers[{i}]", is_qualified_name, causes)
        return causes


NAMESPACE_PRINTER = Printer(
    columns=[_name_column(), Column("Status", description="The phase of the namespace."), _age_column()],
    row=namespace_row,
)


# ======================================================================= Node

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_roles(node: Obj) -> str:
    """Roles from node-role.kubernetes.io/<role> labels (and the older kubernetes.io/role)."""
    roles = set()
    for k, v in as_dict(as_dict(node.get("metadata")).get("labels")).items():
        if k.startswith(NODE_ROLE_PREFIX) and k[len(NODE_ROLE_PREFIX):]:
            roles.add(k[len(NODE_ROLE_PREFIX):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def node_status_cell(node: Obj) -> str:
    ready = [c for c in dicts(as_dict(node.get("status")).get("conditions")) if c.get("type") == "Ready"]
    parts = ["Unknown" if not ready else "Ready" if ready[-1].get("status") == "True" else "NotReady"]
    if as_dict(node.get("spec")).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def _node_address(node: Obj, kind: str) -> str:
    for a in dicts(as_dict(node.get("status")).get("addresses")):
        if a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def node_row(node: Obj) -> list[Any]:
    info = as_dict(as_dict(node.get("status")).get("nodeInfo"))
    return [name_of(node), node_status_cell(node), node_roles(node), object_age(node),
            info.get("kubeletVersion", ""),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


NODE_PRINTER = Printer(
    columns=[
        _name_column(),
        Column("Status", description="Ready, NotReady or Unknown, and SchedulingDisabled when cordoned."),
        Column("Roles", description="Roles from node-role.kubernetes.io/* labels."),
        _age_column(),
        Column("Version", description="The kubelet (agent) version."),
        Column("Internal-IP", priority=1, description="The node's internal address."),
        Column("External-IP", priority=1, description="The node's external address."),
        Column("OS-Image", priority=1, description="The operating system."),
        Column("Kernel-Version", priority=1, description="The kernel version."),
        Column("Container-Runtime", priority=1, description="The container runtime and its version."),
    ],
    row=node_row,
)


class NodeStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        """Allocatable defaults to capacity when the agent does not report reservations."""
        status = obj.get("status")
        if isinstance(status, dict) and isinstance(status.get("capacity"), dict):
            set_default(status, "allocatable", dict(status["capacity"]))

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes) or {}
        get(spec, "unschedulable", "spec.unschedulable", bool, causes)
        seen: set[tuple] = set()
        for i, t in enumerate(get(spec, "taints", "spec.taints", list, causes) or []):
            p = f"spec.taints[{i}]"
            if not isinstance(t, dict):
                causes.append(type_invalid(p, t, dict))
                continue
            check_name(t.get("key"), f"{p}.key", is_qualified_name, causes)
            check_enum(t.get("effect"), f"{p}.effect", TAINT_EFFECTS, causes)
            if (t.get("key"), t.get("effect")) in seen:
                causes.append(duplicate(p, f"{t.get('key')}:{t.get('effect')}"))
            seen.add((t.get("key"), t.get("effect")))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        """podCIDR and providerID are assigned once; routes and clouds depend on them."""
        causes = []
        new_spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        for key in ("podCIDR", "providerID"):
            if old_spec.get(key) and new_spec.get(key) != old_spec.get(key):
                causes.append(forbidden(f"spec.{key}", f'node updates may not change {key} except from "" to valid'))
        return causes


# ======================================================================= Event

CLUSTER_SCOPED_KINDS = {"Node", "Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}


def _event_source(ev: Obj) -> str:
    src = as_dict(ev.get("source"))
    component = src.get("component") or ev.get("reportingComponent") or ""
    host = src.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def event_row(ev: Obj) -> list[Any]:
    """LAST SEEN, TYPE, REASON, OBJECT ("pod/web-1"), MESSAGE, and the wide columns between."""
    first = human_age(ev.get("firstTimestamp")) if ev.get("firstTimestamp") else human_age(ev.get("eventTime"))
    last = human_age(ev.get("lastTimestamp")) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    series = ev.get("series")
    if isinstance(series, dict):
        last = human_age(series.get("lastObservedTime"))
        count = series.get("count") or count
    obj = as_dict(ev.get("involvedObject"))
    kind = str(obj.get("kind", "")).lower()
    target = f"{kind}/{obj['name']}" if obj.get("name") else kind
    return [last, ev.get("type", ""), ev.get("reason", ""), target, obj.get("fieldPath", ""),
            _event_source(ev), str(ev.get("message", "")).strip(), first, count, name_of(ev)]


EVENT_PRINTER = Printer(
    columns=[
        Column("Last Seen", description="When the event last happened."),
        Column("Type", description="Normal or Warning."),
        Column("Reason", description="Why the event happened, in one word."),
        Column("Object", description="The object the event is about."),
        Column("Subobject", priority=1, description="The part of the object, e.g. a container."),
        Column("Source", priority=1, description="The component that reported the event."),
        Column("Message", description="What happened."),
        Column("First Seen", priority=1, description="When the event first happened."),
        Column("Count", type="integer", priority=1, description="How many times it happened."),
        Column("Name", format="name", priority=1, description="The name of the event object."),
    ],
    row=event_row,
)


class EventStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        involved = obj.get("involvedObject")
        if not involved:
            return [required("involvedObject")]
        if not isinstance(involved, dict):
            return [type_invalid("involvedObject", involved, dict)]
        event_ns = as_dict(obj.get("metadata")).get("namespace") or ""
        obj_ns = involved.get("namespace") or ""
        if obj_ns and obj_ns != event_ns and involved.get("kind") not in CLUSTER_SCOPED_KINDS:
            causes.append(invalid_value("involvedObject.namespace", obj_ns, "does not match event.namespace"))
        check_int(obj, "count", "count", causes, minimum=0)
        return causes


# ======================================================================= ConfigMap and Secret

MAX_DATA_BYTES = 1024 * 1024  # what fits in one etcd value, with room for the rest of the object


def _decode_base64(value: str) -> bytes:
    """Strict base64 as Kubernetes' JSON decoding accepts it (line breaks tolerated)."""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)


def _validate_data_keys(data: dict, path: str) -> list[Cause]:
    causes = []
    for key in data:
        causes += [invalid_value(f"{path}[{key}]", key, m) for m in is_config_key(key)]
    return causes


def _validate_binary_map(data: dict, path: str, causes: list[Cause]) -> int:
    """Base64 values of a Secret's data or a ConfigMap's binaryData; returns the decoded size."""
    size = 0
    for key, value in data.items():
        if not isinstance(value, str):
            causes.append(type_invalid(f"{path}[{key}]", value, str))
            continue
        try:
            size += len(_decode_base64(value))
        except (binascii.Error, ValueError) as e:
            causes.append(invalid_value(f"{path}[{key}]", "<value not shown>", f"must be valid base64 data ({e})"))
    return size


def _check_immutable(obj: Obj, old: Obj, data_keys: tuple[str, ...]) -> list[Cause]:
    """Once `immutable: true`, neither the data nor the flag may change."""
    if old.get("immutable") is not True:
        return []
    causes = []
    if obj.get("immutable") is not True:
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in data_keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    return causes


def configmap_row(cm: Obj) -> list[Any]:
    return [name_of(cm), len(as_dict(cm.get("data"))) + len(as_dict(cm.get("binaryData"))), object_age(cm)]


CONFIGMAP_PRINTER = Printer(
    columns=[_name_column(), Column("Data", type="integer", description="Number of keys."), _age_column()],
    row=configmap_row,
)


class ConfigMapStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        data = get(obj, "data", "data", dict, causes) or {}
        binary = get(obj, "binaryData", "binaryData", dict, causes) or {}
        causes += _validate_data_keys(data, "data") + _validate_data_keys(binary, "binaryData")
        size = 0
        for key, value in data.items():
            if not isinstance(value, str):
                causes.append(type_invalid(f"data[{key}]", value, str))
            else:
                size += len(key) + len(value.encode())
        for key in binary:
            if key in data:
                causes.append(invalid_value("binaryData", key, "duplicate of key present in data"))
            size += len(key)
        size += _validate_binary_map(binary, "binaryData", causes)
        get(obj, "immutable", "immutable", bool, causes)
        if size > MAX_DATA_BYTES:
            causes.append(too_long("", MAX_DATA_BYTES))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return _check_immutable(obj, old, ("data", "binaryData"))


SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ["tls.crt", "tls.key"],
    "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
    "kubernetes.io/dockercfg": [".dockercfg"],
    "kubernetes.io/ssh-auth": ["ssh-privatekey"],
}


def secret_row(s: Obj) -> list[Any]:
    return [name_of(s), s.get("type", ""), len(as_dict(s.get("data"))), object_age(s)]


SECRET_PRINTER = Printer(
    columns=[_name_column(), Column("Type", description="The type of secret."),
             Column("Data", type="integer", description="Number of keys."), _age_column()],
    row=secret_row,
)


class SecretStrategy(NoStatus):
    def default(self, obj: Obj) -> None:
        """type Opaque; stringData is a write-only convenience, folded into base64 data."""
        set_default(obj, "type", "Opaque")
        string_data = obj.get("stringData")
        if not isinstance(string_data, dict):
            return
        data = obj.get("data")
        if data is None:
            data = obj["data"] = {}
        if not isinstance(data, dict):
            return
        leftover = {}
        for key, value in string_data.items():
            if isinstance(value, str):
                data[key] = base64.b64encode(value.encode()).decode()
            else:
                leftover[key] = value  # validation reports these
        if leftover:
            obj["stringData"] = leftover
        else:
            del obj["stringData"]

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        for key, value in as_dict(obj.get("stringData")).items():
            causes.append(type_invalid(f"stringData[{key}]", value, str))
        data = get(obj, "data", "data", dict, causes) or {}
        causes += _validate_data_keys(data, "data")
        size = _validate_binary_map(data, "data", causes)
        if size > MAX_DATA_BYTES:
            causes.append(too_long("data", MAX_DATA_BYTES))
        stype = get(obj, "type", "type", str, causes)
        for key in SECRET_REQUIRED_KEYS.get(stype or "", []):
            if key not in data:
                causes.append(required(f"data[{key}]"))
        if stype == "kubernetes.io/basic-auth" and not ({"username", "password"} & set(data)):
            causes.append(required_because("data", "at least one of `username` or `password` is required"))
        get(obj, "immutable", "immutable", bool, causes)
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes = []
        if old.get("type") and obj.get("type") != old.get("type"):
            causes.append(invalid_value("type", obj.get("type"), "field is immutable"))
        return causes + _check_immutable(obj, old, ("data",))


# ======================================================================= Service

SERVICE_TYPES = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
SESSION_AFFINITIES = ["None", "ClientIP"]


def _service_external_ip(svc: Obj) -> str:
    spec, status = as_dict(svc.get("spec")), as_dict(svc.get("status"))
    external = [str(ip) for ip in as_list(spec.get("externalIPs"))]
    stype = spec.get("type") or "ClusterIP"
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        ingress = dicts(as_dict(status.get("loadBalancer")).get("ingress"))
        lb = sorted({str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join(lb + external) or "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports_cell(ports: Any) -> str:
    """"80/TCP", "80:30080/TCP", comma-joined; "<none>" when there are none."""
    parts = []
    for p in dicts(ports):
        proto = p.get("protocol") or "TCP"
        parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return ",".join(parts) or "<none>"


def service_row(svc: Obj) -> list[Any]:
    spec = as_dict(svc.get("spec"))
    ips = as_list(spec.get("clusterIPs"))
    cluster_ip = (ips[0] if ips else None) or spec.get("clusterIP") or "<none>"
    return [name_of(svc), spec.get("type") or "ClusterIP", cluster_ip, _service_external_ip(svc),
            service_ports_cell(spec.get("ports")), object_age(svc), format_labels(spec.get("selector"))]


SERVICE_PRINTER = Printer(
    columns=[
        _name_column(),
        Column("Type", description="ClusterIP, NodePort, LoadBalancer or ExternalName."),
        Column("Cluster-IP", description="The virtual IP of the service."),
        Column("External-IP", description="Addresses reachable from outside the cluster."),
        Column("Port(s)", description="Service ports, with node ports."),
        _age_column(),
        Column("Selector", priority=1, description="Labels of the pods behind the service."),
    ],
    row=service_row,
)


IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
_NOT_FOR_EXTERNAL_NAME = "may not be set for ExternalName services"


def _is_ip(v: Any) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _validate_cluster_ip(spec: dict, stype: str, causes: list[Cause]) -> None:
    ip = get(spec, "clusterIP", "spec.clusterIP", str, causes)
    if not ip:
        return
    if stype == "ExternalName":
        causes.append(forbidden("spec.clusterIP", _NOT_FOR_EXTERNAL_NAME))
    elif ip == "None":
        if stype in ("NodePort", "LoadBalancer"):
            causes.append(invalid_value("spec.clusterIP", ip, f"may not be set to 'None' for {stype} services"))
    elif not _is_ip(ip):
        causes.append(invalid_value("spec.clusterIP", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))


def _validate_ip_fields(spec: dict, stype: str, causes: list[Cause]) -> None:
    """clusterIPs, ipFamilies and ipFamilyPolicy on their own; the allocator checks them against the cluster."""
    ips = get(spec, "clusterIPs", "spec.clusterIPs", list, causes)
    families = get(spec, "ipFamilies", "spec.ipFamilies", list, causes)
    policy = spec.get("ipFamilyPolicy")
    if stype == "ExternalName":
        for key, present in (("clusterIPs", bool(ips)), ("ipFamilies", bool(families)),
                             ("ipFamilyPolicy", policy is not None)):
            if present:
                causes.append(forbidden(f"spec.{key}", _NOT_FOR_EXTERNAL_NAME))
        return
    seen: set[str] = set()
    for i, fam in enumerate(families or []):
        if fam not in IP_FAMILIES:
            causes.append(unsupported(f"spec.ipFamilies[{i}]", fam, IP_FAMILIES))
        elif fam in seen:
            causes.append(duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(str(fam))
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        causes.append(unsupported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    if not ips:
        return
    bad = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad = True
                causes.append(invalid_value("spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        if not isinstance(ip, str) or not _is_ip(ip):
            bad = True
            causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or "
                                                                     "2001:db8::ffff)"))
    if len(ips) > 2:
        causes.append(invalid_value("spec.clusterIPs", ips, "may only hold up to 2 values"))
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and ips[0] != cluster_ip:
        causes.append(invalid_value("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    if bad:
        return
    if len(ips) == 2 and ipaddress.ip_address(ips[0]).version == ipaddress.ip_address(ips[1]).version:
        causes.append(invalid_value("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))
    if ips != ["None"]:
        for i, (ip, fam) in enumerate(zip(ips, families or [])):
            version = ipaddress.ip_address(ip).version
            if (fam == "IPv4" and version == 6) or (fam == "IPv6" and version == 4):
                causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip,
                                            f"expected an {fam} value as indicated by `ipFamilies[{i}]`"))


def _validate_service_port(port: dict, p: str, stype: str, multiple: bool, causes: list[Cause]) -> None:
    name = port.get("name")
    if multiple and not name:
        causes.append(required(f"{p}.name"))
    elif name:
        check_name(name, f"{p}.name", is_dns1123_label, causes)
    number = port.get("port")
    if not is_type(number, int):
        causes.append(required(f"{p}.port") if number is None else type_invalid(f"{p}.port", number, int))
    else:
        causes += [invalid_value(f"{p}.port", number, m) for m in is_port_number(number)]
    check_enum(port.get("protocol"), f"{p}.protocol", PROTOCOLS, causes)
    target = port.get("targetPort")
    if is_type(target, int):
        causes += [invalid_value(f"{p}.targetPort", target, m) for m in is_port_number(target)]
    elif isinstance(target, str):
        causes += [invalid_value(f"{p}.targetPort", target, m) for m in is_port_name(target)]
    elif target is not None:
        causes.append(type_invalid(f"{p}.targetPort", target, int))
    node_port = get(port, "nodePort", f"{p}.nodePort", int, causes)
    if node_port:
        if stype == "ClusterIP":
            causes.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
        else:
            causes += [invalid_value(f"{p}.nodePort", node_port, m) for m in is_port_number(node_port)]


def _validate_service_ports(spec: dict, stype: Any, causes: list[Cause]) -> None:
    ports = get(spec, "ports", "spec.ports", list, causes)
    headless = spec.get("clusterIP") == "None"
    if spec.get("ports") in (None, []) and stype != "ExternalName" and not headless:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    pairs: set[tuple] = set()
    node_ports: set[tuple] = set()
    for i, port in enumerate(ports or []):
        p = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(type_invalid(p, port, dict))
            continue
        _validate_service_port(port, p, stype, len(ports) > 1, causes)
        name = port.get("name")
        if isinstance(name, str) and name:
            if name in names:
                causes.append(duplicate(f"{p}.name", name))
            names.add(name)
        number, proto = port.get("port"), port.get("protocol") or "TCP"
        if is_type(number, int):
            if (number, proto) in pairs:
                causes.append(duplicate(p, f"{number}/{proto}"))
            pairs.add((number, proto))
        node_port = port.get("nodePort")
        if is_type(node_port, int) and node_port:
            if (node_port, proto) in node_ports:
                causes.append(Cause(f"{p}.nodePort", f"Duplicate value: {node_port}", "FieldValueDuplicate"))
            node_ports.add((node_port, proto))


def _needs_health_check_port(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _validate_traffic_fields(spec: dict, stype: Any, causes: list[Cause]) -> None:
    external = stype in ("NodePort", "LoadBalancer")
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        if not external and not spec.get("externalIPs"):
            causes.append(invalid_value("spec.externalTrafficPolicy", etp,
                                        "may only be set for externally-accessible services"))
        else:
            check_enum(etp, "spec.externalTrafficPolicy", TRAFFIC_POLICIES, causes)
    itp = spec.get("internalTrafficPolicy")
    if itp is not None:
        check_enum(itp, "spec.internalTrafficPolicy", TRAFFIC_POLICIES, causes)
    hc = get(spec, "healthCheckNodePort", "spec.healthCheckNodePort", int, causes)
    if hc:
        if not _needs_health_check_port(spec):
            causes.append(invalid_value("spec.healthCheckNodePort", hc, "may only be set when `type` is 'LoadBalancer' "
                                                                       "and `externalTrafficPolicy` is 'Local'"))
        else:
            causes += [invalid_value("spec.healthCheckNodePort", hc, m) for m in is_port_number(hc)]
    alloc = get(spec, "allocateLoadBalancerNodePorts", "spec.allocateLoadBalancerNodePorts", bool, causes)
    if alloc is not None and stype != "LoadBalancer":
        causes.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    for i, ip in enumerate(get(spec, "externalIPs", "spec.externalIPs", list, causes) or []):
        if not isinstance(ip, str) or not _is_ip(ip):
            causes.append(invalid_value(f"spec.externalIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 "
                                                                      "or 2001:db8::ffff)"))


def validate_service_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    stype = spec.get("type")
    check_enum(stype, "spec.type", SERVICE_TYPES, causes)
    check_enum(spec.get("sessionAffinity"), "spec.sessionAffinity", SESSION_AFFINITIES, causes)
    _validate_cluster_ip(spec, stype, causes)
    _validate_ip_fields(spec, stype, causes)
    if stype == "ExternalName":
        ext = spec.get("externalName")
        check_name(ext if not isinstance(ext, str) else ext.rstrip("."), "spec.externalName", is_dns1123_subdomain, causes)
    _validate_service_ports(spec, stype, causes)
    _validate_traffic_fields(spec, stype, causes)
    causes += validate_labels(spec.get("selector"), "spec.selector")
    return causes


def normalize_cluster_ips(spec: dict) -> None:
    """clusterIP and clusterIPs[0] say the same thing; a client may set either (as Kubernetes allows)."""
    if spec.get("type") == "ExternalName":
        return
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if isinstance(ip, str) and ip and ips in (None, []):
        spec["clusterIPs"] = [ip]
    elif not ip and isinstance(ips, list) and ips and isinstance(ips[0], str):
        spec["clusterIP"] = ips[0]


def _keep_allocated(spec: dict, old_spec: dict) -> None:
    """A PUT that leaves out what the server allocated (clusterIP, node ports) keeps it (kubectl replace)."""
    if spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
        return
    if not spec.get("clusterIP") and not spec.get("clusterIPs"):
        for key in ("clusterIP", "clusterIPs"):
            if old_spec.get(key):
                spec[key] = copy.deepcopy(old_spec[key])
    for key in ("ipFamilies", "ipFamilyPolicy"):
        if spec.get(key) is None and old_spec.get(key) is not None:
            spec[key] = copy.deepcopy(old_spec[key])
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        old_node_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort")
                          for p in dicts(old_spec.get("ports")) if p.get("nodePort")}
        for p in dicts(spec.get("ports")):
            key = (p.get("port"), p.get("protocol"))
            if not p.get("nodePort") and key in old_node_ports:
                p["nodePort"] = old_node_ports[key]
    if _needs_health_check_port(spec) and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _drop_type_dependent(spec: dict, old_spec: dict) -> None:
    """After a type change, values that only the old type used go, unless the client changed them too."""
    stype = spec.get("type")

    def drop_if_unchanged(key: str) -> None:
        if key in spec and spec.get(key) == old_spec.get(key):
            del spec[key]

    if stype == "ExternalName" and old_spec.get("type") != "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            drop_if_unchanged(key)
    if stype not in ("NodePort", "LoadBalancer"):  # (allocateLoadBalancerNodePorts: false keeps what is held)
        old_node_ports = {p.get("port"): p.get("nodePort") for p in dicts(old_spec.get("ports"))}
        for p in dicts(spec.get("ports")):
            if p.get("nodePort") and old_node_ports.get(p.get("port")) == p.get("nodePort"):
                del p["nodePort"]
    if stype not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
        drop_if_unchanged("externalTrafficPolicy")
    if not _needs_health_check_port(spec):
        drop_if_unchanged("healthCheckNodePort")
    if stype != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            drop_if_unchanged(key)


class ServiceStrategy(KindStrategy):
    """Stored and checked here; cluster IPs and node ports come from api/admission.ServiceAllocator."""

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "type", "ClusterIP")
        set_default(spec, "sessionAffinity", "None")
        if spec.get("type") != "ExternalName":
            set_default(spec, "internalTrafficPolicy", "Cluster")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            set_default(spec, "externalTrafficPolicy", "Cluster")
        if spec.get("type") == "LoadBalancer":
            set_default(spec, "allocateLoadBalancerNodePorts", True)
        for port in dicts(spec.get("ports")):
            set_default(port, "protocol", "TCP")
            if port.get("targetPort") in (None, "", 0):
                port["targetPort"] = port.get("port")
        normalize_cluster_ips(spec)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        spec, old_spec = obj.get("spec"), as_dict(old.get("spec"))
        if not isinstance(spec, dict):
            return
        _drop_type_dependent(spec, old_spec)
        _keep_allocated(spec, old_spec)
        normalize_cluster_ips(spec)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec") if spec is None else type_invalid("spec", spec, dict)]
        return validate_service_spec(spec)

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        if spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
            return []
        old_ip, new_ip = old_spec.get("clusterIP"), spec.get("clusterIP")
        if old_ip and new_ip != old_ip:
            return [invalid_value("spec.clusterIP", new_ip, "field is immutable")]
        causes = []
        old_ips, new_ips = as_list(old_spec.get("clusterIPs")), as_list(spec.get("clusterIPs"))
        if old_ips and old_ips != new_ips[:len(old_ips)]:
            causes.append(invalid_value("spec.clusterIPs[0]", new_ips, "may not change once set"))
        old_fams, new_fams = as_list(old_spec.get("ipFamilies")), as_list(spec.get("ipFamilies"))
        if old_ip != "None" and old_fams and old_fams != new_fams[:len(old_fams)]:
            causes.append(invalid_value("spec.ipFamilies[0]", new_fams, "may not change once set"))
        return causes


# ======================================================================= ServiceAccount


def serviceaccount_row(sa: Obj) -> list[Any]:
    return [name_of(sa), len(as_list(sa.get("secrets"))), object_age(sa)]


SERVICEACCOUNT_PRINTER = Printer(
    columns=[_name_column(), Column("Secrets", description="Secrets the service account may use."), _age_column()],
    row=serviceaccount_row,
)


def _validate_object_refs(refs: Any, path: str, causes: list[Cause]) -> None:
    if refs is None:
        return
    if not isinstance(refs, list):
        causes.append(type_invalid(path, refs, list))
        return
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            causes.append(type_invalid(f"{path}[{i}]", ref, dict))
            continue
        name = get(ref, "name", f"{path}[{i}].name", str, causes)
        if name:
            causes += [invalid_value(f"{path}[{i}].name", name, m) for m in is_dns1123_subdomain(name)]


class ServiceAccountStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        _validate_object_refs(obj.get("secrets"), "secrets", causes)
        _validate_object_refs(obj.get("imagePullSecrets"), "imagePullSecrets", causes)
        get(obj, "automountServiceAccountToken", "automountServiceAccountToken", bool, causes)
        return causes


# ======================================================================= Endpoints

MAX_ENDPOINTS_SHOWN = 3


def _join_host_port(ip: Any, port: Any) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def endpoints_cell(ep: Obj) -> str:
    """ "127.64.0.1:8080,127.64.0.2:8080 + 3 more...", addresses alone for port-less (headless) subsets, or <none>."""
    subsets = dicts(ep.get("subsets"))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addresses = dicts(ss.get("addresses"))
        ports = dicts(ss.get("ports"))
        if not ports:
            count += len(addresses)
            shown += [str(a.get("ip", "")) for a in addresses][:MAX_ENDPOINTS_SHOWN - len(shown)]
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == MAX_ENDPOINTS_SHOWN:
                    break
                shown.append(_join_host_port(a.get("ip", ""), port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - MAX_ENDPOINTS_SHOWN} more..." if count > MAX_ENDPOINTS_SHOWN else text


def endpoints_row(ep: Obj) -> list[Any]:
    return [name_of(ep), endpoints_cell(ep), object_age(ep)]


ENDPOINTS_PRINTER = Printer(
    columns=[_name_column(), Column("Endpoints", description="Addresses and ports behind the service."),
             _age_column()],
    row=endpoints_row,
)


_LINK_LOCAL_MULTICAST = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("ff02::/16"))


def endpoint_ip_causes(ip: Any, path: str) -> list[Cause]:
    """An endpoint IP: a real unicast address. Loopback is allowed: sendo's pod IPs are 127.x by design."""
    if not isinstance(ip, str) or not ip:
        return [required(path)] if not ip else [type_invalid(path, ip, str)]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return [invalid_value(path, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    causes = []
    if addr.is_unspecified:
        causes.append(invalid_value(path, ip, f"may not be unspecified ({ip})"))
    if addr.is_link_local:
        causes.append(invalid_value(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if addr.is_multicast and any(addr in net for net in _LINK_LOCAL_MULTICAST if net.version == addr.version):
        causes.append(invalid_value(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return causes


def _validate_endpoint_address(addr: Any, path: str) -> list[Cause]:
    if not isinstance(addr, dict):
        return [type_invalid(path, addr, dict)]
    causes = endpoint_ip_causes(addr.get("ip"), f"{path}.ip")
    for key, check in (("hostname", is_dns1123_label), ("nodeName", is_dns1123_subdomain)):
        v = get(addr, key, f"{path}.{key}", str, causes)
        if v:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in check(v)]
    get(addr, "targetRef", f"{path}.targetRef", dict, causes)
    return causes


def _validate_endpoint_port(port: Any, path: str, require_name: bool) -> list[Cause]:
    if not isinstance(port, dict):
        return [type_invalid(path, port, dict)]
    causes: list[Cause] = []
    name = get(port, "name", f"{path}.name", str, causes)
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += [invalid_value(f"{path}.name", name, m) for m in is_dns1123_label(name)]
    number = port.get("port")
    if not is_type(number, int):
        causes.append(type_invalid(f"{path}.port", number, int))
    else:
        causes += [invalid_value(f"{path}.port", number, m) for m in is_port_number(number)]
    check_enum(port.get("protocol"), f"{path}.protocol", PROTOCOLS, causes)
    app = get(port, "appProtocol", f"{path}.appProtocol", str, causes)
    if app:
        causes += [invalid_value(f"{path}.appProtocol", app, m) for m in is_qualified_name(app)]
    return causes


def validate_endpoint_subsets(subsets: Any) -> list[Cause]:
    if subsets is None:
        return []
    if not isinstance(subsets, list):
        return [type_invalid("subsets", subsets, list)]
    causes: list[Cause] = []
    for i, ss in enumerate(subsets):
        p = f"subsets[{i}]"
        if not isinstance(ss, dict):
            causes.append(type_invalid(p, ss, dict))
            continue
        addresses = get(ss, "addresses", f"{p}.addresses", list, causes) or []
        not_ready = get(ss, "notReadyAddresses", f"{p}.notReadyAddresses", list, causes) or []
        if not addresses and not not_ready:
            causes.append(required_because(p, "must specify `addresses` or `notReadyAddresses`"))
        for j, addr in enumerate(addresses):
            causes += _validate_endpoint_address(addr, f"{p}.addresses[{j}]")
        for j, addr in enumerate(not_ready):
            causes += _validate_endpoint_address(addr, f"{p}.notReadyAddresses[{j}]")
        ports = get(ss, "ports", f"{p}.ports", list, causes) or []
        for j, port in enumerate(ports):
            causes += _validate_endpoint_port(port, f"{p}.ports[{j}]", len(ports) > 1)
    return causes


class EndpointsStrategy(NoStatus):
    def default(self, obj: Obj) -> None:
        for ss in dicts(obj.get("subsets")):
            for port in dicts(ss.get("ports")):
                set_default(port, "protocol", "TCP")

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_endpoint_subsets(obj.get("subsets"))


# ======================================================================= PersistentVolumeClaim

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_ACCESS_MODE_SHORT = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                      ("ReadWriteOncePod", "RWOP"))
VOLUME_MODES = ["Block", "Filesystem"]
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
_STORAGE_KEY = "spec.resources[storage]"


def access_modes_cell(modes: Any) -> str:
    """Short forms in a fixed order, duplicates dropped: "RWO,RWX"."""
    present = set(x for x in as_list(modes) if isinstance(x, str))
    return ",".join(short for mode, short in _ACCESS_MODE_SHORT if mode in present)


def pvc_storage_class(pvc: Obj) -> str:
    annotations = as_dict(as_dict(pvc.get("metadata")).get("annotations"))
    if BETA_STORAGE_CLASS in annotations:
        return str(annotations[BETA_STORAGE_CLASS])
    cls = as_dict(pvc.get("spec")).get("storageClassName")
    return cls if isinstance(cls, str) else ""


def pvc_row(pvc: Obj) -> list[Any]:
    spec, status, meta = as_dict(pvc.get("spec")), as_dict(pvc.get("status")), as_dict(pvc.get("metadata"))
    phase = "Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "")
    volume = spec.get("volumeName") if isinstance(spec.get("volumeName"), str) else ""
    capacity = modes = ""
    if volume:
        capacity = str(as_dict(status.get("capacity")).get("storage") or "")
        modes = access_modes_cell(status.get("accessModes"))
    vac = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [name_of(pvc), phase, volume, capacity, modes, pvc_storage_class(pvc),
            vac if isinstance(vac, str) else "<unset>", object_age(pvc), mode if isinstance(mode, str) else "<unset>"]


PVC_PRINTER = Printer(
    columns=[
        _name_column(),
        Column("Status", description="Pending, Bound or Lost."),
        Column("Volume", description="The volume bound to the claim."),
        Column("Capacity", description="The storage the bound volume has."),
        Column("Access Modes", description="How the bound volume may be mounted."),
        Column("StorageClass", description="StorageClass of the pvc."),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc."),
        _age_column(),
        Column("VolumeMode", priority=1, description="Filesystem or Block."),
    ],
    row=pvc_row,
)


def _storage_request(spec: dict) -> Any:
    return as_dict(as_dict(spec.get("resources")).get("requests")).get("storage")


def _validate_data_source(ref: Any, path: str, typed: bool) -> list[Cause]:
    if not isinstance(ref, dict):
        return [type_invalid(path, ref, dict)]
    causes: list[Cause] = []
    for key in ("name", "kind"):
        if not ref.get(key):
            causes.append(required(f"{path}.{key}"))
    group = ref.get("apiGroup") or ""
    if not group and ref.get("kind") != "PersistentVolumeClaim":
        causes.append(invalid_value(path, ref.get("kind"), "must be 'PersistentVolumeClaim' when referencing the "
                                                           "default apiGroup"))
    if isinstance(group, str) and group:
        causes += [invalid_value(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(group)]
    ns = ref.get("namespace") if typed else None
    if isinstance(ns, str) and ns:
        causes += [invalid_value(f"{path}.namespace", ns, m) for m in is_dns1123_label(ns)]
    return causes


def validate_pvc_spec(spec: Any, path: str) -> list[Cause]:
    """A PersistentVolumeClaimSpec (a PVC's, or a StatefulSet's volumeClaimTemplates[i].spec)."""
    if not isinstance(spec, dict):
        return [required(f"{path}.accessModes") if spec is None else type_invalid(path, spec, dict)]
    causes: list[Cause] = []
    modes = get(spec, "accessModes", f"{path}.accessModes", list, causes)
    if not modes:
        if modes is not None or spec.get("accessModes") is None:
            causes.append(required_because(f"{path}.accessModes", "at least 1 access mode is required"))
    rwop = other = False
    for mode in modes or []:
        if mode not in ACCESS_MODES:
            causes.append(unsupported(f"{path}.accessModes", mode, ACCESS_MODES))
        elif mode == "ReadWriteOncePod":
            rwop = True
        else:
            other = True
    if rwop and other:
        causes.append(forbidden(f"{path}.accessModes", "may not use ReadWriteOncePod with other access modes"))
    causes += validate_label_selector(spec.get("selector"), f"{path}.selector")
    key = _STORAGE_KEY if path == "spec" else f"{path}.resources[storage]"
    resources = get(spec, "resources", f"{path}.resources", dict, causes) or {}
    get(resources, "requests", f"{path}.resources.requests", dict, causes)
    storage = _storage_request(spec)
    if storage is None:
        causes.append(required(key))
    else:
        try:
            if parse_quantity(storage) <= 0:
                causes.append(invalid_value(key, str(storage), "must be greater than zero"))
        except QuantityError as e:
            causes.append(invalid_value(key, storage, e.reason))
    for name_key in ("storageClassName", "volumeAttributesClassName", "volumeName"):
        v = get(spec, name_key, f"{path}.{name_key}", str, causes)
        if v and name_key != "volumeName":
            causes += [invalid_value(f"{path}.{name_key}", v, m) for m in is_dns1123_subdomain(v)]
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        causes.append(unsupported(f"{path}.volumeMode", mode, VOLUME_MODES))
    if spec.get("dataSource") is not None:
        causes += _validate_data_source(spec["dataSource"], f"{path}.dataSource", typed=False)
    if spec.get("dataSourceRef") is not None:
        causes += _validate_data_source(spec["dataSourceRef"], f"{path}.dataSourceRef", typed=True)
    return causes


def default_pvc_spec(spec: Any) -> None:
    set_default(spec, "volumeMode", "Filesystem")


def validate_pvc_update(new: Obj, old: Obj) -> list[Cause]:
    """A claim's spec is fixed but for a bound claim's storage request, which may only grow."""
    spec, old_spec = copy.deepcopy(as_dict(new.get("spec"))), copy.deepcopy(as_dict(old.get("spec")))
    causes: list[Cause] = []
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = spec.get("volumeName")  # binding sets volumeName once
    if old_spec.get("storageClassName") is None and spec.get("storageClassName") is not None:
        old_annotation = as_dict(as_dict(old.get("metadata")).get("annotations")).get(BETA_STORAGE_CLASS)
        if old_annotation is None or old_annotation == spec.get("storageClassName"):
            old_spec["storageClassName"] = spec["storageClassName"]  # an unset class may be set once
    new_size, old_size = _storage_request(spec), _storage_request(old_spec)
    bound = as_dict(new.get("status")).get("phase") == "Bound"
    if bound and isinstance(as_dict(spec.get("resources")).get("requests"), dict):
        spec["resources"]["requests"]["storage"] = old_size
    spec["volumeAttributesClassName"] = old_spec.get("volumeAttributesClassName")
    clean_new, clean_old = strip_nulls(spec), strip_nulls(old_spec)
    if clean_new != clean_old:
        changed: list[str] = []
        changed_paths(clean_old, clean_new, "spec", changed)
        shown = ", ".join(changed[:5])
        causes.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                        f"volumeAttributesClassName for bound claims; changed: {shown}"))
    try:
        if new_size is not None and old_size is not None and parse_quantity(new_size) < parse_quantity(old_size):
            causes.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    except QuantityError:
        pass  # validate() reports the unparseable quantity
    if old_spec.get("volumeAttributesClassName") and not as_dict(new.get("spec")).get("volumeAttributesClassName"):
        causes.append(forbidden("spec.volumeAttributesClassName", "update from non-nil value to nil is forbidden"))
    return causes


class PersistentVolumeClaimStrategy(KindStrategy):
    has_spec = False  # claims carry no metadata.generation in Kubernetes

    def default(self, obj: Obj) -> None:
        default_pvc_spec(obj.get("spec"))

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_pvc_spec(obj.get("spec"), "spec")

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return validate_pvc_update(obj, old)


RESOURCES = [
    Resource("", "v1", "Namespace", "namespaces", False, short_names=["ns"], subresources={"status", "finalize"},
             strategy=NamespaceStrategy(), printer=NAMESPACE_PRINTER),
    Resource("", "v1", "Node", "nodes", False, short_names=["no"], subresources={"status"},
             strategy=NodeStrategy(), printer=NODE_PRINTER),
    Resource("", "v1", "Pod", "pods", True, short_names=["po"], categories=["all"],
             subresources={"status", "binding", "log", "portforward"}, strategy=PodStrategy(), printer=POD_PRINTER),
    Resource("", "v1", "Event", "events", True, short_names=["ev"], strategy=EventStrategy(), printer=EVENT_PRINTER),
    Resource("", "v1", "ConfigMap", "configmaps", True, short_names=["cm"], strategy=ConfigMapStrategy(),
             printer=CONFIGMAP_PRINTER),
    Resource("", "v1", "Secret", "secrets", True, strategy=SecretStrategy(), printer=SECRET_PRINTER),
    Resource("", "v1", "Service", "services", True, short_names=["svc"], categories=["all"],
             subresources={"status"}, strategy=ServiceStrategy(), printer=SERVICE_PRINTER),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=["sa"], subresources={"token"},
             strategy=ServiceAccountStrategy(), printer=SERVICEACCOUNT_PRINTER),
    Resource("", "v1", "Endpoints", "endpoints", True, short_names=["ep"], singular="endpoints",
             strategy=EndpointsStrategy(), printer=ENDPOINTS_PRINTER),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, short_names=["pvc"],
             subresources={"status"}, strategy=PersistentVolumeClaimStrategy(), printer=PVC_PRINTER),
]
