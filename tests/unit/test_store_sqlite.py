"""The SQLite revision-log store: revisions, compare-and-swap, watch, compaction, durability."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sendo.store import Compacted, Conflict, KeyExists, KeyNotFound
from sendo.store.sqlite import SQLiteStore


def val(s: str):
    return lambda rev: f"{s}@{rev}".encode()


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await s.start()
    yield s
    await s.close()


async def next_event(w, timeout=5):
    return await asyncio.wait_for(w.__anext__(), timeout)


async def test_revisions_increase_and_render_sees_revision(store):
    a = await store.create("/r/a", val("a"))
    b = await store.create("/r/b", val("b"))
    assert (a.mod_rev, b.mod_rev) == (1, 2)
    assert a.value == b"a@1"
    u = await store.update("/r/a", val("a2"), expected_rev=1)
    assert u.mod_rev == 3 and u.create_rev == 1 and u.value == b"a2@3"
    assert store.revision == 3


async def test_create_existing_and_missing_update(store):
    await store.create("/r/a", val("a"))
    with pytest.raises(KeyExists):
        await store.create("/r/a", val("again"))
    with pytest.raises(KeyNotFound):
        await store.update("/r/missing", val("x"))
    with pytest.raises(KeyNotFound):
        await store.delete("/r/missing")


async def test_compare_and_swap(store):
    a = await store.create("/r/a", val("a"))
    await store.update("/r/a", val("b"), expected_rev=a.mod_rev)
    with pytest.raises(Conflict) as e:
        await store.update("/r/a", val("c"), expected_rev=a.mod_rev)
    assert e.value.current_rev == 2
    with pytest.raises(Conflict):
        await store.delete("/r/a", expected_rev=a.mod_rev)
    assert (await store.get("/r/a")).value == b"b@2"


async def test_concurrent_cas_exactly_one_wins(store):
    a = await store.create("/r/a", val("a"))
    results = await asyncio.gather(*[store.update("/r/a", val(str(i)), expected_rev=a.mod_rev)
                                     for i in range(20)], return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 19


async def test_list_by_prefix_and_at_old_revision(store):
    await store.create("/r/ns1/a", val("a"))
    await store.create("/r/ns1/b", val("b"))
    await store.create("/r/ns10/c", val("c"))
    items, rev = await store.list("/r/ns1/")
    assert [kv.key for kv in items] == ["/r/ns1/a", "/r/ns1/b"] and rev == 3
    await store.update("/r/ns1/a", val("a2"))
    await store.delete("/r/ns1/b")
    old, _ = await store.list("/r/ns1/", revision=3)
    assert [(kv.key, kv.value) for kv in old] == [("/r/ns1/a", b"a@1"), ("/r/ns1/b", b"b@2")]
    now, _ = await store.list("/r/ns1/")
    assert [(kv.key, kv.value) for kv in now] == [("/r/ns1/a", b"a2@4")]


async def test_watch_new_events_and_from_revision(store):
    w = store.watch("/r/")
    await store.create("/r/a", val("a"))
    await store.create("/other/x", val("x"))
    await store.update("/r/a", val("b"))
    await store.delete("/r/a")
    kinds = [(await next_event(w)).type for _ in range(3)]
    assert kinds == ["create", "update", "delete"]
    w.close()
    w2 = store.watch("/r/", from_rev=1)  # replays revision 3 and 4 only
    evs = [await next_event(w2) for _ in range(2)]
    assert [(e.type, e.kv.mod_rev) for e in evs] == [("update", 3), ("delete", 4)]
    assert evs[0].prev.value == b"a@1"
    w2.close()


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


async def test_compaction_expires_old_revisions_and_keeps_latest(store):
    await store.create("/r/a", val("a"))
    for i in range(5):
        await store.update("/r/a", val(f"a{i}"))
    await store.create("/r/gone", val("g"))
    await store.delete("/r/gone")
    await store.compact(7)
    with pytest.raises(Compacted):
        store.watch("/r/", from_rev=3)
    with pytest.raises(Compacted):
        await store.list("/r/", revision=3)
    items, _ = await store.list("/r/", revision=8)
    assert [kv.value for kv in items] == [b"a4@6"]


async def test_state_survives_restart(tmp_path):
    path = str(tmp_path / "s.db")
    s = SQLiteStore(path)
    await s.start()
    await s.create("/r/a", val("a"))
    await s.update("/r/a", val("b"))
    await s.create("/r/c", val("c"))
    await s.delete("/r/c")
    await s.close()
    s = SQLiteStore(path)
    await s.start()
    try:
        assert s.revision == 4
        assert (await s.get("/r/a")).value == b"b@2"
        assert await s.get("/r/c") is None
        assert (await s.create("/r/d", val("d"))).mod_rev == 5
    finally:
        await s.close()


def test_acknowledged_writes_survive_kill_9(tmp_path):
    """A writer prints each acknowledged revision; after kill -9 every printed one is there."""
    path = str(tmp_path / "s.db")
    code = textwrap.dedent(f"""
        import asyncio, sys
        from sendo.store.sqlite import SQLiteStore
        async def main():
            s = SQLiteStore({path!r}); await s.start()
            i = 0
            while True:
                kvs = await asyncio.gather(*[s.create(f"/k/{{i+j}}", lambda r: b"v") for j in range(10)])
                i += 10
                print(max(kv.mod_rev for kv in kvs), flush=True)
        asyncio.run(main())
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        acked = 0
        for line in p.stdout:
            acked = int(line)
            if acked >= 300:
                break
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    async def check():
        s = SQLiteStore(path)
        await s.start()
        try:
            assert s.revision >= acked
            assert await s.count("/k/") >= acked
        finally:
            await s.close()
    asyncio.run(check())
