"""Background tasks handled the same way everywhere: stopped by cancelling and waiting
for each (a task that had failed is logged, never swallowed), and woken by an event or
a period, whichever comes first."""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set. For loops
    that wake on a signal but also act on a period (resyncs, back-offs)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False


async def stop_tasks(tasks: Iterable[asyncio.Task | asyncio.Future | None], what: str = "task") -> None:
    """Cancel every task, then wait for all of them. A task that ended with an exception
    other than its cancellation is logged with its traceback, naming `what` it was."""
    pending = [t for t in tasks if t is not None]
    for t in pending:
        t.cancel()
    for t, result in zip(pending, await asyncio.gather(*pending, return_exceptions=True)):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("%s %s had failed: %r", what, getattr(t, "get_name", lambda: "?")(), result,
                      exc_info=result)
