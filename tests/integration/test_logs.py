"""Container logs followed from a real container of the process runtime."""

import asyncio
import os

from sendo.agent.logs import container_log_path, follow_log


async def test_follow_a_real_container_to_its_end(tmp_path):
    """How the agent wires it: the follow ends once the container's wait() is done,
    and nothing the container wrote before exiting is lost."""
    import signal
    import sys

    from sendo.agent.runtime import ContainerSpec, ProcessRuntime

    rt = ProcessRuntime(str(tmp_path / "state"))
    spec = ContainerSpec(
        "u", "ns", "p", "c", 0,
        [sys.executable, "-c", "for i in range(2000): print(i, flush=True)"],
        {}, None, container_log_path(str(tmp_path / "logs"), "ns", "p", "u", "c", 0),
    )
    h = await rt.start(spec)
    exited = asyncio.create_task(rt.wait(h))
    try:
        chunks = follow_log(spec.log_path, tail_lines=None, is_running=lambda: not exited.done(), poll_interval=0.01)
        data = await asyncio.wait_for(_collect(chunks), 20)
        assert data == "".join(f"{i}\n" for i in range(2000)).encode()
        assert (await exited).exit_code == 0
    finally:
        if not exited.done():
            os.killpg(h.pid, signal.SIGKILL)
        await asyncio.wait_for(exited, 10)
        await rt.close()


async def _collect(agen) -> bytes:
    return b"".join([c async for c in agen])
