"""The loop the proxy and the ingress controller share: level-triggered re-sync of the
whole desired state whenever a cache changes (`dirty`), and periodically while something
is still pending (a port that could not be bound yet)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)
FAILURE_BACKOFF = 1.0  # seconds before retrying a sync that raised


async def resync_loop(dirty: asyncio.Event, sync: Callable[[], Awaitable[None]], what: str,
                      retry_in: Callable[[], float | None]) -> None:
    """Run `sync` each time `dirty` is set, or after `retry_in()` seconds when that is not
    None. A sync that fails unexpectedly is logged and tried again; it never ends the loop."""
    while True:
        try:
            await asyncio.wait_for(dirty.wait(), retry_in())
        except asyncio.TimeoutError:
            pass
        dirty.clear()
        try:
            await sync()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s sync failed", what)
            await asyncio.sleep(FAILURE_BACKOFF)  # back-off after an unexpected failure
            dirty.set()
