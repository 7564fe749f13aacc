"""The shape every control loop shares (controllers/base.py): workers, retries, one key at a time."""
import asyncio
import logging

import pytest

from sendo.client import ApiError
from sendo.controllers.base import Controller
from tests.waiting import wait_until


class Scripted(Controller):
    """Reconciles by the script: each call takes the next outcome (an exception to raise,
    a number of seconds to look again after, or None) and may wait on a gate."""
    name = "scripted"
    workers = 4

    def setup(self) -> None:
        self.script: list = []
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlap = False
        self.gate: asyncio.Event | None = None

    async def reconcile(self, key: str) -> float | None:
        self.overlap |= key in self.running
        self.running.add(key)
        self.calls.append(key)
        try:
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.script.pop(0) if self.script else None
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        finally:
            self.running.discard(key)


@pytest.fixture
async def ctl(fake_api):
    c = fake_api.build(Scripted)
    await c.start()
    return c


async def test_failures_are_retried_until_a_success_which_resets_the_back_off(ctl, caplog):
    ctl.script = [ApiError(409, {"reason": "Conflict"}), ApiError(500, {"message": "down"}), RuntimeError("boom")]
    with caplog.at_level(logging.WARNING, logger="sendo.controllers.base"):
        ctl.queue.add("a")
        await wait_until(lambda: len(ctl.calls) == 4 and not ctl.running, what="three failures then a success")
    assert ctl.queue._failures == {}
    logged = caplog.text
    assert "Conflict" not in logged  # a conflict only means the cache was behind: quiet
    assert "down" in logged and "boom" in logged  # every other failure is logged, not dropped


async def test_a_key_is_never_reconciled_twice_at_once_but_a_change_meanwhile_is_not_lost(ctl):
    ctl.gate = asyncio.Event()
    ctl.queue.add("a")
    await wait_until(lambda: ctl.running == {"a"}, what="the first pass running")
    ctl.queue.add("a")  # changed while being reconciled
    ctl.queue.add("b")
    await wait_until(lambda: ctl.running == {"a", "b"}, what="another key runs alongside")
    ctl.gate.set()
    await wait_until(lambda: ctl.calls.count("a") == 2 and not ctl.running, what="the second pass of a")
    assert not ctl.overlap


async def test_a_reconcile_that_asks_to_look_again_is_queued_again(ctl):
    ctl.script = [0.01, None]
    ctl.queue.add("a")
    await wait_until(lambda: len(ctl.calls) == 2 and not ctl.running, what="the second look")
    assert ctl.calls == ["a", "a"]
