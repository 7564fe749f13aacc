"""Events: what controllers, the scheduler and agents tell people through `kubectl describe`.

Repeats of the same event for the same object are folded into one Event with a
count, as Kubernetes does, so a crash loop does not flood the store. `emit` queues
the event and returns at once: the work that caused it never waits for it, and when
too many are pending the newest are dropped rather than slowing the cluster.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from ..kinds.meta import micro_now, now_rfc3339, random_suffix
from ..tasks import stop_tasks
from .rest import ApiError, Client, kind

log = logging.getLogger(__name__)
Obj = dict[str, Any]


MAX_PENDING = 5000
WRITERS = 4
SPAM_BURST = 25  # events one component may record about one object at once (Kubernetes' default)
SPAM_REFILL_SECONDS = 300.0  # then one more every five minutes


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = ""):
        self.client = client
        self.component = component
        self.host = host
        self.events = kind("events")
        self._seen: dict[str, tuple[str, int]] = {}  # fold key -> (event name, count)
        self._queue: asyncio.Queue | None = None
        self._writers: list[asyncio.Task] = []
        self._buckets: dict[str, tuple[float, float]] = {}  # object uid -> (tokens, last refill)

    def _allowed(self, obj: Obj) -> bool:
        """Kubernetes' spam filter: a token bucket per (component, object), so a ReplicaSet
        creating 100 pods records about 25 SuccessfulCreate events, not 100."""
        uid = obj.get("metadata", {}).get("uid") or obj.get("metadata", {}).get("name", "")
        now = time.monotonic()
        tokens, last = self._buckets.get(uid, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL_SECONDS)
        if tokens < 1.0:
            self._buckets[uid] = (tokens, now)
            return False
        if len(self._buckets) > 50_000:
            self._buckets.clear()
        self._buckets[uid] = (tokens - 1.0, now)
        return True

    def emit(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """Record in the background (best effort)."""
        if not self._allowed(obj):
            return
        if self._queue is None:
            self._queue = asyncio.Queue(MAX_PENDING)
            self._writers = [asyncio.create_task(self._drain(), name=f"events-{self.component}-{i}")
                             for i in range(WRITERS)]
        try:
            self._queue.put_nowait((obj, type, reason, message))
        except asyncio.QueueFull:
            log.debug("dropping event %s for %s", reason, obj.get("metadata", {}).get("name"))

    async def _drain(self) -> None:
        queue = self._queue
        assert queue is not None  # _drain runs only once the queue exists
        while True:
            args = await queue.get()
            await self.record(*args)

    async def close(self) -> None:
        await stop_tasks(self._writers, "event writer")
        self._writers, self._queue = [], None

    async def record(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """Best effort: an event that cannot be written is logged, never raised."""
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or "default"
        ref = {"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "name": meta.get("name"),
               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
               "resourceVersion": meta.get("resourceVersion")}
        fold = hashlib.sha1(f"{meta.get('uid')}|{type}|{reason}|{message}".encode()).hexdigest()
        now = now_rfc3339()
        try:
            seen = self._seen.get(fold)
            if seen is not None:
                name, count = seen
                try:
                    await self.client.patch(self.events, ns, name, {"count": count + 1, "lastTimestamp": now})
                    self._seen[fold] = (name, count + 1)
                    return
                except ApiError as e:
                    if e.status != 404:
                        raise
            name = f"{meta.get('name')}.{random_suffix(10)}"
            ev = {"apiVersion": "v1", "kind": "Event",
                  "metadata": {"name": name, "namespace": ns},
                  "involvedObject": {k: v for k, v in ref.items() if v},
                  "reason": reason, "message": message, "type": type, "count": 1,
                  "firstTimestamp": now, "lastTimestamp": now, "eventTime": None,
                  "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                  "reportingComponent": self.component, "reportingInstance": self.host or self.component}
            await self.client.create(self.events, ev, ns)
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[fold] = (name, 1)
        except Exception as e:
            log.debug("could not record event %s for %s: %s", reason, meta.get("name"), e)


__all__ = ["EventRecorder", "micro_now"]
