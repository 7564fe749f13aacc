"""The dirty-resync loop shared by the service proxy and the ingress controller."""
from __future__ import annotations

import asyncio

from sendo.network.resync import resync_loop
from tests.conftest import wait_until


async def test_syncs_on_dirty_retries_failures_and_pending_work():
    dirty = asyncio.Event()
    calls: list[str] = []
    pending = {"retry": None}

    async def sync() -> None:
        calls.append("sync")
        if len(calls) == 2:
            raise RuntimeError("boom")  # logged, retried: the loop lives on

    task = asyncio.create_task(resync_loop(dirty, sync, "test", lambda: pending["retry"]))
    try:
        dirty.set()
        await wait_until(lambda: len(calls) == 1, 5, what="a sync on dirty")
        dirty.set()
        await wait_until(lambda: len(calls) == 3, 5, what="the failed sync tried again")
        assert not task.done()
        pending["retry"] = 0.01  # something could not be done: retried without a new change
        dirty.set()
        await wait_until(lambda: len(calls) >= 6, 5, what="periodic retries while work is pending")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
