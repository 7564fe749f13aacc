"""Background tasks handled the same way everywhere: stopped by cancelling and waiting
for each (a task that had failed is logged, never swallowed), and woken by an event or
a period, whichever comes first."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable

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


# name → function returning text: state that parts of the process add to the SIGUSR1 dump
DUMP_SECTIONS: dict[str, Callable[[], str]] = {}


def dump_tasks(out=None) -> None:
    """Write every asyncio task of the running loop with where it is waiting now: what
    `kill -USR1 <pid>` prints to stderr, to see what a process that seems stuck is
    waiting for (Go prints its goroutines on SIGQUIT for the same reason)."""
    import io
    import sys
    buf = io.StringIO()
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    buf.write(f"--- {len(tasks)} asyncio tasks ---\n")
    for t in tasks:
        buf.write(f"task {t.get_name()}:\n")
        for line in _awaiting(t.get_coro()):
            buf.write(f"    {line}\n")
    for name, describe in list(DUMP_SECTIONS.items()):
        buf.write(f"--- {name} ---\n")
        try:
            buf.write(describe().rstrip("\n") + "\n")
        except Exception as e:  # a diagnostic must not break the process it describes
            buf.write(f"({name} could not be described: {e!r})\n")
    (out or sys.stderr).write(buf.getvalue())
    (out or sys.stderr).flush()


def install_task_dump() -> None:
    """SIGUSR1 dumps the running loop's tasks (see dump_tasks)."""
    import signal
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    except (NotImplementedError, RuntimeError):  # no signals here (not the main thread)
        pass


def _awaiting(coro) -> list[str]:
    """The chain of coroutines `coro` is suspended in, outermost first (a task's own stack
    shows only its outermost frame)."""
    lines = []
    for _ in range(50):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            if coro is not None:
                lines.append(f"waiting on {coro!r}"[:300])
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return lines


def die_with_parent() -> None:
    """In a child process (a `preexec_fn`): get SIGTERM when the parent dies, even by kill -9,
    so no child outlives the process that supervises it."""
    import ctypes
    import signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def install_profiler() -> None:
    """With SENDO_PROFILE=<path prefix> set: profile this process's event loop thread with
    cProfile (in CPU time) from now on; `kill -USR2 <pid>` writes what was gathered since the last dump
    to <prefix>.<pid>.<n>.prof (read it with `python -m pstats`) and starts afresh. For
    finding where a process spends its CPU; off (and free) unless the variable is set."""
    import os
    prefix = os.environ.get("SENDO_PROFILE")
    if not prefix:
        return
    import cProfile
    import signal
    import time

    def new() -> cProfile.Profile:  # CPU time of this thread: waits and the machine's other load do not count
        p = cProfile.Profile(time.thread_time)
        p.enable()
        return p
    profile, dumps = [new()], [0]
    gc_time = _time_gc()  # the cyclic GC runs outside any Python frame: cProfile does not see it

    def dump() -> None:
        profile[0].disable()
        dumps[0] += 1
        path = f"{prefix}.{os.getpid()}.{dumps[0]}.prof"
        profile[0].dump_stats(path)
        log.warning("profile written to %s; garbage collection since the last: %s", path,
                    ", ".join(f"gen{g} {n}x {s * 1000:.0f} ms" for g, (n, s) in enumerate(gc_time)))
        for g in gc_time:
            g[:] = [0, 0.0]
        profile[0] = new()
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump)
    except (NotImplementedError, RuntimeError):  # no signals here (not the main thread)
        profile[0].disable()


def _time_gc() -> list[list]:
    """[collections, CPU seconds] per generation, counted from now by a gc callback."""
    import gc
    import time
    totals: list[list] = [[0, 0.0] for _ in range(3)]
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            t = totals[info["generation"]]
            t[0] += 1
            t[1] += time.thread_time() - started[0]
    gc.callbacks.append(on_gc)
    return totals


def settle_heap() -> None:
    """Once a long-running process has started (modules, schemas, caches loaded): collect
    once, then move every object alive now out of the cyclic GC's reach (`gc.freeze`).
    They live as long as the process; without this each full collection walks them all
    again (~100 ms of CPU in `sendo up` during a burst of 100 pods, BENCHMARKS.md)."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
