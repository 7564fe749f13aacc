"""Namespace and Node (v1), the cluster-scoped core kinds.

(RuntimeClass, of the node.k8s.io group, is not here: see node.py.)
"""
from __future__ import annotations

import copy
from typing import Any

from . import podsecurity
from .base import Cause, Column, duplicate, forbidden, Obj, Printer, set_default
from .printing import age_column, as_dict, dicts, name_column, name_of, object_age
from .validation import check_enum, check_name, get, is_qualified_name, KindStrategy, TAINT_EFFECTS, type_invalid


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
        labels = as_dict(as_dict(obj.get("metadata")).get("labels"))
        return causes + podsecurity.label_causes(labels)


NAMESPACE_PRINTER = Printer(
    columns=[name_column(), Column("Status", description="The phase of the namespace."), age_column()],
    row=namespace_row,
)


# ======================================================================= Node

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
# on a Node: its /24 of the container pod CIDR (node IPAM for the docker runtime's bridge)
CONTAINER_CIDR_ANNOTATION = "sendo.dev/container-pod-cidr"


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
        name_column(),
        Column("Status", description="Ready, NotReady or Unknown, and SchedulingDisabled when cordoned."),
        Column("Roles", description="Roles from node-role.kubernetes.io/* labels."),
        age_column(),
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
            ident = (t.get("key"), t.get("effect"))
            if not all(x is None or isinstance(x, str) for x in ident):
                continue  # reported above
            if ident in seen:
                causes.append(duplicate(p, f"{t.get('key')}:{t.get('effect')}"))
            seen.add(ident)
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        """podCIDR and providerID are assigned once; routes and clouds depend on them."""
        causes = []
        new_spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        for key in ("podCIDR", "providerID"):
            if old_spec.get(key) and new_spec.get(key) != old_spec.get(key):
                causes.append(forbidden(f"spec.{key}", f'node updates may not change {key} except from "" to valid'))
        return causes
