"""The store's schema migrations: an ordered list, one line per migration (schema.py runs them).

The schema version says how sendo lays objects out in its store (keys, stored fields). A
store made by this sendo starts at ``current()``; a store whose version is older is
brought forward on the server's start by the migrations after its version, in order, each
one step (N-1 → N) — only after a snapshot of the store was written (schema.py), which
``sendo upgrade rollback`` returns to.

Adding a migration: write ``async def _vN(store: Store) -> None`` here (it must be safe to
run twice: several servers on one etcd may start at once, and a server killed half-way
runs it again), then add ``Migration(N, "what it changes", _vN)`` at the end of
``MIGRATIONS``. Never change or remove a migration that has shipped.

Version 1 is the layout as it was when the schema version was introduced (stores older
than that carry no version and are version 1). No layout change has been made since, so
there is no migration yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from .base import Store

BASELINE = 1  # the version of a store that carries none (made before versions were written)


@dataclass(frozen=True)
class Migration:
    version: int  # the schema version the store has once this ran
    what: str  # one line for the log
    run: Callable[[Store], Awaitable[None]]


MIGRATIONS: list[Migration] = [
    # Migration(2, "what it changes", _v2),
]


def current(migrations: list[Migration] | None = None) -> int:
    """The schema version this sendo writes: the last migration's, or the baseline."""
    ms = MIGRATIONS if migrations is None else migrations
    return ms[-1].version if ms else BASELINE


def check_order(migrations: list[Migration]) -> None:
    """Each migration is one step after the one before it (a list edited by hand stays sane)."""
    for want, m in enumerate(migrations, start=BASELINE + 1):
        if m.version != want:
            raise ValueError(f"migration {m.what!r} has version {m.version}, expected {want}")
