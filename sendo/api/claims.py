"""Allocations several API servers can make at once: one store key per value handed out.

This is Kubernetes' RangeAllocation idea at the grain of one value (as its newer
IPAddress objects are): creating ``/registry/ranges/<range>/<value>`` is the
compare-and-swap. Of two servers that pick the same address at the same moment, one
create fails and that server picks again.

A claim names the object it was made for, the server that made it and when. It ends
once that object does not hold the value and the write it was made for is over; the
allocator that asks knows which (``busy``). An ended claim is taken over with a
compare-and-swap on its revision, so a deleted Service's address is free at once and
no clean-up pass is needed. (A dry run or a refused create leaves a claim that has
ended as soon as its request has: admission steps do not know which writes are real.)
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson

from ..store import Conflict, KeyExists, KeyNotFound, Store
from ..store.versioner import encode

PREFIX = "/registry/ranges/"
IN_FLIGHT_SECONDS = 60.0  # another server's claim is taken to be in flight this long (its task is not visible)


@dataclass(frozen=True, slots=True)
class Claim:
    value: str
    owner: str  # the key of the object the value was claimed for
    server: str
    time: float
    mod_rev: int


class RangeClaims:
    """The claims on one range (service IPs, node ports, pod CIDR blocks) in one store."""

    def __init__(self, store: Store, name: str, server: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.prefix = f"{PREFIX}{name}/"
        self.server = server or uuid.uuid4().hex  # this allocator's identity in its claims
        self.clock = clock
        self._parsed: dict[str, Claim] = {}  # key -> claim, re-read when its revision moves

    def _key(self, value: str) -> str:
        return self.prefix + value.replace("/", "-")

    def _claim_of(self, kv) -> Claim:
        c = self._parsed.get(kv.key)
        if c is None or c.mod_rev != kv.mod_rev:
            body = orjson.loads(kv.data)
            c = Claim(body.get("value", ""), body.get("owner", ""), body.get("server", ""),
                      float(body.get("time", 0)), kv.mod_rev)
            self._parsed[kv.key] = c
        return c

    async def foreign_in_flight(self) -> dict[str, str]:
        """value -> owner of what another server claimed recently: its write may not be stored yet."""
        kvs, _ = await self.store.list(self.prefix)
        out = {}
        for kv in kvs:
            c = self._claim_of(kv)
            if self.in_flight_elsewhere(c):
                out[c.value] = c.owner
        if len(self._parsed) > 2 * len(kvs) + 64:  # forget claims gone from the store
            live = {kv.key for kv in kvs}
            self._parsed = {k: c for k, c in self._parsed.items() if k in live}
        return out

    def in_flight_elsewhere(self, c: Claim) -> bool:
        return c.server != self.server and self.clock() - c.time < IN_FLIGHT_SECONDS

    async def claim(self, value: str, owner: str, busy: Callable[[Claim], bool | Awaitable[bool]]) -> bool:
        """Make ``value`` ours for ``owner``; False if a claim that has not ended holds it.

        ``busy(claim)``: whether an existing claim still holds its value (its object has it,
        or its write is in flight); it may be a coroutine function (to read the object)."""
        key = self._key(value)
        data = encode({"kind": "Claim", "metadata": {"name": value}, "value": value, "owner": owner,
                       "server": self.server, "time": self.clock()})
        for _ in range(3):
            try:
                await self.store.create(key, data)
                return True
            except KeyExists:
                pass
            kv = await self.store.get(key)
            if kv is None:
                continue  # released meanwhile: create again
            held = busy(self._claim_of(kv))
            if held if isinstance(held, bool) else await held:
                return False
            try:
                await self.store.update(key, data, expected_rev=kv.mod_rev)
                return True
            except (Conflict, KeyNotFound):
                continue  # someone else took it over or let it go: look again
        return False
