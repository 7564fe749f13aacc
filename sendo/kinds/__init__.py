"""Kinds: names, scope, defaults, validation and table columns of every served kind."""
from .base import Cause, Resource, Strategy
from .registry import Registry, builtin_registry

__all__ = ["Cause", "Resource", "Strategy", "Registry", "builtin_registry"]
