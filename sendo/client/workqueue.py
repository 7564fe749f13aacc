"""A work queue of object keys, as controllers use it.

A key is queued at most once; a key being reconciled that changes again is queued
again when its reconcile finishes, so one key is never reconciled twice at once.
Failed keys come back with exponential back-off.
"""
from __future__ import annotations

import asyncio


class WorkQueue:
    def __init__(self, base_delay: float = 0.05, max_delay: float = 30.0):
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.adds = 0  # workqueue_adds_total: keys queued (a key already waiting is not counted)
        self.retries = 0  # workqueue_retries_total: keys queued again after a failure

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        t = self._timers.get(key)
        when = asyncio.get_running_loop().time() + delay
        if t is not None:
            if t.when() <= when:
                return
            t.cancel()
        self._timers[key] = asyncio.get_running_loop().call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: str) -> None:
        self.retries += 1
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    async def get(self) -> str:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return self._queue.qsize()
