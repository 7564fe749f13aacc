"""The SQLite store's table, its upgrades and its space reclamation (synchronous, run on the writer thread).

Format 2 keeps objects without metadata.resourceVersion (``versioner.py``); a database
written by an older sendo has it inside every value and is rewritten once at open.
The file is created with incremental auto-vacuum, so the pages a compaction frees are
given back to the file system; an older file is converted by one VACUUM the first
time a compaction leaves much of it free.
"""
from __future__ import annotations

import ctypes
import logging
import sqlite3

from .versioner import strip_version

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    rev        INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_rev ON kv (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

FORMAT = 2  # 1: values carried their resourceVersion; 2: they do not
MIGRATE_CHUNK = 1000
VACUUM_FREE_SHARE = 0.25  # a file without auto-vacuum is vacuumed once this share of it is free


def _meta(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables (a new file with incremental auto-vacuum) or bring an old file to FORMAT."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchone() is None:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only possible before the first table
        conn.executescript(SCHEMA)
        set_meta(conn, "format", FORMAT)
        return
    conn.executescript(SCHEMA)
    if (_meta(conn, "format") or 1) < FORMAT:
        _strip_versions(conn)


def _strip_versions(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        after, n = 0, 0
        while True:
            rows = conn.execute("SELECT rev, value FROM kv WHERE rev > ? ORDER BY rev LIMIT ?",
                                (after, MIGRATE_CHUNK)).fetchall()
            if not rows:
                break
            conn.executemany("UPDATE kv SET value = ? WHERE rev = ?",
                             [(strip_version(value), rev) for rev, value in rows])
            after, n = rows[-1][0], n + len(rows)
        set_meta(conn, "format", FORMAT)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    log.info("store upgraded to format %d: %d rows no longer carry a resourceVersion", FORMAT, n)


def compact_rows(conn: sqlite3.Connection, revision: int) -> None:
    """Delete every row a read at ``revision`` or later can no longer see; give the space back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "DELETE FROM kv WHERE rev <= :r AND (deleted = 1 OR EXISTS "
            "(SELECT 1 FROM kv k2 WHERE k2.key = kv.key AND k2.rev > kv.rev AND k2.rev <= :r))",
            {"r": revision})
        set_meta(conn, "compact_rev", revision)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    reclaim_space(conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    release_memory()


def reclaim_space(conn: sqlite3.Connection) -> None:
    """Return free pages to the file system, so the file shrinks after a compaction."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if not free:
        return
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # incremental
        conn.execute("PRAGMA incremental_vacuum").fetchall()
        return
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    if free >= pages * VACUUM_FREE_SHARE:  # a file from an older sendo: convert it once
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")


def release_memory() -> None:
    """Hand the heap pages that freed values leave behind back to the OS (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
