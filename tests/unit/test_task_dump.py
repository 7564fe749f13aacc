"""`kill -USR1 <pid>`: a sendo process prints where each of its asyncio tasks waits, and
the state its parts registered (e.g. the agent's pod workers)."""
from __future__ import annotations

import asyncio
import io
import os
import signal

from sendo.tasks import DUMP_SECTIONS, dump_tasks, install_task_dump


async def _inner_wait(ev: asyncio.Event) -> None:
    await ev.wait()


async def _outer(ev: asyncio.Event) -> None:
    await _inner_wait(ev)


async def test_dump_shows_each_task_down_to_where_it_waits():
    ev = asyncio.Event()
    t = asyncio.create_task(_outer(ev), name="worker-for-the-dump")
    DUMP_SECTIONS["pods"] = lambda: "pod default/a waiting=CreateContainerConfigError"
    DUMP_SECTIONS["broken"] = lambda: 1 / 0
    try:
        await asyncio.sleep(0)
        out = io.StringIO()
        dump_tasks(out)
        text = out.getvalue()
        block = text[text.index("task worker-for-the-dump:"):]
        assert "in _outer" in block and "in _inner_wait" in block  # the whole await chain, not the top frame
        assert "--- pods ---\npod default/a waiting=CreateContainerConfigError" in text
        assert "broken could not be described: ZeroDivisionError" in text  # a bad section does not stop the dump
    finally:
        DUMP_SECTIONS.pop("pods")
        DUMP_SECTIONS.pop("broken")
        ev.set()
        await t


async def test_sigusr1_writes_the_dump(capfd):
    install_task_dump()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):  # the handler runs on the loop's next turn
            await asyncio.sleep(0.01)
            err = capfd.readouterr().err
            if "asyncio tasks ---" in err:
                break
        assert "asyncio tasks ---" in err and "test_sigusr1_writes_the_dump" in err
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
