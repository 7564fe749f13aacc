"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

Each candidate reads the Lease; it takes it when it is free, its own, or not renewed for
``lease_duration`` seconds *as this candidate has observed* (the time it last saw the
Lease change on its own clock, so the candidates' clocks need not agree). Taking and
renewing are updates at the Lease's resourceVersion: of two candidates, one wins. The
leader renews every ``retry_period``; one that cannot renew for ``renew_deadline`` has
lost and must stop acting. A leader that stops cleanly gives the Lease up at once.

Defaults fail over in about 3-4 s; Kubernetes' are 15/10/2 s (``KUBERNETES_TIMINGS``).
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from ..kinds.meta import micro_now
from .rest import ApiError, Client, kind

log = logging.getLogger(__name__)

LEASES = kind("leases", "coordination.k8s.io")


@dataclass(frozen=True)
class Timings:
    lease_duration: float = 3.0
    renew_deadline: float = 2.0
    retry_period: float = 0.5

    def check(self) -> "Timings":
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError("leader election needs lease duration > renew deadline > retry period > 0 "
                             f"(got {self.lease_duration}/{self.renew_deadline}/{self.retry_period} s)")
        return self


KUBERNETES_TIMINGS = Timings(15.0, 10.0, 2.0)


class LeaderElector:
    def __init__(self, client: Client, name: str, identity: str, namespace: str = "kube-system",
                 timings: Timings = Timings()):
        self.client, self.name, self.identity, self.namespace = client, name, identity, namespace
        self.timings = timings.check()
        self.is_leader = False
        self._observed: tuple[Any, float] | None = None  # (the Lease's spec as last seen, local time seen)
        self._last_renew = 0.0

    def _spec(self, transitions: int, acquire: str | None) -> dict:
        now = micro_now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, math.ceil(self.timings.lease_duration)),
                "acquireTime": acquire or now, "renewTime": now, "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this candidate holds the Lease afterwards."""
        try:
            lease = await self.client.get_or_none(LEASES, self.namespace, self.name)
            if lease is None:
                await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(0, None)})
                return self._won()
            spec = lease.get("spec") or {}
            now = time.monotonic()
            if self._observed is None or self._observed[0] != spec:
                self._observed = (spec, now)
            holder = spec.get("holderIdentity") or ""
            duration = float(spec.get("leaseDurationSeconds") or self.timings.lease_duration)
            if holder and holder != self.identity and now < self._observed[1] + duration:
                self.is_leader = False
                return False  # held by another, renewed within its duration
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
            acquire = spec.get("acquireTime") if holder == self.identity else None
            lease["spec"] = self._spec(transitions, acquire)
            await self.client.update(LEASES, lease)  # at the resourceVersion read: one of two wins
            return self._won()
        except ApiError as e:
            if e.status not in (409, 404):  # lost a race: not an error, the next round looks again
                log.warning("leader election for %s: %s", self.name, e)
            self.is_leader = False
            return False
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("leader election for %s: API unreachable: %s", self.name, e)
            return False

    def _won(self) -> bool:
        if not self.is_leader:
            log.warning("%s is now the leader of %s/%s", self.identity, self.namespace, self.name)
        self.is_leader = True
        self._last_renew = time.monotonic()
        return True

    async def acquire(self) -> None:
        """Return once this candidate leads."""
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.timings.retry_period)

    async def hold(self) -> None:
        """Renew while leading; return when leadership is lost (not renewed within the renew deadline)."""
        while True:
            await asyncio.sleep(self.timings.retry_period)
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), self.timings.renew_deadline)
            except asyncio.TimeoutError:
                ok = False
            if not ok and (not self.is_leader
                           or time.monotonic() - self._last_renew > self.timings.renew_deadline):
                self.is_leader = False
                log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                return

    async def release(self) -> None:
        """Give the Lease up (a clean stop), so another candidate takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.client.get_or_none(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {k: v for k, v in lease["spec"].items() if k != "holderIdentity"}
                lease["spec"] = {**spec, "leaseDurationSeconds": 1, "renewTime": micro_now()}
                await self.client.update(LEASES, lease)
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, e)
