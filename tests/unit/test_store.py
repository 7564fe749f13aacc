"""The Store protocol, on every store (SQLite and etcd): revisions as resourceVersion,
compare-and-swap, lists at a revision, watches from a revision, compaction, restarts."""
import asyncio

import orjson
import pytest

from sendo.store import Compacted, Conflict, DatastoreURLError, KeyExists, KeyNotFound, StoreError, open_store
from sendo.store.versioner import encode


def val(s: str) -> bytes:
    """An object named s, as a writer stores it (without a resourceVersion)."""
    return encode({"kind": "T", "metadata": {"name": s}})


def v(kv) -> str:
    """name@resourceVersion of a value as readers are served it."""
    meta = orjson.loads(kv.value)["metadata"]
    return f"{meta['name']}@{meta['resourceVersion']}"


async def next_event(w, timeout=10):
    return await asyncio.wait_for(w.__anext__(), timeout)


@pytest.fixture
async def store(store_url):
    s = open_store(store_url)
    await s.start()
    yield s
    await s.close()


async def test_revisions_increase_and_readers_see_them_as_resource_version(store):
    r0 = store.revision
    a = await store.create("/r/a", val("a"))
    b = await store.create("/r/b", val("b"))
    assert (a.mod_rev, b.mod_rev) == (r0 + 1, r0 + 2)
    assert v(a) == f"a@{r0 + 1}"
    u = await store.update("/r/a", val("a2"), expected_rev=a.mod_rev)
    assert u.mod_rev == r0 + 3 and u.create_rev == r0 + 1 and v(u) == f"a2@{r0 + 3}"
    assert store.revision == r0 + 3
    assert v(await store.get("/r/a")) == f"a2@{r0 + 3}" and await store.get("/r/none") is None
    assert await store.count("/r/") == 2


async def test_create_existing_and_missing_update(store):
    await store.create("/r/a", val("a"))
    with pytest.raises(KeyExists):
        await store.create("/r/a", val("again"))
    with pytest.raises(KeyNotFound):
        await store.update("/r/missing", val("x"))
    with pytest.raises(KeyNotFound):
        await store.update("/r/missing", val("x"), expected_rev=3)
    with pytest.raises(KeyNotFound):
        await store.delete("/r/missing")


async def test_compare_and_swap(store):
    a = await store.create("/r/a", val("a"))
    b = await store.update("/r/a", val("b"), expected_rev=a.mod_rev)
    with pytest.raises(Conflict) as e:
        await store.update("/r/a", val("c"), expected_rev=a.mod_rev)
    assert e.value.current_rev == b.mod_rev
    with pytest.raises(Conflict):
        await store.delete("/r/a", expected_rev=a.mod_rev)
    assert v(await store.get("/r/a")) == f"b@{b.mod_rev}"
    d = await store.delete("/r/a", expected_rev=b.mod_rev)
    assert d.mod_rev > b.mod_rev and v(d) == f"b@{d.mod_rev}"  # a delete is served at its revision
    assert await store.get("/r/a") is None


