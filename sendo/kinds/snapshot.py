"""sendo.dev/v1alpha1 Snapshot: a snapshot of the cluster's store, asked for with one API call.

Creating one (``kubectl create -f``, any client) asks the API servers for a snapshot; the
first server to claim it (``status.phase: Running``, ``status.server``, a compare-and-swap
on the status) writes it into its data dir as ``sendo snapshot save`` does and records
``status.path``, ``revision``, ``keys``, ``size`` and ``Completed`` (or ``Failed`` with
``message``). The object has no spec: what it asks for is "now". Deleting it leaves the file.
"""
from __future__ import annotations

from typing import Any

from .base import Obj, Printer, Resource, Column
from .printing import age_column, as_dict, name_column, name_of, object_age
from .schema import normalize, validate_object
from .validation import KindStrategy

GROUP, VERSION, KIND, PLURAL = "sendo.dev", "v1alpha1", "Snapshot", "snapshots"
_STR = {"type": "string"}
_INT = {"type": "integer", "format": "int64"}
_STATUS = {"type": "object", "properties": {
    "phase": {"type": "string", "enum": ["Running", "Completed", "Failed"]},
    "server": {"type": "string", "description": "The API server that takes it (its URL)."},
    "path": {"type": "string", "description": "The snapshot file, on that server's machine."},
    "revision": _INT, "keys": _INT, "size": _INT, "message": _STR,
    "completionTime": {"type": "string", "format": "date-time"}}}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "apiVersion": _STR, "kind": _STR, "metadata": {"type": "object"}, "status": _STATUS},
    "description": "Snapshot asks the API servers for a snapshot of the store; status says where it is."}


class SnapshotStrategy(KindStrategy):
    schema = SCHEMA

    def default(self, obj: Obj) -> None:
        normalize(obj, self.schema)

    def prepare_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def validate_object(self, obj: Obj):
        normalize(obj, self.schema)
        return validate_object(obj, self.schema)


def snapshot_row(obj: Obj) -> list[Any]:
    st = as_dict(obj.get("status"))
    return [name_of(obj), st.get("phase") or "Pending", st.get("path") or st.get("message") or "", object_age(obj)]


RESOURCES = [
    Resource(GROUP, VERSION, KIND, PLURAL, False, subresources={"status"}, strategy=SnapshotStrategy(),
             printer=Printer(columns=[name_column(), Column("Phase", description="Pending, Running, Completed, Failed."),
                                      Column("Path", description="The snapshot file (or why it failed)."),
                                      age_column()], row=snapshot_row),
             categories=["sendo"], custom=True),
]
