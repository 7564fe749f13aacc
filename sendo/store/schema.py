"""The store's schema version: written at init, checked and migrated on every server start, rolled back.

The version is one key in the store, ``/sendo/schema`` (``{"version": N}``), beside the
objects (``/registry/…``), so it travels with every snapshot and is the same for every
server on one etcd. On start (``prepare``):

* a new, empty store gets this sendo's version (migrations.current());
* a store with objects but no version was made before versions existed: version 1;
* the same version: nothing to do;
* an older version: a snapshot of the store is written first (its path logged and recorded
  in ``<server dir>/upgrade.json``), then the migrations after the stored version run in
  order, the version written after each;
* a newer version, or a record sendo cannot read: the server refuses to start with one line
  that names both versions, before it writes anything.

``rollback`` puts the pre-migration snapshot back in place of a SQLite data dir's store, so
the older sendo starts on what it left.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from . import migrations as registry
from .base import Conflict, KeyExists, Store, StoreError

log = logging.getLogger(__name__)

SCHEMA_KEY = "/sendo/schema"
RECORD = "upgrade.json"  # in the server dir: the last migration's snapshot, for `sendo upgrade rollback`


class SchemaError(StoreError):
    """A store this sendo must not open (a newer or unreadable schema); the message is one line."""


@dataclass
class Prepared:
    found: int | None  # the stored version (None: a new store)
    version: int  # the version the store has now
    snapshot: str | None = None  # the snapshot written before migrating


def _encode(version: int) -> bytes:
    return json.dumps({"version": version}).encode()


def _decode(data: bytes) -> int:
    try:
        v = json.loads(data)["version"]
    except (ValueError, KeyError, TypeError):
        v = None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise SchemaError(f"the store's schema version record {SCHEMA_KEY} holds {data[:60]!r}, which is no schema "
                          f"version this sendo knows (it knows 1 to {registry.current()}): nothing was changed")
    return v


async def stored_version(store: Store) -> int | None:
    """The store's schema version; None for a new store; the baseline for one made before versions."""
    kv = await store.get(SCHEMA_KEY)
    if kv is not None:
        return _decode(kv.data)
    return registry.BASELINE if await store.count("/registry/") else None


async def _write(store: Store, version: int) -> None:
    """Raise the stored version to ``version`` (never lower it: another server may be ahead)."""
    while True:
        kv = await store.get(SCHEMA_KEY)
        if kv is not None and _decode(kv.data) >= version:
            return
        try:
            if kv is None:
                await store.create(SCHEMA_KEY, _encode(version))
            else:
                await store.update(SCHEMA_KEY, _encode(version), expected_rev=kv.mod_rev)
            return
        except (KeyExists, Conflict):
            continue  # another server wrote it meanwhile: read again


def too_new(found: int, knows: int) -> SchemaError:
    return SchemaError(f"the store's schema version is {found}, newer than this sendo knows ({knows}): "
                       "start a newer sendo, or `sendo upgrade rollback` to the snapshot taken before the "
                       "migration; nothing was changed")


async def prepare(store: Store, snapshot: Callable[[int, int], Awaitable[str]],
                  migrations: list[registry.Migration] | None = None) -> Prepared:
    """Bring a started store to this sendo's schema; ``snapshot(found, target)`` is awaited (and must
    return the snapshot's path) before the first migration changes anything."""
    ms = registry.MIGRATIONS if migrations is None else migrations
    registry.check_order(ms)
    target = registry.current(ms)
    found = await stored_version(store)
    if found is None:
        await _write(store, target)
        return Prepared(None, target)
    if found > target:
        raise too_new(found, target)
    if found == target:
        if await store.get(SCHEMA_KEY) is None:
            await _write(store, target)  # a store from before versions: record what it is
        return Prepared(found, target)
    path = await snapshot(found, target)
    log.warning("store schema %d -> %d: snapshot written first to %s (`sendo upgrade rollback` returns to it)",
                found, target, path)
    for m in ms[found - registry.BASELINE:]:
        log.warning("store schema migration to %d: %s", m.version, m.what)
        await m.run(store)
        await _write(store, m.version)
    return Prepared(found, target, path)


