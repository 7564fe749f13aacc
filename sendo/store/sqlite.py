"""SQLite store: one table as a revision log (the kine design), WAL mode, group commit.

Every write appends a row whose primary key is the new global revision. The newest
row of a key is its current value; a row with deleted=1 is a tombstone. Rows hold
objects without their resourceVersion (``versioner.py``). Old rows are compacted in
the background; the file's table and space reclamation live in ``sqlite_schema.py``.

This process is the store's only writer, so the latest value of every key is also
kept in memory (a sorted map): gets, lists and watches at the current revision never
touch the disk. Writes are queued and committed in batches by one writer task (one
fsync for many writes); a write is acknowledged only after its batch is durable, and
only then becomes visible to readers and watchers. Recent events are kept in a ring
bounded by count and by bytes for watchers; older ones are read from the table.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from sortedcontainers import SortedDict

from ..private import create_private, private_dir, tighten
from ..tasks import stop_tasks
from .encryption import IDENTITY, Transformer
from .base import KV, Compacted, Conflict, DatastoreURLError, Event, KeyExists, KeyNotFound, StoreError
from .sqlite_schema import compact_rows, prepare

log = logging.getLogger(__name__)

MAX_BATCH = 2000
WATCH_QUEUE_LIMIT = 50_000  # a watcher further behind than this is closed; its client re-lists
RING_BYTES = 64 << 20  # recent events kept in memory, by stored size; older ones are read from the table
WATCH_QUEUE_BYTES = 64 << 20  # a watcher with more unread than this is closed too
HISTORY_CHUNK = 256  # events read from the table at a time for a watch that starts in the past


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string that starts with prefix."""
    return prefix + "\U0010ffff"


@dataclass(slots=True)
class _Op:
    kind: str
    key: str
    data: bytes | None
    expected_rev: int | None
    future: asyncio.Future


@dataclass(eq=False)
class SQLiteWatch:
    """A subscription: events for keys under prefix with revision > after."""

    store: "SQLiteStore"
    prefix: str
    after: int
    backfill_to: int = 0  # history (after, backfill_to] comes from the database first, in chunks
    history: collections.deque = field(default_factory=collections.deque)  # the chunk being served
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)  # live events, served after the history
    queued_bytes: int = 0
    closed: bool = False
    error: Exception | None = None

    def __aiter__(self):
        return self

    @property
    def progress(self) -> int:
        """Every event under the prefix up to this revision has been delivered (events are queued
        as they are committed, so a drained watcher has seen all of them)."""
        if self.backfill_to or not self.queue.empty():
            return self.after
        return self.store.revision

    async def __anext__(self) -> Event:
        while self.backfill_to:
            if self.history:
                return self.history.popleft()
            if self.after < self.store.compact_revision:  # compacted between two chunks
                raise Compacted(self.after, self.store.compact_revision)
            chunk = await self.store._history(self.prefix, self.after, self.backfill_to)
            if not chunk:
                self.backfill_to = 0
                break
            self.after = chunk[-1].kv.mod_rev
            self.history.extend(chunk)
        item = await self.queue.get()
        if item is None:
            if self.error:
                raise self.error
            raise StopAsyncIteration
        self.queued_bytes -= item.kv.size
        return item

    def _put(self, ev: Event) -> None:
        self.queued_bytes += ev.kv.size
        self.queue.put_nowait(ev)

    def push(self, ev: Event) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= WATCH_QUEUE_LIMIT or self.queued_bytes + ev.kv.size > self.store.watch_queue_bytes:
            # a watcher this far behind is closed; its client re-lists. What it had not read is let go now
            self.error = StoreError("watcher fell too far behind")
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queued_bytes = 0
            self.close()
            return
        self._put(ev)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._unsubscribe(self)
            self.queue.put_nowait(None)


