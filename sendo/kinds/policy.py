"""policy/v1 kinds: PodDisruptionBudgets (and the Eviction body of the pods/eviction subresource).

A budget names pods by a selector and says how many of them must stay healthy
(``minAvailable``) or may be down (``maxUnavailable``), as a count or a percentage. The
disruption controller writes its status; the eviction subresource reads it.
"""
from __future__ import annotations

from typing import Any

from .meta import selector_matches
from .base import Cause, Column, Obj, Printer, Resource, set_default
from .printing import age_column, as_dict, name_column, name_of, object_age
from .validation import (KindStrategy, check_enum, int_or_percent_value, invalid_value, is_type, type_invalid,
                         validate_int_or_percent, validate_label_selector)

UNHEALTHY_POLICIES = ["AlwaysAllow", "IfHealthyBudget"]


def budget_selects(pdb: Obj, pod: Obj) -> bool:
    """policy/v1: an empty selector picks every pod of the namespace, a missing one none."""
    sel = as_dict(pdb.get("spec")).get("selector")
    return sel is not None and selector_matches(sel, as_dict(pod.get("metadata")).get("labels") or {})


def validate_pdb_spec(spec: Any) -> list[Cause]:
    if spec is None:
        return []
    if not isinstance(spec, dict):
        return [type_invalid("spec", spec, dict)]
    causes: list[Cause] = []
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        causes.append(invalid_value("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for key, value in (("minAvailable", min_available), ("maxUnavailable", max_unavailable)):
        found = validate_int_or_percent(value, f"spec.{key}")
        causes += found
        if not found and isinstance(value, str) and int_or_percent_value(value) > 100:
            causes.append(invalid_value(f"spec.{key}", value, "must not be greater than 100%"))
    causes += validate_label_selector(spec.get("selector"), "spec.selector")
    check_enum(spec.get("unhealthyPodEvictionPolicy"), "spec.unhealthyPodEvictionPolicy", UNHEALTHY_POLICIES,
               causes, optional=True)
    return causes


class PodDisruptionBudgetStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        status = obj.get("status")
        if isinstance(status, dict):
            for key in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
                set_default(status, key, 0)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes = validate_pdb_spec(obj.get("spec"))
        status = obj.get("status")
        if isinstance(status, dict):
            for key in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
                v = status.get(key)
                if v is not None and (not is_type(v, int) or v < 0):
                    causes.append(invalid_value(f"status.{key}", v, "must be greater than or equal to 0"))
        return causes


def _shown(v: Any) -> str:
    return "N/A" if v is None else str(v)


def pdb_row(pdb: Obj) -> list[Any]:
    spec, status = as_dict(pdb.get("spec")), as_dict(pdb.get("status"))
    allowed = status.get("disruptionsAllowed")
    return [name_of(pdb), _shown(spec.get("minAvailable")), _shown(spec.get("maxUnavailable")),
            allowed if is_type(allowed, int) else 0, object_age(pdb)]


PDB_PRINTER = Printer(
    columns=[name_column(),
             Column("Min Available", description="Pods that must stay available."),
             Column("Max Unavailable", description="Pods that may be unavailable."),
             Column("Allowed Disruptions", type="integer", description="Evictions allowed now."),
             age_column()],
    row=pdb_row,
)

RESOURCES = [
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, short_names=["pdb"],
             subresources={"status"}, strategy=PodDisruptionBudgetStrategy(), printer=PDB_PRINTER),
]
