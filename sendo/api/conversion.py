"""Serving a kind in a version other than the one it is stored in (autoscaling/v1
HorizontalPodAutoscaler over the stored autoscaling/v2 objects).

A `Resource` with a `conversion` is served by the same `ResourceAPI` code as any other,
over a `ConvertingStore`: a view of the store in which the kind's keys read in the
served version and are written in the stored one. Every verb (get, list, watch, create,
update, patch, apply, delete, status) therefore sees and answers the served version, and
what it writes is validated in the served version and stored in the other. Keys of other
kinds pass through unchanged (the namespace, quota and admission reads)."""
from __future__ import annotations

import copy
from typing import Any, AsyncIterator

import orjson

from ..kinds.base import Resource
from ..store import KV, Event
from .resources import ResourceAPI


class ConvertingStore:
    """The store as a client of `r`'s version sees it."""

    def __init__(self, store: Any, r: Resource):
        assert r.conversion is not None
        self._store, self._prefix = store, r.prefix()
        self._served, self._stored = r.conversion.to_served, r.conversion.to_stored

    def __getattr__(self, name: str) -> Any:  # revision, count, compact, …: the store's own
        return getattr(self._store, name)

    def _ours(self, key: str) -> bool:
        return key.startswith(self._prefix)

    def served(self, kv: KV | None) -> KV | None:
        if kv is None or not self._ours(kv.key):
            return kv
        return KV.stored(kv.key, orjson.dumps(self._served(orjson.loads(kv.data))), kv.mod_rev, kv.create_rev)

    def _to_store(self, key: str, data: bytes) -> bytes:
        return orjson.dumps(self._stored(orjson.loads(data))) if self._ours(key) else data

    async def get(self, key: str) -> KV | None:
        return self.served(await self._store.get(key))

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]:
        kvs, rev = await self._store.list(prefix, revision)
        return [self.served(kv) for kv in kvs], rev  # type: ignore[misc]

    async def create(self, key: str, data: bytes) -> KV:
        return self.served(await self._store.create(key, self._to_store(key, data)))  # type: ignore[return-value]

    async def update(self, key: str, data: bytes, expected_rev: int | None = None) -> KV:
        return self.served(await self._store.update(  # type: ignore[return-value]
            key, self._to_store(key, data), expected_rev=expected_rev))

    async def delete(self, key: str, expected_rev: int | None = None, data: bytes | None = None) -> KV:
        stored = self._to_store(key, data) if data is not None else None
        return self.served(await self._store.delete(key, expected_rev=expected_rev, data=stored))  # type: ignore

    def watch(self, prefix: str, from_rev: int = 0) -> "ConvertingWatch":
        return ConvertingWatch(self, self._store.watch(prefix, from_rev))


class ConvertingWatch:
    def __init__(self, store: ConvertingStore, watch: Any):
        self._store, self._watch = store, watch

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for ev in self._watch:
            yield Event(ev.type, self._store.served(ev.kv), self._store.served(ev.prev))  # type: ignore[arg-type]

    @property
    def progress(self) -> int:
        return self._watch.progress

    def close(self) -> None:
        self._watch.close()


def api_for(api: ResourceAPI, r: Resource, cache: dict[str, ResourceAPI]) -> ResourceAPI:
    """`api` itself, or for a converted version the same operations over its store view."""
    if r.conversion is None:
        return api
    key = r.api_version + "/" + r.plural
    view = cache.get(key)
    if view is None:
        view = cache[key] = copy.copy(api)
        view.store = ConvertingStore(api.store, r)  # type: ignore[assignment]
    return view
