"""Which store a server uses, chosen by the scheme of its ``--datastore`` URL.

Adding a store (etcd, …) is one module with a ``from_url`` class method and one line
in ``STORES``; the module is imported only when a URL names it, so a store's client
library is needed only by the servers that use it.
"""
from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from .base import DatastoreURLError, Store

# scheme -> "module:Class"; the class has ``from_url(url: str) -> Store``
STORES: dict[str, str] = {
    "sqlite": "sendo.store.sqlite:SQLiteStore",
    "etcd": "sendo.store.etcd:EtcdStore",
}


def default_url(path: str) -> str:
    """The embedded default: a SQLite file at ``path``."""
    return "sqlite://" + path


def open_store(url: str) -> Store:
    """A (not yet started) store for ``url``, e.g. ``sqlite:///var/lib/sendo/state.db``."""
    scheme = urlsplit(url).scheme
    target = STORES.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in sorted(STORES))
        raise DatastoreURLError(f"unknown datastore {url!r}: the scheme must be one of {known}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls).from_url(url)
