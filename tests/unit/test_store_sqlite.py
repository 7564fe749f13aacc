"""What is the SQLite revision-log store's own: its table, its event ring, its memory and file size
(the protocol's behaviour on every store is tests/unit/test_store.py)."""
import os
import sqlite3

import orjson
import pytest
from hypothesis import given, strategies as st

from sendo.store import KV, StoreError
from sendo.store.sqlite import SQLiteStore
from sendo.store.sqlite_schema import SCHEMA
from sendo.store.versioner import encode, with_version
from tests.unit.test_store import next_event, v, val


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await s.start()
    yield s
    await s.close()


async def test_watch_backfills_from_database_when_ring_is_short(tmp_path):
    s = SQLiteStore(str(tmp_path / "s.db"), ring_size=2, compact_interval=3600)
    await s.start()
    try:
        for i in range(10):
            await s.create(f"/r/{i}", val(str(i)))
        w = s.watch("/r/", from_rev=2)
        revs = [(await next_event(w)).kv.mod_rev for _ in range(8)]
        assert revs == list(range(3, 11))
        await s.create("/r/new", val("n"))
        assert (await next_event(w)).kv.mod_rev == 11
        w.close()
    finally:
        await s.close()


# ----------------------------------------------------------------- resourceVersion outside the stored bytes
def rows(path: str) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT rev, value FROM kv ORDER BY rev").fetchall()
    finally:
        conn.close()


async def test_stored_bytes_have_no_resource_version_and_every_read_gets_its_own(tmp_path):
    path = str(tmp_path / "s.db")
    s = SQLiteStore(path, compact_interval=3600)
    await s.start()
    try:
        w = s.watch("/r/")
        data = val("a")  # one byte string, written twice: the writer never knew the revision
        await s.create("/r/a", data)
        await s.update("/r/a", data)
        await s.delete("/r/a")
        assert [v((await next_event(w)).kv) for _ in range(3)] == ["a@1", "a@2", "a@3"]
        w.close()
    finally:
        await s.close()
    assert [value for _, value in rows(path)] == [data, data, data]
    assert all(b"resourceVersion" not in value for _, value in rows(path))


async def test_a_database_from_an_older_version_is_read_with_the_right_resource_version(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)  # format 1: the value carried its resourceVersion inside
    conn.executescript("""
        CREATE TABLE kv (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, created INTEGER NOT NULL,
                         deleted INTEGER NOT NULL, create_rev INTEGER NOT NULL, prev_rev INTEGER NOT NULL,
                         value BLOB NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);""")
    old = {"spec": {"x": 1}, "metadata": {"name": "a", "resourceVersion": "1", "uid": "u"}, "kind": "T"}
    conn.execute("INSERT INTO kv VALUES (1, '/r/a', 1, 0, 1, 0, ?)", (orjson.dumps(old),))
    conn.commit()
    conn.close()
    s = SQLiteStore(path, compact_interval=3600)
    await s.start()
    try:
        await s.update("/r/a", val("a"), expected_rev=1)
        items, _ = await s.list("/r/", revision=1)
        assert orjson.loads(items[0].value) == old  # one resourceVersion, the row's
        assert v(await s.get("/r/a")) == "a@2"
    finally:
        await s.close()
    assert all(b"resourceVersion" not in value for _, value in rows(path))


def test_the_version_goes_into_the_top_level_metadata_only():
    nested = {"kind": "T", "apiVersion": "v1", "metadata": {}, "spec": {"template": {"metadata": {"name": "x"}}}}
    served = orjson.loads(with_version(encode(nested), 7))
    assert served["metadata"] == {"resourceVersion": "7"} and served["spec"] == nested["spec"]
    odd_order = orjson.dumps({"spec": {"metadata": {}}, "metadata": {"name": "n"}})  # another writer's layout
    served = orjson.loads(with_version(odd_order, 8))
    assert served == {"spec": {"metadata": {}}, "metadata": {"name": "n", "resourceVersion": "8"}}
    assert with_version(b"not json", 9) == b"not json"


