"""Which nodes a pod may run on by its own rules: tolerations against a node's taints,
nodeSelector and required node affinity (incl. matchFields on metadata.name).

The scheduler filters with these, the DaemonSet controller decides with the same rules
which nodes should run a daemon pod, and a PersistentVolume's node affinity is a node
selector term too.
"""
from __future__ import annotations

from typing import Any

from .taints import tolerates  # noqa: F401  (callers take it from here with the node rules)

Obj = dict[str, Any]


def _requirement_matches(req: Obj, values_of: dict[str, str]) -> bool:
    key, op, vals = req.get("key", ""), req.get("operator"), req.get("values") or []
    has = key in values_of
    v = values_of.get(key)
    if op == "In":
        return has and v in vals
    if op == "NotIn":
        return not has or v not in vals
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and len(vals) == 1:
        try:
            a, b = int(v), int(vals[0])
        except (TypeError, ValueError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: Obj, labels: dict[str, str], name: str) -> bool:
    """One nodeSelectorTerm: all its expressions and fields hold; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    node_fields = {"metadata.name": name}
    return (all(_requirement_matches(e, labels) for e in exprs)
            and all(_requirement_matches(f, node_fields) for f in fields))


def node_selector_matches(pod_spec: Obj, node: Obj) -> bool:
    """The pod's nodeSelector and required node affinity both accept the node."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    name = (node.get("metadata") or {}).get("name", "")
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t, labels, name) for t in required.get("nodeSelectorTerms") or [])