async def test_concurrent_cas_exactly_one_wins(store):
    a = await store.create("/r/a", val("a"))
    results = await asyncio.gather(*[store.update("/r/a", val(str(i)), expected_rev=a.mod_rev)
                                     for i in range(20)], return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 19


async def test_list_by_prefix_and_at_old_revision(store):
    await store.create("/r/ns1/a", val("a"))
    await store.create("/r/ns1/b", val("b"))
    c = await store.create("/r/ns10/c", val("c"))
    items, rev = await store.list("/r/ns1/")
    assert [kv.key for kv in items] == ["/r/ns1/a", "/r/ns1/b"] and rev == c.mod_rev
    u = await store.update("/r/ns1/a", val("a2"))
    await store.delete("/r/ns1/b")
    old, _ = await store.list("/r/ns1/", revision=rev)
    assert [(kv.key, v(kv)) for kv in old] == [("/r/ns1/a", f"a@{rev - 2}"), ("/r/ns1/b", f"b@{rev - 1}")]
    now, _ = await store.list("/r/ns1/")
    assert [(kv.key, v(kv)) for kv in now] == [("/r/ns1/a", f"a2@{u.mod_rev}")]


async def test_a_delete_with_the_last_state_serves_that_state(store):
    a = await store.create("/r/a", val("a"))
    w = store.watch("/r/", from_rev=a.mod_rev)
    d = await store.delete("/r/a", expected_rev=a.mod_rev, data=val("final"))
    assert v(d) == f"final@{d.mod_rev}"
    ev = await next_event(w)
    while ev.type != "delete":  # a store may write the last state first, as an update of its own
        ev = await next_event(w)
    assert v(ev.kv) == f"final@{d.mod_rev}" and ev.kv.mod_rev == d.mod_rev
    w.close()


async def test_watch_new_events_and_from_revision(store):
    r0 = store.revision
    w = store.watch("/r/")
    await store.create("/r/a", val("a"))
    await store.create("/other/x", val("x"))
    await store.update("/r/a", val("b"))
    await store.delete("/r/a")
    kinds = [(await next_event(w)).type for _ in range(3)]
    assert kinds == ["create", "update", "delete"]
    w.close()
    w2 = store.watch("/r/", from_rev=r0 + 1)  # replays the update and the delete only
    evs = [await next_event(w2) for _ in range(2)]
    assert [(e.type, e.kv.mod_rev) for e in evs] == [("update", r0 + 3), ("delete", r0 + 4)]
    assert v(evs[0].prev) == f"a@{r0 + 1}" and v(evs[1].kv) == f"b@{r0 + 4}"
    assert evs[1].prev.mod_rev == r0 + 3
    await store.create("/r/c", val("c"))
    assert (await next_event(w2)).kv.mod_rev == r0 + 5  # history, then live events
    assert w2.progress >= r0 + 5
    w2.close()


async def test_compaction_expires_old_revisions_and_keeps_latest(store):
    r0 = store.revision
    await store.create("/r/a", val("a"))
    for i in range(5):
        await store.update("/r/a", val(f"a{i}"))
    await store.create("/r/gone", val("g"))
    await store.delete("/r/gone")
    await store.compact(r0 + 7)
    assert store.compact_revision == r0 + 7
    with pytest.raises(Compacted):
        store.watch("/r/", from_rev=r0 + 3)
    with pytest.raises(Compacted):
        await store.list("/r/", revision=r0 + 3)
    items, _ = await store.list("/r/", revision=r0 + 8)
    assert [v(kv) for kv in items] == [f"a4@{r0 + 6}"]


async def test_state_survives_restart(store_url):
    s = open_store(store_url)
    await s.start()
    r0 = s.revision
    await s.create("/r/a", val("a"))
    await s.update("/r/a", val("b"))
    await s.create("/r/c", val("c"))
    await s.delete("/r/c")
    await s.close()
    s = open_store(store_url)
    await s.start()
    try:
        assert s.revision == r0 + 4 == await s.latest_revision()
        assert v(await s.get("/r/a")) == f"b@{r0 + 2}"
        assert await s.get("/r/c") is None
        assert (await s.create("/r/d", val("d"))).mod_rev == r0 + 5
    finally:
        await s.close()


async def test_an_etcd_that_does_not_answer_is_a_store_error_naming_it():
    from sendo.serving import free_port
    s = open_store(f"etcd://127.0.0.1:{free_port()}?timeout=20")  # nothing listens there
    with pytest.raises(StoreError, match="unavailable"):
        await s.start()
    await s.close()


@pytest.mark.parametrize("url", ["etcd://", "etcd://host", "etcd://h:2379?bogus=1", "etcd://h:2379?cert=c",
                                 "etcd://h:2379?compact_interval=soon", "nosuch://x"])
def test_bad_datastore_urls_say_what_is_wrong(url):
    with pytest.raises(DatastoreURLError):
        open_store(url)