# ----------------------------------------------------------------- the record and rollback
def write_record(server_dir: str, snapshot: str, found: int, target: int, datastore: str) -> None:
    from ..private import write_private
    rec = {"snapshot": snapshot, "from": found, "to": target, "datastore": datastore,
           "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    write_private(os.path.join(server_dir, RECORD), json.dumps(rec).encode() + b"\n")


def read_record(server_dir: str) -> dict | None:
    try:
        with open(os.path.join(server_dir, RECORD)) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        raise SchemaError(f"{os.path.join(server_dir, RECORD)} is damaged: no snapshot to roll back to") from None
    return rec if isinstance(rec, dict) and isinstance(rec.get("snapshot"), str) else None


@dataclass
class RolledBack:
    snapshot: str
    version: int  # the schema version the data dir has again
    kept: str  # where the migrated store was moved


def _serving(server_dir: str) -> str | None:
    """The URL of a server that runs on this data dir now (its components file, and it answers)."""
    try:
        with open(os.path.join(server_dir, "components.json")) as f:
            url = json.load(f).get("apiserver", "")
    except (OSError, ValueError):
        return None
    u = urlsplit(url)
    if not u.hostname or not u.port:
        return None
    try:
        socket.create_connection((u.hostname, u.port), timeout=1).close()
    except OSError:
        return None
    return url


def rollback(data_dir: str) -> RolledBack:
    """Return a data dir's store to the snapshot written before its last migration: a SQLite
    data dir's file, or the etcd members of a `sendo up --servers N` data dir. Everything is
    checked and the snapshot copied before anything moves; the migrated store is kept beside it."""
    if os.path.exists(os.path.join(data_dir, "ha", "layout.json")):
        return _rollback_members(data_dir)
    from .snapshot import copy_private, inspect, store_url
    server_dir = os.path.join(data_dir, "server")
    rec = _record_or_refuse(data_dir, [server_dir])[0]
    path = rec["snapshot"]
    url = store_url(data_dir)
    if not url.startswith("sqlite://"):
        raise SchemaError(f"the store is {url}, an etcd sendo does not run: restore the pre-migration snapshot "
                          f"{path} into each member with `sendo snapshot restore`; nothing was changed")
    _refuse_if_serving(data_dir, [server_dir])
    info = inspect(path)  # a damaged or missing snapshot is refused here, before anything moves
    if info.kind != "sqlite":
        raise SchemaError(f"{path} is an {info.kind} snapshot, not this data dir's SQLite store; nothing was changed")
    db = url[len("sqlite://"):]
    kept = _kept_dir(server_dir)
    copy_private(path, db + ".rollback")  # the copy first: a full disk fails here, with nothing moved
    os.makedirs(kept, mode=0o700)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.replace(db + suffix, os.path.join(kept, os.path.basename(db) + suffix))
    os.replace(db + ".rollback", db)
    os.replace(os.path.join(server_dir, RECORD), os.path.join(kept, RECORD))
    return RolledBack(path, int(rec.get("from", 0)), kept)


def _record_or_refuse(data_dir: str, server_dirs: list[str]) -> tuple[dict, str]:
    """The record of the last migration among the server dirs, and the dir it is in. Servers on
    one etcd that started together each wrote one: the first snapshot was taken before any of
    them changed anything, so of the records of the newest migration the oldest one is chosen."""
    found = [(rec, d) for d in server_dirs if (rec := read_record(d)) is not None]
    if not found:
        raise SchemaError(f"no pre-migration snapshot in {data_dir}: no migration was made on this data dir "
                          "(or it was rolled back already); nothing was changed")
    from .snapshot import taken_at
    newest = max(int(rec.get("to", 0)) for rec, _ in found)
    return min((f for f in found if int(f[0].get("to", 0)) == newest),
               key=lambda f: taken_at(os.path.basename(f[0]["snapshot"])))


def _refuse_if_serving(data_dir: str, server_dirs: list[str]) -> None:
    for d in server_dirs:
        if (running := _serving(d)) is not None:
            raise SchemaError(f"a server runs on {data_dir} ({running}): stop it first; nothing was changed")


def _kept_dir(parent: str) -> str:
    return os.path.join(parent, "rolled-back-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"))


def _rollback_members(data_dir: str) -> RolledBack:
    """`sendo up --servers N`'s own etcd members, each restored from the pre-migration snapshot."""
    from .snapshot import inspect, restore_member
    with open(os.path.join(data_dir, "ha", "layout.json")) as f:
        layout = json.load(f)
    server_dirs = [os.path.join(data_dir, "servers", f"s{i}", "server") for i in range(len(layout["servers"]))]
    rec, rec_dir = _record_or_refuse(data_dir, server_dirs)
    path = rec["snapshot"]
    if not layout["etcd"]:
        raise SchemaError(f"this cluster uses an etcd sendo does not run: restore the pre-migration snapshot {path} "
                          "into each member with `sendo snapshot restore`; nothing was changed")
    _refuse_if_serving(data_dir, server_dirs)
    for i, (client, _) in enumerate(layout["etcd"]):
        try:
            socket.create_connection(("127.0.0.1", client), timeout=1).close()
        except OSError:
            continue
        raise SchemaError(f"etcd member m{i} of {data_dir} answers on port {client}: stop `sendo up` first; "
                          "nothing was changed")
    info = inspect(path)
    if info.kind != "etcd":
        raise SchemaError(f"{path} is a {info.kind} snapshot, not this cluster's etcd; nothing was changed")
    base = os.path.join(data_dir, "etcd")
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(layout["etcd"]))
    fresh = [os.path.join(base, f"m{i}.rollback") for i in range(len(layout["etcd"]))]
    try:
        for i, ((_, peer), target) in enumerate(zip(layout["etcd"], fresh)):
            shutil.rmtree(target, ignore_errors=True)  # a rollback that stopped half-way before
            restore_member(path, target, f"m{i}", f"http://127.0.0.1:{peer}", cluster)
    except BaseException:
        for target in fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    kept = _kept_dir(base)
    os.makedirs(kept, mode=0o700)
    for i, target in enumerate(fresh):
        member = os.path.join(base, f"m{i}")
        if os.path.exists(member):
            os.replace(member, os.path.join(kept, f"m{i}"))
        os.replace(target, member)
    os.replace(os.path.join(rec_dir, RECORD), os.path.join(kept, RECORD))
    for d in server_dirs:  # the other servers' records name the same migration
        if os.path.exists(os.path.join(d, RECORD)):
            os.unlink(os.path.join(d, RECORD))
    return RolledBack(path, int(rec.get("from", 0)), kept)
