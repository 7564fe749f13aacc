"""Stores: the durable, revisioned truth behind the API server."""
from .base import KV, Compacted, Conflict, Event, KeyExists, KeyNotFound, Store, StoreError

__all__ = ["KV", "Compacted", "Conflict", "Event", "KeyExists", "KeyNotFound", "Store", "StoreError"]