# ----------------------------------------------------------------- memory and disk bounded by what is kept
async def test_memory_and_file_shrink_after_compaction_of_many_big_updates(tmp_path):
    path = str(tmp_path / "s.db")
    budget = 1 << 20
    s = SQLiteStore(path, compact_interval=3600, ring_bytes=budget)
    await s.start()
    try:
        await s.create("/r/big", val("big"))
        for i in range(150):  # 150 x 100 KB: 15 MB written to one key
            big = encode({"kind": "T", "metadata": {"name": "big"}, "data": {"blob": f"{i}" + "x" * 100_000}})
            await s.update("/r/big", big)
            assert s.ring_stats()[1] <= budget  # the event ring never holds more than its byte budget
        size_before = os.path.getsize(path) + os.path.getsize(path + "-wal")
        assert size_before > 10_000_000
        events_before = s.ring_stats()[0]
        await s.compact(s.revision)
        assert s.ring_stats()[0] < events_before and s.ring_stats() == (0, 0)
        size_after = os.path.getsize(path) + os.path.getsize(path + "-wal")
        assert size_after < size_before / 10
        assert (await s.get("/r/big")).data == big  # what is current is kept
    finally:
        await s.close()


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=10)


@given(meta=st.dictionaries(st.text(), _json, max_size=4), rest=st.dictionaries(st.text(), _json, max_size=4),
       rev=st.integers(1, 2**62))
def test_served_bytes_are_the_object_with_its_version_and_give_back_the_stored_bytes(meta, rest, rev):
    obj = {**rest, "kind": "T", "apiVersion": "v1", "metadata": meta}
    data = encode(obj)
    kv = KV.stored("/k", data, rev, 1)
    served = orjson.loads(kv.value)
    assert served["metadata"] == {**meta, "resourceVersion": str(rev)}
    assert {k: v for k, v in served.items() if k != "metadata"} == {k: v for k, v in obj.items() if k != "metadata"}
    assert kv.data == data and kv.size == len(data)


async def test_a_file_made_without_auto_vacuum_is_converted_once_compaction_frees_much_of_it(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)  # as an older sendo made it: no auto-vacuum
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('format', 2)")
    conn.commit()
    conn.close()
    s = SQLiteStore(path, compact_interval=3600)
    await s.start()
    try:
        await s.create("/r/big", val("big"))
        for i in range(60):
            await s.update("/r/big", encode({"kind": "T", "metadata": {"name": "big"}, "blob": f"{i}" * 100_000}))
        await s.compact(s.revision)  # leaves one row: the file is mostly free pages
    finally:
        await s.close()
    assert os.path.getsize(path) < 1_000_000
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # later compactions shrink it incrementally
    conn.close()


async def test_a_watcher_that_stops_reading_is_closed_and_its_backlog_let_go(tmp_path):
    s = SQLiteStore(str(tmp_path / "s.db"), compact_interval=3600, watch_queue_bytes=1 << 20)
    await s.start()
    try:
        stuck, reading = s.watch("/r/"), s.watch("/r/")
        await s.create("/r/big", val("big"))
        assert (await next_event(reading)).type == "create"
        for i in range(30):  # 3 MB of events: three times what one watcher may have unread
            await s.update("/r/big", encode({"kind": "T", "metadata": {"name": "big"}, "blob": f"{i}" * 100_000}))
            assert (await next_event(reading)).type == "update"  # one that keeps up is not affected
        assert stuck.closed and stuck.queued_bytes == 0 and stuck.queue.qsize() == 1  # only the end marker
        with pytest.raises(StoreError, match="too far behind"):
            await next_event(stuck)
        reading.close()
    finally:
        await s.close()


async def test_a_watch_from_the_table_delivers_history_before_newer_events_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("sendo.store.sqlite.HISTORY_CHUNK", 3)
    s = SQLiteStore(str(tmp_path / "s.db"), ring_size=2, compact_interval=3600)
    await s.start()
    try:
        for i in range(10):
            await s.create(f"/r/{i}", val(str(i)))
        w = s.watch("/r/", from_rev=1)  # revisions 2..10 are older than the ring: read from the table
        await s.create("/r/new", val("new"))  # written before the watcher reads anything
        revs = [(await next_event(w)).kv.mod_rev for _ in range(10)]
        assert revs == list(range(2, 12))
        w.close()
    finally:
        await s.close()
