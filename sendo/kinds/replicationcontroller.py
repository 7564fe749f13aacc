"""ReplicationController (v1): the ReplicaSet's predecessor, still served by Kubernetes.

It differs from a ReplicaSet in its selector, a plain label map, which may change, and
which defaults (as the object's own labels do) to the template's labels. Everything else,
template rules, status and columns, is the ReplicaSet's.
"""
from __future__ import annotations

from typing import Any

from .apps import REPLICASET_PRINTER, WorkloadStrategy, default_template, replicaset_row, validate_workload_template
from .base import Cause, Obj, Printer, required, set_default
from .printing import as_dict
from .meta import selector_matches
from .validation import check_int, type_invalid, validate_labels


def _template_labels(spec: dict) -> dict:
    labels = as_dict(as_dict(spec.get("template")).get("metadata")).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def replicationcontroller_row(rc: Obj) -> list[Any]:
    """ReplicaSet's cells; its selector column reads the label map as matchLabels."""
    spec = as_dict(rc.get("spec"))
    return replicaset_row({**rc, "spec": {**spec, "selector": {"matchLabels": as_dict(spec.get("selector"))}}})


RC_PRINTER = Printer(columns=REPLICASET_PRINTER.columns, row=replicationcontroller_row)


class ReplicationControllerStrategy(WorkloadStrategy):
    required_status = ("replicas",)

    def default_spec(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "replicas", 1)
        default_template(spec)
        labels = _template_labels(spec)
        if labels and not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.get("metadata")
        if labels and isinstance(meta, dict) and not meta.get("labels"):
            meta["labels"] = dict(labels)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec.selector") if spec is None else type_invalid("spec", spec, dict)]
        causes: list[Cause] = []
        check_int(spec, "replicas", "spec.replicas", causes, minimum=0)
        check_int(spec, "minReadySeconds", "spec.minReadySeconds", causes, minimum=0)
        sel = spec.get("selector")
        selector_causes = validate_labels(sel, "spec.selector")
        if not selector_causes and not sel:
            selector_causes.append(required("spec.selector"))
        matches = None if selector_causes else (lambda labels: selector_matches({"matchLabels": sel}, labels))
        if spec.get("template") is None:
            return causes + selector_causes + [required("spec.template")]
        return causes + selector_causes + validate_workload_template(spec["template"], matches,
                                                                     "ReplicationController")

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return []  # unlike apps/v1 workloads, a ReplicationController's selector may change
