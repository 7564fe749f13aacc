"""Taints and tolerations: which toleration matches which taint (v1 Toleration.ToleratesTaint).

Shared by the scheduler (NoSchedule/NoExecute filter) and the taint eviction controller
(NoExecute), which must agree on what a toleration covers.
"""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"


def toleration_matches(t: Obj, key: str, value: str, effect: str) -> bool:
    """Whether one toleration covers the taint: an empty effect covers every effect, an
    empty key with Exists every key; the operator defaults to Equal."""
    if t.get("effect") and t["effect"] != effect:
        return False
    if t.get("key") and t["key"] != key:
        return False
    op = t.get("operator") or "Equal"
    return op == "Exists" or (op == "Equal" and (t.get("value") or "") == value)


def tolerates(tolerations: list[Obj], key: str, value: str, effect: str) -> bool:
    """Whether any toleration matches the taint."""
    return any(toleration_matches(t, key, value, effect) for t in tolerations)
