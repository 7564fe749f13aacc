"""How many requests the API server serves at once, and who may hold them.

kube-apiserver bounds short requests in flight (``--max-requests-inflight`` 400 reads,
``--max-mutating-requests-inflight`` 200 writes) and answers the rest 429 with a
Retry-After; API Priority and Fairness then shares that room out so one noisy client
cannot starve the others. sendo keeps the two ideas of APF that matter on one machine,
without its queues:

* priority levels: ``system:masters`` is exempt (as in APF), the nodes (agents) draw on
  a budget of their own, so do sendo's scheduler and control loops (``workload-high``,
  their identities in component_policy.py, as APF's flow schemas for kube-scheduler,
  kube-controller-manager and kube-system's ServiceAccounts), everyone else shares the
  workload budget — so a flood from users never takes the room the agents need to report
  pods, nor the room the controllers need to act;
* fairness: inside the workload budget one user may hold at most ``share`` of it, so
  one client alone cannot fill it while others wait.

Long-running requests (watches, followed logs, proxied streams, exec) are not counted,
as Kubernetes does not count them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .component_policy import COMPONENT_USERS
from .errors import APIError
from .options import User

EXEMPT_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Ticket:
    level: str
    mutating: bool
    user: str


def level_of(user: User) -> str:
    if EXEMPT_GROUP in user.groups:
        return "exempt"
    if NODES_GROUP in user.groups:
        return "system"
    if user.name in COMPONENT_USERS:
        return "workload-high"
    return "workload"


class InflightLimit:
    def __init__(self, readonly: int = 400, mutating: int = 200, share: float = 0.5):
        self.limits = {False: readonly, True: mutating}  # 0: no limit
        self.share = share
        self._level: dict[tuple[str, bool], int] = {}
        self._user: dict[tuple[str, bool], int] = {}

    def acquire(self, user: User, method: str) -> Ticket | None:
        """A ticket to serve the request now (give it back with `release`), or an APIError 429."""
        mutating = method.upper() in MUTATING
        limit = self.limits[mutating]
        level = level_of(user)
        if level == "exempt" or limit <= 0:
            return None
        held = self._level.get((level, mutating), 0)
        mine = self._user.get((user.name, mutating), 0)
        kind = "mutating" if mutating else "read-only"
        if held >= limit:
            raise too_many(f"too many {kind} requests in flight at priority level {level!r} ({limit}); "
                           "try again later")
        if level == "workload" and mine >= max(1, math.floor(limit * self.share)):
            raise too_many(f"too many {kind} requests in flight for user {user.name!r} "
                           f"({mine}, its fair share of {limit}); try again later")
        self._level[(level, mutating)] = held + 1
        self._user[(user.name, mutating)] = mine + 1
        return Ticket(level, mutating, user.name)

    def release(self, ticket: Ticket | None) -> None:
        if ticket is None:
            return
        for counts, key in ((self._level, (ticket.level, ticket.mutating)),
                            (self._user, (ticket.user, ticket.mutating))):
            n = counts.get(key, 0) - 1
            if n > 0:
                counts[key] = n
            else:
                counts.pop(key, None)

    def in_flight(self) -> dict[str, int]:
        """Requests held per priority level and kind, for /metrics and tests."""
        return {f"{level}/{'mutating' if m else 'readOnly'}": n for (level, m), n in self._level.items()}


def too_many(message: str) -> APIError:
    return APIError(429, message, "TooManyRequests", {"retryAfterSeconds": RETRY_AFTER_SECONDS})


def long_running(method: str, path: str, query: dict[str, str] | None) -> bool:
    """Watches, followed logs, proxied requests and exec/attach/port-forward: held for as long
    as the client wants, so not counted (kube-apiserver's long-running request check)."""
    q = query or {}
    if method == "GET" and (q.get("watch", "").lower() in ("1", "true") or q.get("follow", "").lower()
                            in ("1", "true")):
        return True
    parts = path.split("/")
    return any(p in ("proxy", "exec", "attach", "portforward") for p in parts) or "/watch/" in path
