"""Upgrades without fear: the store's schema version, a migration only after a snapshot,
`sendo upgrade rollback`, and a server that refuses a schema newer than it knows; and
snapshots on a schedule with retention.

The migration here is a test-only one, registered the way a real one is (a line appended to
``sendo.store.migrations.MIGRATIONS``): the server's start runs it through the same code."""
import contextlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sendo.cli.main import app
from sendo.client import Client, kind
from sendo.server import Server, ServerConfig, free_port
from sendo.store import open_store
from sendo.store import migrations as registry
from sendo.store.schema import SCHEMA_KEY, SchemaError, prepare, stored_version
from tests.waiting import wait_until

CM = kind("configmaps")
EVENTS = kind("events")


def cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"n": name}}


def sendo_here(*args):
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


async def started(data_dir: str, **kw) -> tuple[Server, Client]:
    s = Server(ServerConfig(data_dir=data_dir, port=free_port(), controllers=False, **kw))
    await s.start()
    return s, Client(s.cfg.url, s.admin_token, s.ca_pem)


async def on_server(data_dir: str, check, old: pytest.MonkeyPatch | None = None, **kw):
    """Start a server on data_dir — an older sendo that knows only schema 1 when ``old`` is given —
    await ``check(server, client)``, stop it."""
    with contextlib.ExitStack() as stack:
        if old is not None:
            stack.enter_context(old.context()).setattr(registry, "MIGRATIONS", [])
        s, c = await started(data_dir, **kw)
        try:
            return await check(s, c)
        finally:
            await c.close()
            await s.stop()


async def label_every_configmap(store) -> None:
    """The test-only migration to schema 2: every ConfigMap gets a label (safe to run twice)."""
    kvs, _ = await store.list("/registry/core/configmaps/")
    for kv in kvs:
        obj = json.loads(kv.data)
        obj["metadata"].setdefault("labels", {})["migrated"] = "v2"
        await store.update(kv.key, json.dumps(obj).encode(), expected_rev=kv.mod_rev)


@pytest.fixture
def v2(monkeypatch):
    """This sendo knows schema 2: one migration line, as a real one is added."""
    monkeypatch.setattr(registry, "MIGRATIONS",
                        [*registry.MIGRATIONS, registry.Migration(2, "label every ConfigMap", label_every_configmap)])


def db_state(data_dir) -> tuple[bytes, list]:
    """The store's file bytes and rows: 'nothing changed' is checked on both."""
    db = os.path.join(data_dir, "server", "state.db")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT rev, key, value FROM kv ORDER BY rev").fetchall()
    finally:
        conn.close()
    return rows


async def test_store_schema_on_both_stores(store_url):
    """A new store gets this sendo's version; a newer one is refused with nothing written;
    a record sendo cannot read is refused too."""
    store = open_store(store_url)
    await store.start()
    try:
        assert await stored_version(store) is None
        done = await prepare(store, snapshot=None)  # no migration: no snapshot asked for
        assert (done.found, done.version) == (None, registry.current())
        assert await stored_version(store) == registry.current() == 1
        await store.update(SCHEMA_KEY, b'{"version": 7}')
        with pytest.raises(SchemaError, match=r"schema version is 7, newer than this sendo knows \(1\)"):
            await prepare(store, snapshot=None)
        await store.update(SCHEMA_KEY, b'{"version": "two"}')
        rev = await store.latest_revision()
        with pytest.raises(SchemaError, match="no schema version this sendo knows"):
            await prepare(store, snapshot=None)
        assert await store.latest_revision() == rev  # refused before any write
    finally:
        await store.close()


