"""What the API server needs to know about a kind: where it lives, how to check it.

Each built-in kind is a ``Resource`` (names, scope, subresources) with a ``Strategy``
(defaults, validation, the rules of update). The API server is generic; everything
kind-specific is here, so adding a kind means adding one Resource and one Strategy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Obj = dict[str, Any]


@dataclass(slots=True)
class Cause:
    """One field at fault, as Kubernetes reports it in Status.details.causes."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"  # FieldValueRequired, FieldValueNotSupported, FieldValueDuplicate, …

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def required(path: str) -> Cause:
    return Cause(path, "Required value", "FieldValueRequired")


def invalid(path: str, value: Any, why: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else repr(value) if value is not None else "null"
    return Cause(path, f"Invalid value: {shown}: {why}", "FieldValueInvalid")


def unsupported(path: str, value: Any, allowed: list[str]) -> Cause:
    opts = ", ".join(f'"{a}"' for a in allowed)
    return Cause(path, f'Unsupported value: "{value}": supported values: {opts}', "FieldValueNotSupported")


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f'Duplicate value: "{value}"', "FieldValueDuplicate")


def forbidden(path: str, why: str) -> Cause:
    return Cause(path, f"Forbidden: {why}", "FieldValueForbidden")


class Strategy:
    """Per-kind rules. The defaults suit a plain spec/status object."""

    has_status = True  # whether status is a subresource (main writes keep the old status)
    has_spec = True  # whether a spec change bumps metadata.generation

    def default(self, obj: Obj) -> None:
        """Fill defaults in place, as Kubernetes' defaulting does, before validation."""

    def validate(self, obj: Obj) -> list[Cause]:
        """Check a whole object (create, and every update)."""
        return []

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        """Extra checks that need the old object (immutable fields)."""
        return []

    def validate_status(self, obj: Obj, old: Obj) -> list[Cause]:
        """What a write through /status checks instead of validate(): the whole object,
        unless the kind knows its rules cover nothing a status write can change."""
        return self.validate(obj)

    def prepare_create(self, obj: Obj) -> None:
        """Server-owned fields on create (e.g. clear status)."""

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """Server-owned fields on update."""

    def update_subresource(self, sub: str, obj: Obj, old: Obj) -> Obj | None:
        """The object a write of subresource ``sub`` stores, for a kind whose subresource
        changes only part of it (a CSR's `approval`); None: the API's usual rules."""
        return None

    def holds_deletion(self, obj: Obj) -> bool:
        """Whether something besides metadata.finalizers keeps a deleted object (namespaces)."""
        return False

    def begin_deletion(self, obj: Obj) -> None:
        """Changes made when deletion starts but cannot finish yet (e.g. phase Terminating)."""


@dataclass
class Column:
    name: str
    type: str = "string"  # string, integer, date, number, boolean
    format: str = ""
    description: str = ""
    priority: int = 0  # 0: always shown; 1: only with -o wide


@dataclass
class Printer:
    """Server-side Table columns for `kubectl get` (rows: a function of the object)."""

    columns: list[Column]
    row: Callable[[Obj], list[Any]]


@dataclass
class ScaleSpec:
    """Where the scale subresource reads and writes (JSON paths as key lists)."""

    spec_replicas: tuple[str, ...] = ("spec", "replicas")
    status_replicas: tuple[str, ...] = ("status", "replicas")
    label_selector: tuple[str, ...] | None = ("status", "selector")


@dataclass
class Conversion:
    """A version served as a view of the objects of another (the stored) version."""

    storage_version: str
    to_served: Callable[[Obj], Obj]  # stored form → this version
    to_stored: Callable[[Obj], Obj]  # this version → stored form (after validation)


@dataclass
class Resource:
    group: str  # "" is the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: set[str] = field(default_factory=set)  # "status", "scale", "binding", "log"
    strategy: Strategy = field(default_factory=Strategy)
    printer: Printer | None = None
    scale: ScaleSpec | None = None
    list_kind: str = ""
    custom: bool = False  # served from a CustomResourceDefinition (no strategic merge patch)
    conversion: Conversion | None = None  # served from objects stored in another version
    # the key prefix of the store; one place decides the layout of the keyspace
    verbs: list[str] = field(default_factory=lambda: [
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])

    def __post_init__(self) -> None:
        self.singular = self.singular or self.kind.lower()
        self.list_kind = self.list_kind or self.kind + "List"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How errors name the kind, e.g. 'deployments.apps' or 'pods'."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def prefix(self, namespace: str | None = None) -> str:
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        return base + f"{namespace}/" if (self.namespaced and namespace) else base

    def key(self, namespace: str | None, name: str) -> str:
        return self.prefix(namespace if self.namespaced else None) + name


def set_default(d: Any, key: str, value: Any) -> None:
    """Set d[key] when d is a mapping and the key is absent or null."""
    if isinstance(d, dict) and d.get(key) is None:
        d[key] = value


def strip_nulls(v: Any) -> Any:
    """JSON null and an absent key mean the same; compare without the nulls."""
    if isinstance(v, dict):
        return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_nulls(x) for x in v]
    return v
