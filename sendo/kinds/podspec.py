"""The pod spec in one place: defaults, validation, QoS class and the rules for updating a pod.

Pod, and the templates of Deployments, ReplicaSets, Jobs, DaemonSets and StatefulSets use
the same functions with a different path prefix, so "spec.template.spec.containers[0].image"
comes for free. Every check returns `Cause`s and never raises.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from .base import Cause, duplicate, forbidden, Obj, required, set_default, strip_nulls, unsupported
from .printing import as_dict, as_list, dicts
from .quantity import parse_quantity
from .volumes import validate_sub_path, validate_volume_source
from .taints import NOT_READY_TAINT, UNREACHABLE_TAINT
from .validation import (check_enum, check_int, check_name, check_string_list, get, invalid_value, is_config_key,
                         is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_port_name, is_port_number,
                         is_qualified_name, is_type, MAX_INT32, nonnegative_quantity, not_found, PROTOCOLS,
                         required_because, TAINT_EFFECTS, type_invalid, validate_labels, validate_object_meta)


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


DEFAULT_TOLERATION_SECONDS = 300  # kube-apiserver's --default-{not-ready,unreachable}-toleration-seconds


def add_default_tolerations(spec: Any, not_ready_seconds: int = DEFAULT_TOLERATION_SECONDS,
                            unreachable_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Tolerate a not-ready or unreachable node for a while (5 minutes by default) unless the
    pod says otherwise.

    What Kubernetes' DefaultTolerationSeconds admission adds to every pod (on create and
    update; the API server's admission calls this with its flags). A toleration with that
    key, or with no key (it tolerates every taint), and a NoExecute or empty effect already
    covers it.
    """
    if not isinstance(spec, dict):
        return
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = spec["tolerations"] = []
    if not isinstance(tolerations, list):
        return  # validation reports it
    for key, seconds in ((NOT_READY_TAINT, not_ready_seconds), (UNREACHABLE_TAINT, unreachable_seconds)):
        if not any(isinstance(t, dict) and t.get("key") in (key, "", None)
                   and t.get("effect") in ("NoExecute", "", None) for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})


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
    if new == old:  # a status write or a metadata change: nothing below could object
        return []
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




# ----------------------------------------------------------------- pod spec

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
TOLERATION_OPERATORS = ["Exists", "Equal"]
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"]
ENV_RESOURCE_FIELDS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory",
                       "requests.cpu", "requests.ephemeral-storage", "requests.memory"]
PROBE_HANDLERS = ["exec", "httpGet", "tcpSocket", "grpc"]


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
    check_int(spec, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds", causes, minimum=0,
              int64=True)
    check_int(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds", causes, minimum=1, maximum=MAX_INT32,
              int64=True)
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key, check in (("nodeName", is_dns1123_subdomain), ("serviceAccountName", is_dns1123_subdomain),
                       ("hostname", is_dns1123_label), ("subdomain", is_dns1123_label)):
        v = get(spec, key, f"{path}.{key}", str, causes)
        if v:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in check(v)]
    causes += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    causes += validate_security_context(spec.get("securityContext"), f"{path}.securityContext", pod=True)
    return causes


def validate_security_context(sc: Any, path: str, *, pod: bool) -> list[Cause]:
    """The fields the agent applies: ids 0..2147483647, booleans, capability names, and
    no `allowPrivilegeEscalation: false` with privileged or CAP_SYS_ADMIN (Kubernetes' rules)."""
    if sc is None:
        return []
    if not isinstance(sc, dict):
        return [type_invalid(path, sc, dict)]
    causes: list[Cause] = []
    for key in ("runAsUser", "runAsGroup") + (("fsGroup",) if pod else ()):
        check_int(sc, key, f"{path}.{key}", causes, minimum=0, maximum=MAX_INT32, int64=True)
    keys = ("runAsNonRoot",) if pod else ("runAsNonRoot", "readOnlyRootFilesystem", "privileged",
                                           "allowPrivilegeEscalation")
    for key in keys:
        get(sc, key, f"{path}.{key}", bool, causes)
    if pod:
        for i, group in enumerate(get(sc, "supplementalGroups", f"{path}.supplementalGroups", list, causes) or []):
            check_int({"g": group}, "g", f"{path}.supplementalGroups[{i}]", causes, minimum=0, maximum=MAX_INT32,
                      int64=True)
        return causes
    caps = get(sc, "capabilities", f"{path}.capabilities", dict, causes) or {}
    for key in ("add", "drop"):
        check_string_list(caps, key, f"{path}.capabilities.{key}", causes)
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            causes.append(invalid_value(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                                  "`privileged` to true"))
        added = caps.get("add") if isinstance(caps.get("add"), list) else []
        if any(isinstance(c, str) and c.upper().removeprefix("CAP_") == "SYS_ADMIN" for c in added):
            causes.append(invalid_value(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                                  "`capabilities.Add` CAP_SYS_ADMIN"))
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
        validate_volume_source(vol, p, causes)
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
    causes += validate_security_context(c.get("securityContext"), f"{path}.securityContext", pod=False)
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
            value = nonnegative_quantity(q, p, causes)
            if value is not None:
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
        elif not isinstance(name, str):
            causes.append(type_invalid(f"{p}.name", name, str))
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
        validate_sub_path(m, p, causes)
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
