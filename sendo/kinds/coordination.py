"""coordination.k8s.io/v1 kinds: Leases for node heartbeats and leader election."""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, Resource
from .printing import as_dict, name_of, object_age, parse_timestamp
from .validation import KindStrategy, check_int, get, invalid_value


def lease_row(lease: Obj) -> list[Any]:
    return [name_of(lease), as_dict(lease.get("spec")).get("holderIdentity") or "", object_age(lease)]


LEASE_PRINTER = Printer(
    columns=[
        Column("Name", format="name", description="Name of the lease, unique within its namespace."),
        Column("Holder", description="Who holds the lease now."),
        Column("Age", description="Time since the lease was created."),
    ],
    row=lease_row,
)


class LeaseStrategy(KindStrategy):
    """A lease is all spec and is rewritten on every renewal, so no status and no generation."""

    has_status = False
    has_spec = False

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes) or {}
        get(spec, "holderIdentity", "spec.holderIdentity", str, causes)
        check_int(spec, "leaseDurationSeconds", "spec.leaseDurationSeconds", causes, minimum=1)
        check_int(spec, "leaseTransitions", "spec.leaseTransitions", causes, minimum=0)
        for key in ("acquireTime", "renewTime"):
            value = get(spec, key, f"spec.{key}", str, causes)
            if value and parse_timestamp(value) is None:
                causes.append(invalid_value(f"spec.{key}", value, "must be an RFC 3339 time, e.g. 2006-01-02T15:04:05.000000Z"))
        return causes


RESOURCES = [
    Resource("coordination.k8s.io", "v1", "Lease", "leases", True, strategy=LeaseStrategy(), printer=LEASE_PRINTER),
]
