"""The Store protocol: a revisioned key-value log, the shape etcd and kine share.

Every write gets the next global revision. Objects carry it as
metadata.resourceVersion, so the value is rendered by a callback that receives the
revision assigned to the write (``Render``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

Render = Callable[[int], bytes]


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


@dataclass(slots=True)
class KV:
    key: str
    value: bytes
    mod_rev: int
    create_rev: int


@dataclass(slots=True)
class Event:
    type: str  # "create" | "update" | "delete"
    kv: KV  # for delete: the last value, mod_rev = the deletion revision
    prev: KV | None


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    def close(self) -> None: ...


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def revision(self) -> int: ...

    @property
    def compact_revision(self) -> int: ...

    async def get(self, key: str) -> KV | None: ...

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]: ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, render: Render) -> KV: ...

    async def update(self, key: str, render: Render, expected_rev: int | None = None) -> KV: ...

    async def delete(self, key: str, expected_rev: int | None = None, render: Render | None = None) -> KV: ...

    def watch(self, prefix: str, from_rev: int = 0) -> Watch: ...

    async def compact(self, revision: int) -> None: ...
