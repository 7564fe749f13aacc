"""`sendo snapshot save|restore|ls|prune` on both stores: a snapshot taken while writes go on,
then every object deleted, restored into a new data dir, and a server started from it has
every object of the snapshot back; bad files are refused with one line and change nothing."""
import asyncio
import os
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sendo.cli.main import app
from sendo.client import Client, kind
from sendo.server import Server, ServerConfig, free_port
from sendo.store.etcd_local import LocalEtcd, Member

CM = kind("configmaps")
SECRETS = kind("secrets")
N = 40
SECRET_VALUE = "snapshot-held-secret-value"


def sendo(*args, check=True) -> subprocess.CompletedProcess:
    """The command in a process of its own (as a user runs it while the server serves)."""
    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", *args], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "COLUMNS": "80"})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def sendo_here(*args, check=True):
    """The command run in this process (faster: no interpreter start); .returncode, .stdout, .stderr."""
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    if check:
        assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"n": name}}


async def started(data_dir: str, datastore: str | None = None) -> tuple[Server, Client]:
    s = Server(ServerConfig(data_dir=data_dir, port=free_port(), controllers=False, datastore=datastore))
    await s.start()
    return s, Client(s.cfg.url, s.admin_token, s.ca_pem)


async def names(c: Client) -> set[str]:
    return {o["metadata"]["name"] for o in (await c.list(CM, "default"))["items"]}


async def secret_back(c: Client) -> bool:
    import base64
    s = await c.get(SECRETS, "default", "db")
    return base64.b64decode(s["data"]["password"]).decode() == SECRET_VALUE


async def snapshot_while_writing(data_dir: str, datastore: str | None) -> tuple[str, set[str]]:
    """N objects, then a snapshot while more are written; (its path, the objects acknowledged before it)."""
    s, c = await started(data_dir, datastore)
    try:
        for i in range(N):
            await c.create(CM, cm(f"before-{i}"))
        await c.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
                                 "stringData": {"password": SECRET_VALUE}})
        before = await names(c)
        stop = asyncio.Event()

        async def writer():
            i = 0
            while not stop.is_set() and i < 500:  # bounded
                await c.create(CM, cm(f"during-{i}"))
                i += 1
        w = asyncio.create_task(writer())
        r = await asyncio.to_thread(sendo, "snapshot", "save", "--data-dir", data_dir)
        stop.set()
        await w
        path = r.stdout.strip().splitlines()[-1]  # the path is the last line
        assert os.path.isfile(path) and path.startswith(os.path.join(data_dir, "snapshots")), r.stdout
        assert SECRET_VALUE.encode() not in open(path, "rb").read()  # Secrets are sealed in the snapshot too
        assert os.stat(path + ".keys.yaml").st_mode & 0o777 == 0o600  # and their keys kept beside it
        await c.request("DELETE", "/api/v1/namespaces/default/configmaps")  # then everything goes
        assert not await names(c)
    finally:
        await c.close()
        await s.stop()
    return path, before


async def test_sqlite_snapshot_restore_brings_every_object_back(tmp_path):
    data = str(tmp_path / "data")
    path, before = await snapshot_while_writing(data, None)
    new = str(tmp_path / "new")
    r = sendo_here("snapshot", "restore", path, "--data-dir", new)
    assert r.stdout.strip().splitlines()[-1] == os.path.join(new, "server", "state.db")
    s, c = await started(new)
    try:
        back = await names(c)
        assert before <= back  # every object acknowledged before the snapshot
        during = back - before
        assert all(n.startswith("during-") for n in during)
        # consistent: the writes it holds are a prefix of the stream of writes
        nums = sorted(int(n.split("-")[1]) for n in during)
        assert nums == list(range(len(nums)))
        assert await secret_back(c)  # the snapshot's keys came with it
    finally:
        await c.close()
        await s.stop()
    # a restore never overwrites a store
    r = sendo_here("snapshot", "restore", path, "--data-dir", new, check=False)
    assert r.returncode == 1 and "already has a store" in r.stderr and r.stderr.count("\n") == 1


async def test_etcd_snapshot_restore_brings_every_object_back(tmp_path, etcd_url):
    data = str(tmp_path / "data")
    path, before = await snapshot_while_writing(data, etcd_url)  # the data dir says which store it uses
    assert path.endswith(".etcd")
    new = str(tmp_path / "new")
    member = Member("restored", free_port(), free_port(), os.path.join(new, "etcd"))
    r = sendo_here("snapshot", "restore", path, "--data-dir", new, "--etcd-name", member.name,
              "--etcd-peer-url", member.peer_url)
    assert r.stdout.strip().splitlines()[-1] == member.data_dir
    etcd = LocalEtcd(str(tmp_path / "etcd-logs"), members=[member])
    etcd.start()
    try:
        prefix = etcd_url.split("/", 3)[3]
        s, c = await started(new, f"{etcd.url}/{prefix}")
        try:
            back = await names(c)
            assert before <= back and all(n.startswith("during-") for n in back - before)
            assert await secret_back(c)
        finally:
            await c.close()
            await s.stop()
    finally:
        etcd.stop()


def test_bad_snapshots_are_refused_with_one_line_and_change_nothing(tmp_path):
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(5000))
    for f, why in ((corrupt, "not a usable SQLite snapshot"), (foreign, "not a sendo store"),
                   (junk, "neither a sendo SQLite snapshot nor an etcd snapshot"),
                   (tmp_path / "missing", "No such file")):
        new = tmp_path / f"new-{f.name}"
        r = sendo_here("snapshot", "restore", str(f), "--data-dir", str(new), check=False)
        assert r.returncode == 1 and why in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr  # one line
        assert not new.exists()


@pytest.mark.parametrize("keep", [2])
def test_ls_and_prune_keep_the_newest(tmp_path, keep):
    data = tmp_path / "data"
    snaps = data / "snapshots"
    snaps.mkdir(parents=True)
    made = [snaps / f"sendo-2026010{i}T000000.000000Z.sqlite" for i in range(1, 5)]
    for p in made:
        p.write_bytes(b"x")
    (snaps / "notes.txt").write_text("not a snapshot")
    listed = [l.split("\t")[0] for l in sendo_here("snapshot", "ls", "--data-dir", str(data)).stdout.splitlines()]
    assert listed == [str(p) for p in made]
    out = sendo_here("snapshot", "prune", "--data-dir", str(data), "--retention", str(keep)).stdout
    assert out.splitlines() == [f"deleted {p}" for p in made[:-keep]]
    assert sorted(os.listdir(snaps)) == sorted([p.name for p in made[-keep:]] + ["notes.txt"])
