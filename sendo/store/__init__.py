"""Stores: the durable, revisioned truth behind the API server."""
from .base import KV, Compacted, Conflict, DatastoreURLError, Event, KeyExists, KeyNotFound, Store, StoreError
from .registry import STORES, default_url, open_store

__all__ = ["KV", "Compacted", "Conflict", "DatastoreURLError", "Event", "KeyExists", "KeyNotFound", "STORES",
           "Store", "StoreError", "default_url", "open_store"]
