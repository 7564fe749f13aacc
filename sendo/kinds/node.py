"""node.k8s.io/v1 kinds: RuntimeClass, which a pod names in `spec.runtimeClassName` to
pick the container runtime its node runs it with.

The `handler` is a runtime's name in the agent's runtime registry
(`sendo/agent/runtime/registry.py`); each agent creates a RuntimeClass for every runtime
it runs (`process` on every node). Rules are Kubernetes' (pkg/apis/node/validation).
"""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, Resource
from .printing import name_of, object_age
from .quantity import parse_quantity
from .validation import (KindStrategy, check_name, get, invalid_value, is_dns1123_label, type_invalid,
                         validate_labels)


def runtime_class_row(rc: Obj) -> list[Any]:
    return [name_of(rc), rc.get("handler") or "", object_age(rc)]


RUNTIME_CLASS_PRINTER = Printer(
    columns=[
        Column("Name", format="name", description="Name must be unique within a namespace."),
        Column("Handler", description="Handler specifies the underlying runtime and configuration that the CRI "
                                      "implementation will use to handle pods of this class."),
        Column("Age", description="CreationTimestamp is a timestamp representing the server time when this "
                                  "object was created."),
    ],
    row=runtime_class_row,
)


class RuntimeClassStrategy(KindStrategy):
    """Top-level fields, no spec or status; the handler never changes."""

    has_status = False
    has_spec = False

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        check_name(obj.get("handler"), "handler", is_dns1123_label, causes)
        overhead = get(obj, "overhead", "overhead", dict, causes) or {}
        for name, q in (get(overhead, "podFixed", "overhead.podFixed", dict, causes) or {}).items():
            path = f"overhead.podFixed[{name}]"
            try:
                if parse_quantity(q) < 0:
                    causes.append(invalid_value(path, q, "must be greater than or equal to 0"))
            except (ValueError, TypeError):
                causes.append(invalid_value(path, q, "must be a quantity, e.g. 100m or 64Mi"))
        scheduling = get(obj, "scheduling", "scheduling", dict, causes) or {}
        causes += validate_labels(scheduling.get("nodeSelector"), "scheduling.nodeSelector")
        tolerations = scheduling.get("tolerations")
        if tolerations is not None and not isinstance(tolerations, list):
            causes.append(type_invalid("scheduling.tolerations", tolerations, list))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        if obj.get("handler") != old.get("handler"):
            return [invalid_value("handler", obj.get("handler"), "field is immutable")]
        return []


RESOURCES = [
    Resource("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False, strategy=RuntimeClassStrategy(),
             printer=RUNTIME_CLASS_PRINTER),
]
