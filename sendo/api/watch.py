"""Watch streams: store events turned into Kubernetes watch events (chunked NDJSON).

Selectors apply to events the Kubernetes way: an object that stops matching is sent
as DELETED, one that starts matching as ADDED. Without selectors the stored bytes
are framed as they are, never re-serialised.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator, Callable

import orjson

from ..kinds.base import Resource
from ..store import Compacted, Event, StoreError
from .errors import APIError, gone
from .table import METADATA, transform

BOOKMARK_INTERVAL = 60.0


def _frame(kind: str, value: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + value + b"}\n"


def error_frame(err: APIError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n"


class WatchStream:
    def __init__(self, store, r: Resource, ns: str | None, match: Callable[[dict], bool] | None,
                 resource_version: str | None, timeout: float | None, bookmarks: bool,
                 send_initial: bool | None, form: str | None = None):
        self.store, self.r, self.match = store, r, match
        self.form = form  # None: the objects themselves; else a form of table.py (Table, metadata only)
        self.bookmarks = bookmarks
        self.timeout = timeout if timeout is not None else random.uniform(1800, 3600)
        rv = resource_version or ""
        # rv "" or "0": start with the current state as ADDED events (Kubernetes semantics)
        self.initial = send_initial if send_initial is not None else rv in ("", "0")
        self.initial_end_bookmark = bool(send_initial)
        self.prefix = prefix = r.prefix(ns)
        self.watch = None  # with initial events: opened at the revision of the list that gives them
        if not self.initial:
            try:
                from_rev = int(rv)
            except ValueError:
                raise APIError(400, f'invalid resourceVersion "{rv}": must be an integer', "BadRequest")
            try:
                self.watch = store.watch(prefix, from_rev)
            except Compacted as e:
                raise gone(f"too old resource version: {e.requested} ({e.compact_rev})")
            except StoreError as e:
                raise gone(str(e))

    def _encode(self, kind: str, value: bytes, obj: dict | None = None) -> bytes:
        if self.form is None:
            return _frame(kind, value)
        obj = obj if obj is not None else orjson.loads(value)
        t = transform(self.r, self.form, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                      None)
        return _frame(kind, orjson.dumps(t))

    def _bookmark(self, annotations: dict[str, str] | None = None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.watch.progress)}
        if annotations:
            meta["annotations"] = annotations
        kind, api_version = (METADATA, "meta.k8s.io/v1") if self.form == METADATA else (self.r.kind,
                                                                                         self.r.api_version)
        return _frame("BOOKMARK", orjson.dumps({"kind": kind, "apiVersion": api_version, "metadata": meta}))

    def translate(self, ev: Event) -> bytes | None:
        match = self.match
        if match is None:
            kind = {"create": "ADDED", "update": "MODIFIED", "delete": "DELETED"}[ev.type]
            return self._encode(kind, ev.kv.value)
        obj = orjson.loads(ev.kv.value)
        now = match(obj)
        if ev.type == "create":
            return self._encode("ADDED", ev.kv.value, obj) if now else None
        before = ev.prev is not None and match(orjson.loads(ev.prev.value))
        if ev.type == "delete":
            return self._encode("DELETED", ev.kv.value, obj) if (now or before) else None
        if now and before:
            return self._encode("MODIFIED", ev.kv.value, obj)
        if now:
            return self._encode("ADDED", ev.kv.value, obj)
        if before:
            return self._encode("DELETED", ev.kv.value, obj)
        return None

    async def stream(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        initial_items: list = []
        try:
            if self.watch is None:
                try:
                    initial_items, rev = await self.store.list(self.prefix)
                    self.watch = self.store.watch(self.prefix, rev)
                except StoreError as e:
                    yield error_frame(APIError(503, f"the datastore is unavailable: {e}", "ServiceUnavailable"))
                    return
            for kv in initial_items:
                if self.match is None:
                    yield self._encode("ADDED", kv.value)
                else:
                    obj = orjson.loads(kv.value)
                    if self.match(obj):
                        yield self._encode("ADDED", kv.value, obj)
            initial_items = []
            if self.initial_end_bookmark and self.bookmarks:
                yield self._bookmark({"k8s.io/initial-events-end": "true"})
            it = self.watch.__aiter__()
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return
                try:
                    async with asyncio.timeout(min(left, BOOKMARK_INTERVAL)):
                        ev = await it.__anext__()
                except TimeoutError:
                    if self.bookmarks and loop.time() < deadline:
                        yield self._bookmark()
                    continue
                except StopAsyncIteration:
                    return
                except StoreError as e:
                    yield error_frame(gone(f"watch closed: {e}"))
                    return
                out = self.translate(ev)
                if out is not None:
                    yield out
        finally:
            if self.watch is not None:
                self.watch.close()
