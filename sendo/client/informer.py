"""Informer: a list+watch cache of one kind, calling handlers on every change.

Level-triggered consumers only need to know *which* object changed; the cache tells
them its current state. After a dropped watch or a 410 Gone it lists again and
reports the differences, so no change is lost across a reconnect.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from ..kinds.base import Resource
from ..tasks import stop_tasks
from .rest import ApiError, Client

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Handler = Callable[[str, Obj, Obj | None], None]  # (event type, object, old object)


def obj_key(obj: Obj) -> str:
    m = obj["metadata"]
    ns = m.get("namespace")
    return f"{ns}/{m['name']}" if ns else m["name"]


class Informer:
    def __init__(self, client: Client, r: Resource, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client = client
        self.r = r
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._task: asyncio.Task | None = None

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self) -> list[Obj]:
        return list(self.cache.values())

    def start(self) -> asyncio.Task:
        self._task = asyncio.create_task(self.run(), name=f"informer-{self.r.plural}")
        return self._task

    async def stop(self) -> None:
        await stop_tasks([self._task], "informer")

    def _emit(self, kind: str, obj: Obj, old: Obj | None) -> None:
        for h in self.handlers:
            try:
                h(kind, obj, old)
            except Exception:
                log.exception("informer handler failed for %s %s", self.r.plural, obj_key(obj))

    async def _relist(self) -> None:
        lst = await self.client.list(self.r, self.namespace, labelSelector=self.label_selector,
                                     fieldSelector=self.field_selector)
        fresh = {obj_key(o): o for o in lst.get("items", [])}
        old = self.cache
        self.cache = fresh
        self.resource_version = lst["metadata"]["resourceVersion"]
        for k, o in fresh.items():
            prev = old.get(k)
            if prev is None:
                self._emit("ADDED", o, None)
            elif prev["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
                self._emit("MODIFIED", o, prev)
        for k, o in old.items():
            if k not in fresh:
                self._emit("DELETED", o, o)
        self.synced.set()

    async def run(self) -> None:
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for kind, obj in self.client.watch(
                        self.r, self.namespace, resourceVersion=self.resource_version, allowWatchBookmarks=True,
                        labelSelector=self.label_selector, fieldSelector=self.field_selector,
                        timeoutSeconds=random.randint(300, 600)):
                    backoff = 0.1
                    rv = obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if kind == "BOOKMARK":
                        continue
                    k = obj_key(obj)
                    old = self.cache.get(k)
                    if kind == "DELETED":
                        self.cache.pop(k, None)
                    else:
                        self.cache[k] = obj
                    self._emit(kind, obj, old)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status == 410:
                    need_list = True
                    continue
                log.warning("watch of %s failed: %s", self.r.plural, e)
                need_list = True
            except Exception as e:
                log.debug("watch of %s dropped: %s", self.r.plural, e)
                need_list = True
            await asyncio.sleep(backoff)  # back-off before reconnecting
            backoff = min(backoff * 2, 5.0)
