"""Snapshots on a schedule, with retention (`sendo server --snapshot-schedule CRON --snapshot-retention N`).

k3s's idea for its etcd (``--etcd-snapshot-schedule-cron``): a cron expression (croniter:
five fields, a sixth for seconds, or a descriptor such as ``@hourly``; UTC) says when a
snapshot is taken; after each one the oldest scheduled snapshots beyond the retention
are deleted (``scheduled-*`` files only: snapshots a user took and the one written before a
migration are never pruned by a schedule). Each snapshot, or its failure, is reported
through ``report`` (the server makes an Event of it and logs one line).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from croniter import croniter

from . import snapshot

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE = "0 */12 * * *"  # k3s's defaults
DEFAULT_RETENTION = 5


def check_schedule(expr: str) -> str:
    """The expression, or ValueError saying why croniter cannot read it ("" turns the schedule off)."""
    if expr and not croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a cron expression (five fields such as '0 */12 * * *', or @daily …)")
    return expr


@dataclass
class Taken:
    info: snapshot.SnapshotInfo | None  # None: it failed
    pruned: list[str]
    error: str = ""


class SnapshotSchedule:
    def __init__(self, expr: str, retention: int, data_dir: str, datastore: str | None,
                 report: Callable[[Taken], Awaitable[None]]):
        self.expr, self.retention = check_schedule(expr), retention
        self.data_dir, self.datastore, self.report = data_dir, datastore, report
        self._task: asyncio.Task | None = None

    def next_after(self, t: dt.datetime) -> dt.datetime:
        return croniter(self.expr, t).get_next(dt.datetime)

    def start(self) -> None:
        if self.expr:
            self._task = asyncio.create_task(self._run(), name="snapshot-schedule")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        nxt = self.next_after(dt.datetime.now(dt.timezone.utc))
        while True:
            await asyncio.sleep(max((nxt - dt.datetime.now(dt.timezone.utc)).total_seconds(), 0))
            await self.take()
            # the next time after now: a snapshot that took longer than the interval skips the missed ones
            nxt = self.next_after(max(nxt, dt.datetime.now(dt.timezone.utc)))

    async def take(self) -> Taken:
        try:
            info = await asyncio.to_thread(snapshot.save, self.data_dir, self.datastore, None, snapshot.SCHEDULED)
            pruned = await asyncio.to_thread(snapshot.prune, self.data_dir, self.retention, snapshot.SCHEDULED)
            taken = Taken(info, pruned)
            log.warning("scheduled snapshot %s at revision %d (%d keys, %d bytes); %d kept, pruned: %s", info.path,
                        info.revision, info.keys, info.size, self.retention, ", ".join(pruned) or "none")
        except Exception as e:  # a full disk, an etcd that does not answer: reported, retried next time
            taken = Taken(None, [], str(e))
            log.warning("scheduled snapshot failed: %s", e)
        try:
            await self.report(taken)
        except Exception as e:
            log.warning("could not report the scheduled snapshot: %s", e)
        return taken
