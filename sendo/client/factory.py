"""Shared informers: one list+watch cache per kind (and selectors) for every component of
a process, as client-go's SharedInformerFactory gives them.

Components ask the factory for an informer and add their handlers to it; the first
`start` starts it, later ones only wait for it to be synced. The factory's owner stops
them all once. An agent thus keeps one Service watch for its proxy, ingress controller
and DNS, not three; the control loops of `sendo controllers` share theirs the same way.
"""
from __future__ import annotations

import asyncio

from ..kinds.base import Resource
from .informer import Informer
from .rest import Client


class InformerFactory:
    def __init__(self, client: Client):
        self.client = client
        self._informers: dict[tuple, Informer] = {}

    def get(self, r: Resource, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        key = (r.group, r.plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(self.client, r, namespace, label_selector, field_selector)
        return inf

    async def start(self, *informers: Informer, timeout: float = 30.0) -> None:
        """Start those not running yet (all of the factory's when none is named), then wait
        until every one has listed."""
        informers = informers or tuple(self._informers.values())
        for inf in informers:
            if inf._task is None:
                inf.start()
        await asyncio.wait_for(asyncio.gather(*(inf.synced.wait() for inf in informers)), timeout)

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
        self._informers.clear()
