"""The one way tests wait: poll a condition until it holds or a deadline passes.

Tests never sleep a fixed time and then assert: on a loaded machine the sleep is too
short, on an idle one it is wasted, and a "nothing happened" check after a sleep passes
even when the component never ran. A condition may return any truthy value (returned
to the caller) or raise AssertionError to say why it is not met yet; the last such
reason is shown when the deadline passes.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


class _Deadline:
    """The deadline and the last reason a condition gave, shared by both waits."""

    def __init__(self, timeout: float, what: str):
        self.timeout, self.what = timeout, what
        self.at = time.monotonic() + timeout
        self.last: AssertionError | None = None

    def reached(self, value: Any) -> bool:
        """True once value holds; raises when the deadline has passed without it."""
        if value:
            return True
        if time.monotonic() > self.at:
            extra = f" (last: {self.last})" if self.last else ""
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.what}{extra}")
        return False


async def wait_until(cond: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0,
                     interval: float = 0.05, what: str = "condition") -> Any:
    """Await cond (sync or async) until it is truthy and return its value."""
    d = _Deadline(timeout, what)
    while True:
        try:
            r = cond()
            if asyncio.iscoroutine(r):
                r = await r
        except AssertionError as e:
            r, d.last = None, e
        if d.reached(r):
            return r
        await asyncio.sleep(interval)  # poll interval of a deadline-bounded wait


def poll(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
         what: str = "condition") -> Any:
    """The synchronous twin of wait_until, for tests that drive subprocesses (e2e)."""
    d = _Deadline(timeout, what)
    while True:
        try:
            r = cond()
        except AssertionError as e:
            r, d.last = None, e
        if d.reached(r):
            return r
        time.sleep(interval)  # poll interval of a deadline-bounded wait
