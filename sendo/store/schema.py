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
           "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
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
    """Return a data dir's store to the snapshot written before its last migration.
    Everything is checked before anything moves; the migrated store is kept beside it."""
    from .snapshot import copy_private, inspect, store_url
    server_dir = os.path.join(data_dir, "server")
    rec = read_record(server_dir)
    if rec is None:
        raise SchemaError(f"no pre-migration snapshot in {data_dir}: no migration was made on this data dir "
                          "(or it was rolled back already); nothing was changed")
    path = rec["snapshot"]
    url = store_url(data_dir)
    if not url.startswith("sqlite://"):
        raise SchemaError(f"the store is {url}: restore the pre-migration snapshot {path} with `sendo snapshot "
                          "restore` into each etcd member (automatic rollback covers SQLite data dirs); "
                          "nothing was changed")
    if (running := _serving(server_dir)) is not None:
        raise SchemaError(f"a server runs on {data_dir} ({running}): stop it first; nothing was changed")
    info = inspect(path)  # a damaged or missing snapshot is refused here, before anything moves
    if info.kind != "sqlite":
        raise SchemaError(f"{path} is an {info.kind} snapshot, not this data dir's SQLite store; nothing was changed")
    db = url[len("sqlite://"):]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = os.path.join(server_dir, f"rolled-back-{stamp}")
    copy_private(path, db + ".rollback")  # the copy first: a full disk fails here, with nothing moved
    os.makedirs(kept, mode=0o700)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.replace(db + suffix, os.path.join(kept, os.path.basename(db) + suffix))
    os.replace(db + ".rollback", db)
    os.replace(os.path.join(server_dir, RECORD), os.path.join(kept, RECORD))
    return RolledBack(path, int(rec.get("from", 0)), kept)
