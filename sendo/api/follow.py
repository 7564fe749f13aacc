"""Keeping in-memory state of the API server up to date from the store: one watch on a
prefix, started again (after a re-read) when the store ends it (compacted, fell behind)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ..store import Event, Store, StoreError

log = logging.getLogger(__name__)


async def follow(store: Store, prefix: str, rev: int, on_event: Callable[[Event], None],
                 reread: Callable[[], Awaitable[int]]) -> None:
    """Call ``on_event`` for every event under ``prefix`` after ``rev``, forever. When the
    watch ends, ``reread`` brings the state back from the store and returns the revision to
    go on from."""
    while True:
        try:
            watch = store.watch(prefix, rev)
            try:
                async for ev in watch:
                    rev = ev.kv.mod_rev
                    on_event(ev)
            finally:
                watch.close()
        except StoreError as e:
            log.warning("the watch of %s ended (%s); reading it again", prefix, e)
        rev = await reread()
        await asyncio.sleep(0.1)  # a bounded restart rate if the store keeps refusing
