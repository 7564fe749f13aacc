"""Node selector terms (nodeAffinity, a PersistentVolume's node affinity): whether a node
with these labels and this name matches, by Kubernetes' rules."""
from __future__ import annotations

from typing import Any

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