async def test_migration_snapshot_rollback_and_refusal(tmp_path, monkeypatch, v2):
    data = str(tmp_path / "data")
    # an old sendo (schema 1) makes a cluster
    with monkeypatch.context() as m:
        m.setattr(registry, "MIGRATIONS", [])
        s, c = await started(data)
        try:
            for i in range(5):
                await c.create(CM, cm(f"old-{i}"))
        finally:
            await c.close()
            await s.stop()
    # the newer sendo migrates on start, after a snapshot
    s, c = await started(data)
    try:
        assert await stored_version(s.store) == 2
        rec = json.load(open(os.path.join(data, "server", "upgrade.json")))
        snap = rec["snapshot"]
        assert (rec["from"], rec["to"]) == (1, 2) and os.path.basename(snap).startswith("pre-upgrade-v1-v2-")
        items = (await c.list(CM, "default"))["items"]
        assert {o["metadata"]["name"] for o in items} >= {f"old-{i}" for i in range(5)}
        assert all(o["metadata"]["labels"]["migrated"] == "v2" for o in items if o["metadata"]["name"].startswith("old-"))
        await c.create(CM, cm("made-on-v2"))
    finally:
        await c.close()
        await s.stop()
    # the snapshot holds the store as it was before (no label), and `snapshot prune` never deletes it
    conn = sqlite3.connect(snap)
    assert b"migrated" not in b"".join(r[0] for r in conn.execute("SELECT value FROM kv"))
    conn.close()
    assert sendo_here("snapshot", "prune", "--data-dir", data, "--retention", "0").returncode == 0
    assert os.path.exists(snap)

    # the older sendo refuses the newer store: one line naming both versions; nothing changed
    before = db_state(data)
    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "server", "--data-dir", data,  # knows schema 1
                        "--port", str(free_port()), "--no-controllers"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 1, r.stderr
    assert "schema version is 2, newer than this sendo knows (1)" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert db_state(data) == before

    # a running server is not rolled back under its feet
    s, c = await started(data)
    try:
        r = sendo_here("upgrade", "rollback", "--data-dir", data)
        assert r.returncode == 1 and "stop it first" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert await stored_version(s.store) == 2 and await c.get(CM, "default", "made-on-v2")
    finally:
        await c.close()
        await s.stop()
    assert os.path.exists(os.path.join(data, "server", "upgrade.json"))

    # rollback: the pre-migration store is back, the older sendo starts on it
    r = sendo_here("upgrade", "rollback", "--data-dir", data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == snap
    with monkeypatch.context() as m:
        m.setattr(registry, "MIGRATIONS", [])
        s, c = await started(data)
        try:
            assert await stored_version(s.store) == 1
            items = (await c.list(CM, "default"))["items"]
            assert {o["metadata"]["name"] for o in items} == {f"old-{i}" for i in range(5)}
            assert not any("labels" in o["metadata"] for o in items)
        finally:
            await c.close()
            await s.stop()
    # … once: there is no snapshot to roll back to now
    before = db_state(data)
    r = sendo_here("upgrade", "rollback", "--data-dir", data)
    assert r.returncode == 1 and "no pre-migration snapshot" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert db_state(data) == before


def test_rollback_refusals_change_nothing(tmp_path):
    """No snapshot (a data dir never migrated), or a damaged one: one line, nothing moved."""
    empty = tmp_path / "never-migrated"
    r = sendo_here("upgrade", "rollback", "--data-dir", str(empty))
    assert r.returncode == 1 and "no pre-migration snapshot" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not empty.exists()

    data = tmp_path / "data"
    server = data / "server"
    server.mkdir(parents=True)
    conn = sqlite3.connect(server / "state.db")
    conn.execute("CREATE TABLE kv (x)")
    conn.commit()
    conn.close()
    corrupt = tmp_path / "pre-upgrade.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    (server / "upgrade.json").write_text(json.dumps({"snapshot": str(corrupt), "from": 1, "to": 2}))
    listing = sorted(os.listdir(server))
    db = (server / "state.db").read_bytes()
    r = sendo_here("upgrade", "rollback", "--data-dir", str(data))
    assert r.returncode == 1 and "not a usable SQLite snapshot" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(os.listdir(server)) == listing and (server / "state.db").read_bytes() == db


async def test_scheduled_snapshots_keep_the_newest_and_say_so(tmp_path):
    """Every second (croniter's sixth field), two kept: the oldest scheduled ones go, a user's
    snapshot stays, and each snapshot is an Event in kube-system."""
    data = str(tmp_path / "data")
    assert sendo_here("server", "--snapshot-schedule", "every day", "--data-dir", data).returncode == 2
    s, c = await started(data, snapshot_schedule="* * * * * */1", snapshot_retention=2)
    try:
        await c.create(CM, cm("kept"))
        r = sendo_here("snapshot", "save", "--data-dir", data)
        mine = r.stdout.strip().splitlines()[-1]

        async def saved() -> list[dict]:
            evs = (await c.list(EVENTS, "kube-system"))["items"]
            return [e for e in evs if e["reason"] == "SnapshotSaved"]
        await wait_until(lambda: _enough(saved, 4), timeout=90, what="four scheduled snapshots")
        evs = await saved()
        assert any("pruned: " in e["message"] and "pruned: none" not in e["message"] for e in evs), evs
        assert all(e["type"] == "Normal" and e["source"]["component"] == "sendo-server" for e in evs)
        await s.snapshots.stop()
        names = sorted(os.listdir(os.path.join(data, "snapshots")))
        scheduled = [n for n in names if n.startswith("scheduled-") and not n.endswith(".yaml")]
        assert len(scheduled) == 2, names
        assert os.path.basename(mine) in names  # a user's snapshot is not the schedule's to prune
        listed = sendo_here("snapshot", "ls", "--data-dir", data).stdout.split()
        assert mine in listed and all(os.path.join(data, "snapshots", n) in listed for n in scheduled)
    finally:
        await c.close()
        await s.stop()


async def _enough(saved, n: int) -> bool:
    return len(await saved()) >= n


def test_migration_list_is_in_order():
    registry.check_order(registry.MIGRATIONS)
    with pytest.raises(ValueError, match="expected 2"):
        registry.check_order([registry.Migration(3, "skips 2", label_every_configmap)])


async def test_rollback_of_an_ha_data_dir_restores_every_etcd_member(tmp_path, monkeypatch, v2):
    """The shape `sendo up --servers N` leaves (ha/layout.json, etcd/m<i>, servers/s<i>), with one
    member and one server to keep it short: migrated on etcd after an etcd snapshot, refused
    while etcd runs, then every member restored and the old sendo starts on schema 1 again."""
    from sendo.store.etcd_local import LocalEtcd, Member
    data = tmp_path / "ha-data"
    client_port, peer_port = free_port(), free_port()
    (data / "ha").mkdir(parents=True)
    (data / "ha" / "layout.json").write_text(json.dumps({"servers": [free_port()], "etcd": [[client_port, peer_port]]}))
    members = [Member("m0", client_port, peer_port, str(data / "etcd" / "m0"))]
    server_dir = str(data / "servers" / "s0")

    def etcd() -> LocalEtcd:
        return LocalEtcd(str(data / "etcd"), members=[Member(m.name, m.client_port, m.peer_port, m.data_dir)
                                                      for m in members]).start()
    async def make_old(s, c):
        await c.create(CM, cm("old"))

    async def migrated(s, c):
        assert await stored_version(s.store) == 2
        assert (await c.get(CM, "default", "old"))["metadata"]["labels"] == {"migrated": "v2"}

    async def rolled_back(s, c):
        assert await stored_version(s.store) == 1
        assert "labels" not in (await c.get(CM, "default", "old"))["metadata"]
    e = etcd()
    try:
        await on_server(server_dir, make_old, monkeypatch, datastore=e.url)
        await on_server(server_dir, migrated, datastore=e.url)
        snap = json.load(open(os.path.join(server_dir, "server", "upgrade.json")))["snapshot"]
        assert snap.endswith(".etcd")
        r = sendo_here("upgrade", "rollback", "--data-dir", str(data))
        assert r.returncode == 1 and "stop `sendo up` first" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    finally:
        e.stop()
    r = sendo_here("upgrade", "rollback", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == snap
    e = etcd()
    try:
        await on_server(server_dir, rolled_back, monkeypatch, datastore=e.url)
    finally:
        e.stop()
    r = sendo_here("upgrade", "rollback", "--data-dir", str(data))
    assert r.returncode == 1 and "no pre-migration snapshot" in r.stderr, r.stderr


async def test_a_snapshot_is_one_api_call(tmp_path):
    """Creating a sendo.dev Snapshot makes the server write one and say where in its status."""
    from sendo.store.snapshot import inspect
    snapshots = kind("snapshots", "sendo.dev", "v1alpha1")

    async def check(s, c):
        await c.create(CM, cm("in-the-snapshot"))
        await c.create(snapshots, {"apiVersion": "sendo.dev/v1alpha1", "kind": "Snapshot",
                                   "metadata": {"name": "now"}, "status": {"phase": "Completed"}})

        async def done():
            st = (await c.get(snapshots, None, "now")).get("status", {})
            return st if st.get("phase") in ("Completed", "Failed") else None
        st = await wait_until(done, timeout=60, what="the Snapshot Completed")
        assert st["phase"] == "Completed" and st["server"] == s.cfg.url, st
        info = inspect(st["path"])
        assert st["path"].startswith(os.path.join(str(tmp_path), "data", "snapshots", "sendo-"))
        assert info.kind == "sqlite" and info.keys == st["keys"] and st["revision"] > 0
    await on_server(str(tmp_path / "data"), check)
