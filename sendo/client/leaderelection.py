"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

Each candidate reads the Lease; it takes it when it is free, its own, or not renewed for
``lease_duration`` seconds *as this candidate has observed* (the time it last saw the
Lease change on its own clock, so the candidates' clocks need not agree). Taking and
renewing are updates at the Lease's resourceVersion: of two candidates, one wins. The
leader renews every ``retry_period``; one that cannot renew for ``renew_deadline`` has
lost and must stop acting. A leader that stops cleanly gives the Lease up at once.

Why a thread: candidates acquire on the caller's event loop, but once a candidate leads,
its renewals run in a thread of their own, with their own event loop and API client
(``Client.twin``), and a second thread is the watchdog. The caller's loop is the one its
control loops keep busy: renewing from it, a leader under load missed its renew deadline
for no fault of the API; and a deadline checked from it is checked late, so an old leader
kept acting after another had taken the Lease. The watchdog measures ``renew_deadline``
with ``time.monotonic`` from the last renewal and calls ``on_lost`` from its thread at
once (``sendo controllers`` exits there, as kube-controller-manager dies on lost
leadership); since ``renew_deadline < lease_duration``, the old leader is gone before
any other candidate may take the Lease, whatever its event loop is doing. Without
``on_lost``, ``hold()`` returns when it learns of the loss.

Defaults fail over in about 3-4 s; Kubernetes' are 15/10/2 s (``KUBERNETES_TIMINGS``).
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

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
                 timings: Timings = Timings(), on_lost: Callable[[str], None] | None = None):
        """``on_lost(reason)``: called from the watchdog's thread the moment leadership is lost
        (e.g. to end the process); without it, ``hold()`` returns."""
        self.client, self.name, self.identity, self.namespace = client, name, identity, namespace
        self.timings = timings.check()
        self.on_lost = on_lost
        self.is_leader = False
        self._observed: tuple[Any, float] | None = None  # (the Lease's spec as last seen, local time seen)
        self._last_renew = 0.0
        self._renewer: _Renewer | None = None
        self._lost_reason = ""

    def _spec(self, transitions: int, acquire: str | None) -> dict:
        now = micro_now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, math.ceil(self.timings.lease_duration)),
                "acquireTime": acquire or now, "renewTime": now, "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this candidate holds the Lease afterwards."""
        return await self._attempt(self.client)

    async def _attempt(self, client: Client, renew_only: bool = False) -> bool:
        """One attempt through ``client``; with ``renew_only``, a Lease another holds (even
        one that has run out) or nobody holds is not taken: the renewer's view of a loss."""
        try:
            lease = await client.get_or_none(LEASES, self.namespace, self.name)
            if lease is None:
                if renew_only:
                    self.is_leader = False
                    self._lost_reason = "the lease was deleted"
                    return False
                await client.create(LEASES, {
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
            if renew_only and holder != self.identity:
                self.is_leader = False
                self._lost_reason = f"the lease is held by {holder or 'nobody'}"
                return False
            if holder and holder != self.identity and now < self._observed[1] + duration:
                self.is_leader = False
                return False  # held by another, renewed within its duration
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
            acquire = spec.get("acquireTime") if holder == self.identity else None
            lease["spec"] = self._spec(transitions, acquire)
            await client.update(LEASES, lease)  # at the resourceVersion read: one of two wins
            return self._won()
        except ApiError as e:
            if e.status not in (409, 404):  # lost a race: not an error, the next round looks again
                log.warning("leader election for %s: %s", self.name, e)
            self.is_leader = False
            self._lost_reason = f"renewal refused: {e}"
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
        """Return once this candidate leads; from then on it renews in its own thread."""
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.timings.retry_period)
        await self._stop_renewing()  # a renewer of an earlier term that has ended
        self._renewer = _Renewer(self, asyncio.get_running_loop())

    async def hold(self) -> None:
        """Lead until leadership is lost (not renewed within the renew deadline, or the Lease
        taken), then return; the renewing itself happens in the renewer's thread."""
        if self._renewer is None:
            await self.acquire()
        assert self._renewer is not None
        await self._renewer.lost.wait()
        self.is_leader = False

    async def _stop_renewing(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            await renewer.stop()

    async def release(self) -> None:
        """Give the Lease up (a clean stop), so another candidate takes over at once."""
        await self._stop_renewing()
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


class _Renewer:
    """A held Lease's renewals (a thread with its own event loop and client) and the
    watchdog (a second thread that only waits for the renew deadline)."""

    def __init__(self, elector: LeaderElector, caller: asyncio.AbstractEventLoop):
        self.elector, self.caller = elector, caller
        self.lost = asyncio.Event()  # of the caller's loop: hold() waits on it
        self._stopping = threading.Event()
        self._once = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._threads = [threading.Thread(target=self._renew_thread, name=f"lease-renew-{elector.name}",
                                          daemon=True),
                         threading.Thread(target=self._watchdog, name=f"lease-watchdog-{elector.name}", daemon=True)]
        for t in self._threads:
            t.start()

    def _renew_thread(self) -> None:
        asyncio.run(self._renew_forever())

    async def _renew_forever(self) -> None:
        e, t = self.elector, self.elector.timings
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        client = e.client.twin(user_agent=f"{e.client.user_agent} (lease renewal)", timeout=t.renew_deadline)
        try:
            while not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), t.retry_period)
                except asyncio.TimeoutError:
                    pass
                if self._stopping.is_set():
                    return
                try:
                    ok = await asyncio.wait_for(e._attempt(client, renew_only=True), t.renew_deadline)
                except asyncio.TimeoutError:
                    ok = False
                if not ok and not e.is_leader and not self._stopping.is_set():
                    self._lose(e._lost_reason or "the lease was lost")
                    return
        finally:
            await client.close()

    def _watchdog(self) -> None:
        e, deadline = self.elector, self.elector.timings.renew_deadline
        while True:
            left = e._last_renew + deadline - time.monotonic()
            if left <= 0:
                self._lose(f"not renewed for {deadline:g} s (the renew deadline)")
                return
            if self._stopping.wait(left):
                return

    def _lose(self, reason: str) -> None:
        """Once, from either thread: leadership is over as of now."""
        with self._once:
            if self._stopping.is_set():
                return
            self._stopping.set()
        e = self.elector
        e.is_leader = False
        log.warning("%s lost the lease %s/%s: %s", e.identity, e.namespace, e.name, reason)
        if e.on_lost is not None:
            e.on_lost(reason)
        self._wake_renewer()
        try:
            self.caller.call_soon_threadsafe(self.lost.set)
        except RuntimeError:  # the caller's loop is closed: nobody waits
            pass

    def _wake_renewer(self) -> None:
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # its loop has ended
                pass

    async def stop(self) -> None:
        """A clean stop: no more renewals (the caller releases the Lease next), no watchdog."""
        with self._once:
            self._stopping.set()
        self._wake_renewer()
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for t in self._threads:
            t.join()
