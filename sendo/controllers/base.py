"""The one shape of every control loop: informers feed keys into a queue; workers
reconcile each key by comparing desired with observed state and acting.

A reconcile is level-triggered: it reads the current state from the informer caches,
never from the event that queued it, so a missed or merged event changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..client import ApiError, Client, WorkQueue
from ..client.factory import InformerFactory  # noqa: F401  (moved down to client/; controllers import it here)
from ..client.informer import obj_key
from ..tasks import stop_tasks

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def owner_key(obj: Obj, kind: str) -> str | None:
    """ns/name of the controlling owner of obj if it is of the given kind."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            ns = obj["metadata"].get("namespace")
            return f"{ns}/{ref['name']}" if ns else ref["name"]
    return None


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


class Controller:
    """Subclasses set ``name``, build informers in ``setup`` and implement ``reconcile``."""

    name = "controller"
    workers = 1

    def __init__(self, client: Client, informers: "InformerFactory"):
        self.client = client
        self.informers = informers
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task] = []
        self.setup()

    def setup(self) -> None:
        """Register informer handlers that enqueue keys."""

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(obj_key(obj))

    async def reconcile(self, key: str) -> float | None:
        """Make the world match the object named by key. Return seconds to re-check, or None."""
        raise NotImplementedError

    def collectors(self) -> list[Any]:
        """Prometheus metrics of this loop beyond its work queue's (served by `sendo controllers`)."""
        return []

    def running(self) -> bool:
        """Whether every worker is alive (a /readyz check of `sendo controllers`)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        await stop_tasks(self._tasks, f"{type(self).__name__} worker")

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                again = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status != 409:  # a conflict only means the cache was behind: retry quietly
                    log.warning("%s: reconcile %s failed: %s", self.name, key, e)
                self.queue.retry(key)
            except Exception:
                log.exception("%s: reconcile %s failed", self.name, key)
                self.queue.retry(key)
            else:
                self.queue.forget(key)
                if again:
                    self.queue.add_after(key, again)
            finally:
                self.queue.done(key)
