"""Stopping background tasks the same way everywhere: cancel them, wait for each to end,
and log (never swallow) a task that had failed with an error before it was stopped."""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable

log = logging.getLogger(__name__)


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