class SQLiteStore:
    def __init__(self, path: str, *, compact_interval: float = 60.0, compact_keep: int = 10_000,
                 ring_size: int = 50_000, ring_bytes: int = RING_BYTES, watch_queue_bytes: int = WATCH_QUEUE_BYTES):
        self.path = path
        # what values go through on their way to and from the disk (Secrets sealed: encryption.py)
        self.transformer: Transformer = IDENTITY
        self.compact_interval = compact_interval
        self.compact_keep = compact_keep
        self.ring_size = ring_size
        self.ring_bytes = ring_bytes
        self.watch_queue_bytes = watch_queue_bytes
        self._ring_used = 0  # bytes of the values in _ring
        self._rev = 0
        self._compact_rev = 0
        self._latest: SortedDict = SortedDict()  # key -> KV
        self._ring: list[Event] = []  # recent events, revision order
        self._ring_revs: list[int] = []
        self._watchers: dict[str, set[SQLiteWatch]] = {}
        self._queue: asyncio.Queue[_Op] | None = None
        self._tasks: list[asyncio.Task] = []
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-read")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> "SQLiteStore":
        """``sqlite:///abs/path/state.db`` (or ``sqlite://relative/path``)."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path or parts.query or parts.fragment:
            raise DatastoreURLError(f"{url!r}: a SQLite datastore is sqlite:///path/to/state.db")
        return cls(path)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_pool, self._open_writer)
        await loop.run_in_executor(self._reader_pool, self._open_reader)
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._writer(), name="sqlite-writer"),
                       asyncio.create_task(self._compactor(), name="sqlite-compactor")]
        sealed = await self.reseal()  # values written before encryption was on, or under an older key
        if sealed:
            log.warning("sealed %d stored values again (now: %s)", sealed,
                        self.transformer.primary or "plaintext, the identity provider is first")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss too
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _open_writer(self) -> None:
        private_dir(os.path.dirname(os.path.abspath(self.path)))
        create_private(self.path)  # 0600 before SQLite opens it: its -wal and -shm get the same mode
        for extra in (self.path + "-wal", self.path + "-shm"):
            if os.path.exists(extra):
                tighten(extra)
        conn = self._wconn = self._connect()
        prepare(conn)
        row = conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()
        self._compact_rev = row[0] if row else 0
        row = conn.execute("SELECT MAX(rev) FROM kv").fetchone()
        self._rev = max(row[0] or 0, self._compact_rev)
        cur = conn.execute(
            "SELECT k.key, k.value, k.rev, k.create_rev FROM kv k "
            "JOIN (SELECT key, MAX(rev) AS r FROM kv GROUP BY key) m ON k.rev = m.r "
            "WHERE k.deleted = 0")
        opened = self.transformer.from_disk
        for key, value, rev, create_rev in cur:
            self._latest[key] = KV.stored(key, opened(key, value), rev, create_rev)

    def _open_reader(self) -> None:
        self._rconn = self._connect()

    async def close(self) -> None:
        await stop_tasks(self._tasks, "store task")
        self._tasks = []
        for ws in list(self._watchers.values()):
            for w in list(ws):
                w.close()
        loop = asyncio.get_running_loop()
        if self._wconn:
            await loop.run_in_executor(self._writer_pool, self._wconn.close)
        if self._rconn:
            await loop.run_in_executor(self._reader_pool, self._rconn.close)
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)

    # ----------------------------------------------------------------- reads
    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact_rev

    async def get(self, key: str) -> KV | None:
        return self._latest.get(key)

    def get_nowait(self, key: str) -> KV | None:
        return self._latest.get(key)

    async def latest_revision(self) -> int:
        return self._rev  # this process is the only writer

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]:
        if revision == 0 or revision >= self._rev:
            if revision > self._rev:
                raise StoreError(f"revision {revision} is in the future (current {self._rev})")
            return self.list_nowait(prefix), self._rev
        if revision < self._compact_rev:
            raise Compacted(revision, self._compact_rev)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, self._list_at, prefix, revision), revision

    def list_nowait(self, prefix: str) -> list[KV]:
        latest = self._latest
        return [latest[k] for k in latest.irange(prefix, prefix_end(prefix))]

    async def count(self, prefix: str) -> int:
        return sum(1 for _ in self._latest.irange(prefix, prefix_end(prefix)))

    def _list_at(self, prefix: str, revision: int) -> list[KV]:
        cur = self._rconn.execute(
            "SELECT k.key, k.value, k.rev, k.create_rev FROM kv k JOIN "
            "(SELECT key, MAX(rev) AS r FROM kv WHERE key >= ? AND key < ? AND rev <= ? GROUP BY key) m "
            "ON k.rev = m.r WHERE k.deleted = 0 ORDER BY k.key",
            (prefix, prefix_end(prefix), revision))
        opened = self.transformer.from_disk
        return [KV.stored(key, opened(key, value), rev, crev) for key, value, rev, crev in cur]

    # ----------------------------------------------------------------- writes
    def _submit(self, kind: str, key: str, data: bytes | None, expected_rev: int | None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self._queue is None:
            raise StoreError("store is not started")
        self._queue.put_nowait(_Op(kind, key, data, expected_rev, fut))
        return fut

    async def create(self, key: str, data: bytes) -> KV:
        return await self._submit("create", key, data, None)

    async def update(self, key: str, data: bytes, expected_rev: int | None = None) -> KV:
        return await self._submit("update", key, data, expected_rev)

    async def delete(self, key: str, expected_rev: int | None = None, data: bytes | None = None) -> KV:
        return await self._submit("delete", key, data, expected_rev)

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            rev = self._rev
            overlay: dict[str, KV | None] = {}
            rows, events, done = [], [], []
            for op in batch:
                if op.future.cancelled():
                    continue
                cur = overlay[op.key] if op.key in overlay else self._latest.get(op.key)
                try:
                    ev, row = self._apply(op, cur, rev + 1)
                except Exception as e:  # refused: exists, missing, conflict
                    done.append((op, e))
                    continue
                rev += 1
                overlay[op.key] = None if ev.type == "delete" else ev.kv
                rows.append(row)
                events.append(ev)
                done.append((op, ev.kv))
            if rows:
                try:
                    await loop.run_in_executor(self._writer_pool, self._commit, rows)
                except Exception as e:
                    log.exception("commit failed")
                    err = StoreError(f"storage commit failed: {e}")
                    done = [(op, r if isinstance(r, Exception) else err) for op, r in done]
                    events = []
                else:
                    self._rev = rev
                    for key, kv in overlay.items():
                        if kv is None:
                            self._latest.pop(key, None)
                        else:
                            self._latest[key] = kv
                    self._publish(events)
            for op, result in done:
                if op.future.done():
                    continue
                if isinstance(result, Exception):
                    op.future.set_exception(result)
                else:
                    op.future.set_result(result)

    @staticmethod
    def _apply(op: _Op, cur: KV | None, rev: int) -> tuple[Event, tuple]:
        if op.kind == "create":
            if cur is not None:
                raise KeyExists(op.key)
            kv = KV.stored(op.key, op.data, rev, rev)
            return Event("create", kv, None), (rev, op.key, 1, 0, rev, 0, kv.data)
        if cur is None:
            raise KeyNotFound(op.key)
        if op.expected_rev is not None and op.expected_rev != cur.mod_rev:
            raise Conflict(cur.mod_rev)
        if op.kind == "update":
            kv = KV.stored(op.key, op.data, rev, cur.create_rev)
            return Event("update", kv, cur), (rev, op.key, 0, 0, cur.create_rev, cur.mod_rev, kv.data)
        value = cur.data if op.data is None else op.data
        kv = KV.stored(op.key, value, rev, cur.create_rev)
        return Event("delete", kv, cur), (rev, op.key, 0, 1, cur.create_rev, cur.mod_rev, value)

    def _commit(self, rows: list[tuple]) -> None:
        conn = self._wconn
        sealed = self.transformer.to_disk
        rows = [(*r[:6], sealed(r[1], r[6])) if self.transformer.applies(r[1]) else r for r in rows]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO kv (rev, key, created, deleted, create_rev, prev_rev, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ----------------------------------------------------------------- sealing
    async def reseal(self, transformer: Transformer | None = None) -> int:
        """Seal again every stored value (all revisions) that `transformer` (else the
        current one) would seal differently: plaintext from before encryption was on, or
        a value sealed by a key that is no longer the first. Runs on the writer's thread in
        batches, so writes go on meanwhile; freed bytes are zeroed (secure_delete) and the
        WAL is truncated, so no old plaintext stays in the file. Returns how many were sealed."""
        if transformer is not None:
            self.transformer = transformer
        loop = asyncio.get_running_loop()
        total = 0
        for prefix in self.transformer.prefixes:
            after = 0
            while True:
                after, n, more = await loop.run_in_executor(self._writer_pool, self._reseal_batch, prefix, after)
                total += n
                if not more:
                    break
        if total:
            await loop.run_in_executor(self._writer_pool, self._scrub)
        return total

    def _reseal_batch(self, prefix: str, after: int, limit: int = 500) -> tuple[int, int, bool]:
        conn, t = self._wconn, self.transformer
        rows = conn.execute("SELECT rev, key, value FROM kv WHERE key >= ? AND key < ? AND rev > ? "
                            "ORDER BY rev LIMIT ?", (prefix, prefix_end(prefix), after, limit)).fetchall()
        updates = [(t.to_disk(key, t.from_disk(key, value)), rev) for rev, key, value in rows if t.stale(key, value)]
        if updates:
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("UPDATE kv SET value = ? WHERE rev = ?", updates)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return (rows[-1][0] if rows else after), len(updates), len(rows) == limit

    def _scrub(self) -> None:
        conn = self._wconn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA secure_delete=OFF")

    # ----------------------------------------------------------------- watch
    def watch(self, prefix: str, from_rev: int = 0) -> SQLiteWatch:
        """Events under prefix with revision > from_rev (0: only new events)."""
        after = from_rev or self._rev
        if from_rev and from_rev < self._compact_rev:
            raise Compacted(from_rev, self._compact_rev)
        if after > self._rev:
            raise StoreError(f"revision {after} is in the future (current {self._rev})")
        w = SQLiteWatch(self, prefix, after)
        if after < self._rev:
            oldest = self._ring_revs[0] if self._ring_revs else self._rev + 1
            if after + 1 >= oldest:
                i = bisect.bisect_right(self._ring_revs, after)
                for ev in self._ring[i:]:
                    if ev.kv.key.startswith(prefix):
                        w._put(ev)
            else:
                w.backfill_to = self._rev
        self._watchers.setdefault(prefix, set()).add(w)
        return w

    def _unsubscribe(self, w: SQLiteWatch) -> None:
        ws = self._watchers.get(w.prefix)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self._watchers[w.prefix]

    def _publish(self, events: list[Event]) -> None:
        self._ring.extend(events)
        self._ring_revs.extend(ev.kv.mod_rev for ev in events)
        self._ring_used += sum(ev.kv.size for ev in events)
        if len(self._ring) > 2 * self.ring_size or self._ring_used > self.ring_bytes:
            self._trim_ring(len(self._ring) - self.ring_size, self.ring_bytes // 2)
        for prefix, ws in list(self._watchers.items()):
            for ev in events:
                if ev.kv.key.startswith(prefix):
                    for w in list(ws):
                        w.push(ev)

    def _trim_ring(self, drop: int, keep_bytes: int, upto_rev: int = 0) -> None:
        """Forget the oldest events: at least ``drop`` of them, then more until at most ``keep_bytes``
        remain, and every one at or below ``upto_rev``. A watcher that needs them reads the table."""
        n, used, ring = max(drop, 0), self._ring_used, self._ring
        used -= sum(ev.kv.size for ev in ring[:n])
        while n < len(ring) and (used > keep_bytes or ring[n].kv.mod_rev <= upto_rev):
            used -= ring[n].kv.size
            n += 1
        if n:
            del ring[:n]
            del self._ring_revs[:n]
        self._ring_used = used

    def ring_stats(self) -> tuple[int, int]:
        """(events, bytes) of recent events held in memory for watchers."""
        return len(self._ring), self._ring_used

    async def _history(self, prefix: str, after: int, to: int) -> list[Event]:
        """The next HISTORY_CHUNK events under prefix with after < revision <= to."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, self._history_rows, prefix, after, to)

    def _history_rows(self, prefix: str, after: int, to: int) -> list[Event]:
        conn = self._rconn
        rows = conn.execute(
            "SELECT rev, key, created, deleted, create_rev, prev_rev, value FROM kv "
            "WHERE key >= ? AND key < ? AND rev > ? AND rev <= ? ORDER BY rev LIMIT ?",
            (prefix, prefix_end(prefix), after, to, HISTORY_CHUNK)).fetchall()
        events = []
        opened = self.transformer.from_disk
        for rev, key, created, deleted, create_rev, prev_rev, value in rows:
            prev = None
            if prev_rev:
                p = conn.execute("SELECT value, create_rev FROM kv WHERE rev = ?", (prev_rev,)).fetchone()
                if p:
                    prev = KV.stored(key, opened(key, p[0]), prev_rev, p[1])
            kind = "create" if created else "delete" if deleted else "update"
            events.append(Event(kind, KV.stored(key, opened(key, value), rev, create_rev), prev))
        return events

    # ----------------------------------------------------------------- compaction
    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compact_rev:
            return
        self._compact_rev = revision  # no watch may start below it from now on: the ring can let go
        self._trim_ring(0, self.ring_bytes, upto_rev=revision)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_pool, compact_rows, self._wconn, revision)

    async def _compactor(self) -> None:
        while True:
            await asyncio.sleep(self.compact_interval)
            target = self._rev - self.compact_keep
            if target > self._compact_rev:
                t0 = time.monotonic()
                try:
                    await self.compact(target)
                except Exception:
                    log.exception("compaction failed")
                else:
                    log.debug("compacted to %d in %.3fs", target, time.monotonic() - t0)
