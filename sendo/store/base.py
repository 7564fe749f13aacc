"""The Store protocol: a revisioned key-value log, the shape etcd and kine share.

Every write gets the next global revision. A store keeps the bytes it was given; the
revision becomes the object's metadata.resourceVersion only when a ``KV`` is read
(``versioner.py``), so writers need not know the revision in advance and several API
servers can write to one store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from .versioner import splice, unsplice, with_version


class StoreError(Exception):
    pass


class DatastoreURLError(ValueError):
    """A --datastore URL that names no known store, or that its store cannot use."""


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class Conflict(StoreError):
    """The key's current revision is not the one the writer expected."""

    def __init__(self, current_rev: int):
        super().__init__(f"current revision is {current_rev}")
        self.current_rev = current_rev


class Compacted(StoreError):
    """The requested revision is older than the compaction point."""

    def __init__(self, requested: int, compact_rev: int):
        super().__init__(f"revision {requested} is compacted (oldest is {compact_rev})")
        self.requested = requested
        self.compact_rev = compact_rev


class KV:
    """One version of a key. ``data`` is what the store holds; ``value`` is what readers and
    watchers are served: the data with ``mod_rev`` as metadata.resourceVersion, made on first
    use and then shared by every reader and watcher of this version. Once ``value`` is made,
    ``data`` is derived from it, so a version read many times is held once."""

    __slots__ = ("key", "mod_rev", "create_rev", "size", "_data", "_value")

    def __init__(self, key: str, value: bytes | None, mod_rev: int, create_rev: int, data: bytes | None = None):
        """``value``: bytes to serve as they are (a dry run's answer); a store passes ``data`` instead."""
        self.key, self.mod_rev, self.create_rev = key, mod_rev, create_rev
        self._value = value
        self._data = value if data is None else data
        self.size = len(self._data)  # of the stored form

    @classmethod
    def stored(cls, key: str, data: bytes, mod_rev: int, create_rev: int) -> "KV":
        return cls(key, None, mod_rev, create_rev, data)

    @property
    def value(self) -> bytes:
        v = self._value
        if v is None:
            v = splice(self._data, self.mod_rev)
            if v is None:
                v = with_version(self._data, self.mod_rev)  # another layout: keep the stored form too
            else:
                self._data = None  # unsplice() gives it back
            self._value = v
        return v

    @property
    def data(self) -> bytes:
        return self._data if self._data is not None else unsplice(self._value)

    def __repr__(self) -> str:
        return f"KV({self.key!r}, mod_rev={self.mod_rev}, create_rev={self.create_rev}, {self.size} bytes)"


@dataclass(slots=True)
class Event:
    type: str  # "create" | "update" | "delete"
    kv: KV  # for delete: the last value, mod_rev = the deletion revision
    prev: KV | None


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @property
    def progress(self) -> int:
        """A revision up to which every matching event has been delivered (a bookmark's)."""

    def close(self) -> None: ...


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def revision(self) -> int: ...

    @property
    def compact_revision(self) -> int: ...

    async def latest_revision(self) -> int:
        """The newest revision as the store itself says (``revision`` is what this server has seen;
        with several servers on one store another may have written since)."""

    async def get(self, key: str) -> KV | None: ...

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]: ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, data: bytes) -> KV: ...

    async def update(self, key: str, data: bytes, expected_rev: int | None = None) -> KV: ...

    async def delete(self, key: str, expected_rev: int | None = None, data: bytes | None = None) -> KV:
        """``data``: the object's last state, for the tombstone and the delete event (else the current value)."""

    def watch(self, prefix: str, from_rev: int = 0) -> Watch: ...

    async def compact(self, revision: int) -> None: ...
