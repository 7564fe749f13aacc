"""Pod Security admission: the namespace's `pod-security.kubernetes.io/*` labels applied to
pods and to the pod templates of workloads (the judgement is `kinds/podsecurity.py`).

* enforce: a pod that breaks the level is refused with 403, listing every rule it breaks;
  workloads are never refused (their pods are);
* warn: the client gets a `Warning` header (kubectl prints it), for pods and for the pod
  templates of Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs and
  ReplicationControllers;
* audit: the violations go to the audit log as the annotation
  `pod-security.kubernetes.io/audit-violations` of the request's event.

The namespace is read once per create (the API already reads it to check that it is
active); namespaces without any pod-security label cost one bytes search.
"""
from __future__ import annotations

from typing import Any

import orjson

from ..kinds import podsecurity
from ..kinds.podsecurity import LABEL, LEVELS
from .errors import APIError
from .options import RequestOptions

Obj = dict[str, Any]
# plural -> the path from the object to its pod template (metadata + spec)
TEMPLATES = {"deployments": ("spec", "template"), "replicasets": ("spec", "template"),
             "statefulsets": ("spec", "template"), "daemonsets": ("spec", "template"),
             "jobs": ("spec", "template"), "replicationcontrollers": ("spec", "template"),
             "cronjobs": ("spec", "jobTemplate", "spec", "template")}


def levels_of(namespace_value: bytes) -> dict[str, tuple[str, str]]:
    """mode -> (level, version) from a stored namespace's labels."""
    if LABEL.encode() not in namespace_value:
        return {}
    labels = (orjson.loads(namespace_value).get("metadata") or {}).get("labels") or {}
    out = {}
    for mode in podsecurity.MODES:
        level = labels.get(LABEL + mode)
        if level in LEVELS and level != "privileged":
            out[mode] = (level, labels.get(LABEL + mode + "-version") or "latest")
    return out


def _pod_parts(plural: str, obj: Obj) -> tuple[Obj, Obj] | None:
    if plural == "pods":
        return obj.get("metadata") or {}, obj.get("spec") or {}
    path = TEMPLATES.get(plural)
    if path is None:
        return None
    t: Any = obj
    for step in path:
        t = t.get(step) if isinstance(t, dict) else None
    if not isinstance(t, dict):
        return None
    return t.get("metadata") or {}, t.get("spec") or {}


def admit(group: str, plural: str, obj: Obj, namespace_value: bytes, opts: RequestOptions) -> None:
    """Refuse (enforce), warn and annotate as the namespace's labels say."""
    if group not in ("", "apps", "batch"):
        return
    modes = levels_of(namespace_value)
    if not modes:
        return
    parts = _pod_parts(plural, obj)
    if parts is None:
        return
    meta, spec = parts
    name = (obj.get("metadata") or {}).get("name", "")
    found: dict[tuple[str, str], list[str]] = {}
    for mode, (level, version) in modes.items():
        if (level, version) not in found:
            found[(level, version)] = podsecurity.violations(meta, spec, level)
    if "enforce" in modes:
        level, version = modes["enforce"]
        if found[(level, version)] and plural != "pods":  # its pods will be refused: say so now
            opts.warnings.append(f'{plural[:-1]} "{name}": its pods would violate PodSecurity '
                                 f'"{level}:{version}" and be refused: {", ".join(found[(level, version)])}')
        elif found[(level, version)]:
            raise APIError(403, f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": '
                                f'{", ".join(found[(level, version)])}', "Forbidden",
                           {"name": name, "kind": "pods"})
    if "warn" in modes:
        level, version = modes["warn"]
        if found[(level, version)]:
            what = "" if plural == "pods" else f'{plural[:-1]} "{name}": '
            opts.warnings.append(f'{what}would violate PodSecurity "{level}:{version}": '
                                 f'{", ".join(found[(level, version)])}')
    if "audit" in modes:
        level, version = modes["audit"]
        if found[(level, version)]:
            opts.audit_annotations["pod-security.kubernetes.io/audit-violations"] = (
                f'would violate PodSecurity "{level}:{version}": {", ".join(found[(level, version)])}')
