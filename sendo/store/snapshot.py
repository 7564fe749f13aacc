"""Snapshots of a store: save (while it serves), list, prune, and restore into a new data directory.

A SQLite snapshot is a copy of the store's database made with SQLite's online backup
API: one read transaction, so it is the state at one revision however many writes go on
meanwhile. An etcd snapshot is etcd's own (the Maintenance Snapshot RPC, a bbolt
file); it holds the whole etcd, every prefix. Snapshots are kept as
``<data-dir>/snapshots/<kind>-<UTC time>.{sqlite,etcd}``: ``sendo-`` for those a user
asked for, ``scheduled-`` for those a schedule took (schedule.py; pruned to its
retention), ``pre-upgrade-v<from>-v<to>-`` for the one written before a store migration
(schema.py; never pruned).

A restore never touches what exists: a SQLite snapshot becomes ``NEW/server/state.db``
(refused if NEW already has a store); an etcd snapshot becomes the data directory of a
new etcd member, ``NEW/etcd`` (``etcdctl snapshot restore``), for ``etcd --data-dir``.
A file that is neither, or is damaged, is refused with one line that says so.

Secrets in a snapshot are sealed (encryption.py): `save` keeps a copy of the encryption
configuration beside it (``<snapshot>.keys.yaml``, 0600) and `restore` puts it into the
new data directory, so the restored cluster opens them. Keep the two files together.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass

from ..private import private_dir
from . import encryption
from .base import StoreError
from .registry import default_url
from .sqlite_schema import FORMAT

SQLITE_SUFFIX, ETCD_SUFFIX = ".sqlite", ".etcd"
KEYS_SUFFIX = ".keys.yaml"  # beside each snapshot: the encryption configuration its Secrets are sealed with
SQLITE_MAGIC = b"SQLite format 3\x00"


class SnapshotError(StoreError):
    """A snapshot that cannot be made or used; the message is one line that says why."""


@dataclass
class SnapshotInfo:
    path: str
    kind: str  # "sqlite" | "etcd"
    revision: int
    keys: int
    size: int


def snapshot_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "snapshots")


def store_url(data_dir: str, datastore: str | None = None) -> str:
    """The datastore of a server's data dir: the one given, the one its server recorded, or its SQLite file."""
    if datastore:
        return datastore
    try:
        with open(os.path.join(data_dir, "server", "datastore")) as f:
            recorded = f.read().strip()
        if recorded:
            return recorded
    except FileNotFoundError:
        pass
    return default_url(os.path.join(data_dir, "server", "state.db"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _default_path(data_dir: str, suffix: str, prefix: str) -> str:
    return os.path.join(private_dir(snapshot_dir(data_dir)), f"{prefix}{_now()}{suffix}")


# ----------------------------------------------------------------- save
def save(data_dir: str, datastore: str | None = None, path: str | None = None, prefix: str = "sendo-") -> SnapshotInfo:
    """``prefix``: how the file's name under DATA_DIR/snapshots begins (MANUAL, SCHEDULED, PRE_UPGRADE)."""
    url = store_url(data_dir, datastore)
    if url.startswith("sqlite://"):
        info = _save_sqlite(url[len("sqlite://"):], path or _default_path(data_dir, SQLITE_SUFFIX, prefix))
    elif url.startswith("etcd://"):
        info = asyncio.run(_save_etcd(url, path or _default_path(data_dir, ETCD_SUFFIX, prefix)))
    else:
        raise SnapshotError(f"no snapshots for datastore {url!r}")
    _save_keys(data_dir, info.path)
    return info


def keys_path(snapshot: str) -> str:
    """The copy of the encryption configuration kept beside a snapshot: its Secrets are sealed."""
    return snapshot + KEYS_SUFFIX


def _save_keys(data_dir: str, snapshot: str) -> None:
    src = os.path.join(data_dir, "server", encryption.CONFIG_NAME)
    if os.path.exists(src):
        copy_private(src, keys_path(snapshot))


def _restore_keys(snapshot: str, data_dir: str) -> None:
    """The snapshot's keys become the new data dir's, so the restored Secrets open."""
    src, dst = keys_path(snapshot), os.path.join(data_dir, "server", encryption.CONFIG_NAME)
    if os.path.exists(src) and not os.path.exists(dst):
        copy_private(src, dst)


def copy_private(src: str, dst: str) -> None:
    """``dst`` becomes a 0600 copy of ``src`` at once (a copy beside it, then renamed)."""
    tmp = _tmp_beside(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _tmp_beside(path: str) -> str:
    private_dir(os.path.dirname(os.path.abspath(path)))
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)  # mkstemp makes it 0600: a snapshot holds every Secret
    return tmp


def _save_sqlite(db: str, path: str) -> SnapshotInfo:
    if not os.path.exists(db):
        raise SnapshotError(f"no store at {db}: is this the data dir of a sendo server?")
    tmp = _tmp_beside(path)
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # one step, one read transaction: the state at one revision
        finally:
            src.close()
            dst.close()
        info = _sqlite_info(tmp)
        os.replace(tmp, path)
    except sqlite3.Error as e:
        raise SnapshotError(f"cannot copy {db}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    info.path = path
    return info


async def _save_etcd(url: str, path: str) -> SnapshotInfo:
    from aetcd import rpc

    from .etcd import EtcdConfig
    cfg = EtcdConfig.parse(url)
    tmp = _tmp_beside(path)
    channel = cfg.channel()
    try:
        with open(tmp, "wb") as f:
            async for chunk in rpc.MaintenanceStub(channel).Snapshot(rpc.SnapshotRequest(), timeout=600):
                f.write(chunk.blob)
        info = _etcd_info(tmp)
        os.replace(tmp, path)
    except Exception as e:
        if isinstance(e, SnapshotError):
            raise
        why = e.details() if hasattr(e, "details") else str(e)
        raise SnapshotError(f"etcd snapshot from {url}: {why}") from None
    finally:
        await channel.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    info.path = path
    return info


# ----------------------------------------------------------------- inspect
def inspect(path: str) -> SnapshotInfo:
    """What a snapshot holds; SnapshotError if the file is no snapshot sendo can restore."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    if head == SQLITE_MAGIC:
        return _sqlite_info(path)
    return _etcd_info(path)


def _sqlite_info(path: str) -> SnapshotInfo:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise SnapshotError(f"{path}: the SQLite file is damaged")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"kv", "meta"} <= tables:
                raise SnapshotError(f"{path}: a SQLite file, but not a sendo store (no kv and meta tables)")
            fmt = conn.execute("SELECT value FROM meta WHERE name='format'").fetchone()
            if fmt is not None and fmt[0] > FORMAT:
                raise SnapshotError(f"{path}: store format {fmt[0]} is newer than this sendo's ({FORMAT})")
            rev = conn.execute("SELECT MAX(rev) FROM kv").fetchone()[0] or 0
            keys = conn.execute("SELECT COUNT(*) FROM kv k JOIN (SELECT key, MAX(rev) AS r FROM kv GROUP BY key) m "
                                "ON k.rev = m.r WHERE k.deleted = 0").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise SnapshotError(f"{path}: not a usable SQLite snapshot ({e})") from None
    return SnapshotInfo(path, "sqlite", rev, keys, os.path.getsize(path))


def _etcdctl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    if shutil.which("etcdctl") is None:
        raise SnapshotError("etcdctl is not installed (Debian etcd-client; scripts/setup-containers.sh installs it)")
    return subprocess.run(["etcdctl", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ETCDCTL_API": "3"})


def _etcd_info(path: str) -> SnapshotInfo:
    r = _etcdctl("snapshot", "status", path, "-w", "json")
    try:
        status = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        status = None
    if not status:
        why = (r.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise SnapshotError(f"{path}: neither a sendo SQLite snapshot nor an etcd snapshot ({why})")
    return SnapshotInfo(path, "etcd", int(status.get("revision", 0)), int(status.get("totalKey", 0)),
                        os.path.getsize(path))


# ----------------------------------------------------------------- restore
@dataclass
class Restored:
    info: SnapshotInfo
    data_dir: str
    store_path: str  # the SQLite file or the etcd member's data directory
    datastore: str  # the --datastore a server uses on it ("" for the data dir's own SQLite file)


def restore(path: str, data_dir: str, etcd_name: str = "default",
            etcd_peer_url: str = "http://127.0.0.1:2380") -> Restored:
    info = inspect(path)
    data_dir = os.path.abspath(data_dir)
    if info.kind == "sqlite":
        target = os.path.join(data_dir, "server", "state.db")
        if os.path.exists(target):
            raise SnapshotError(f"{data_dir} already has a store ({target}): restore into a new data dir")
        copy_private(path, target)
        _restore_keys(path, data_dir)
        return Restored(info, data_dir, target, "")
    target = os.path.join(data_dir, "etcd")
    if os.path.exists(target):
        raise SnapshotError(f"{data_dir} already has an etcd member directory ({target}): restore into a new data dir")
    private_dir(data_dir)
    restore_member(path, target, etcd_name, etcd_peer_url, f"{etcd_name}={etcd_peer_url}")
    _restore_keys(path, data_dir)
    return Restored(info, data_dir, target, "")


def restore_member(path: str, target: str, name: str, peer_url: str, cluster: str) -> None:
    """An etcd snapshot as the data directory of member ``name`` of ``cluster`` (name=peer-url,…);
    every member of a cluster is restored from the same snapshot with the same ``cluster``."""
    r = _etcdctl("snapshot", "restore", path, "--data-dir", target, "--name", name,
                 "--initial-cluster", cluster, "--initial-advertise-peer-urls", peer_url)
    if r.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise SnapshotError(f"etcdctl snapshot restore failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")


# ----------------------------------------------------------------- list and prune
MANUAL, SCHEDULED, PRE_UPGRADE = "sendo-", "scheduled-", "pre-upgrade-"  # how a snapshot's file name begins
_STAMP = len("20260101T000000.000000Z")


def taken_at(name: str) -> str:
    """The UTC time in a snapshot's file name (the part before its suffix), which sorts as time does."""
    stem = name[:-len(SQLITE_SUFFIX)] if name.endswith(SQLITE_SUFFIX) else name[:-len(ETCD_SUFFIX)]
    return stem[-_STAMP:]


def listing(data_dir: str, prefix: str = "") -> list[SnapshotInfo]:
    """The snapshots under the data dir whose names begin with ``prefix`` (any: ""), oldest first."""
    d = snapshot_dir(data_dir)
    try:
        names = [n for n in os.listdir(d)
                 if n.startswith(prefix or (MANUAL, SCHEDULED, PRE_UPGRADE)) and n.endswith((SQLITE_SUFFIX, ETCD_SUFFIX))]
    except FileNotFoundError:
        return []
    names.sort(key=lambda n: (taken_at(n), n))
    return [SnapshotInfo(os.path.join(d, n), "sqlite" if n.endswith(SQLITE_SUFFIX) else "etcd", 0, 0,
                         os.path.getsize(os.path.join(d, n))) for n in names]


def prune(data_dir: str, keep: int, prefix: str = MANUAL) -> list[str]:
    """Delete all but the newest ``keep`` snapshots whose names begin with ``prefix``; the paths deleted.
    Snapshots written before a migration are never pruned (rollback needs them)."""
    if keep < 0:
        raise SnapshotError("--retention is a number of snapshots, 0 or more")
    old = listing(data_dir, prefix)
    gone = [s.path for s in old[:max(len(old) - keep, 0)]]
    for p in gone:
        os.unlink(p)
        if os.path.exists(keys_path(p)):
            os.unlink(keys_path(p))
    return gone
