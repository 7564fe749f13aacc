"""Event (v1)."""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, required
from .printing import as_dict, human_age, name_of
from .validation import check_int, invalid_value, NoStatus, type_invalid


# ======================================================================= Event

CLUSTER_SCOPED_KINDS = {"Node", "Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}


def _event_source(ev: Obj) -> str:
    src = as_dict(ev.get("source"))
    component = src.get("component") or ev.get("reportingComponent") or ""
    host = src.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def event_row(ev: Obj) -> list[Any]:
    """LAST SEEN, TYPE, REASON, OBJECT ("pod/web-1"), MESSAGE, and the wide columns between."""
    first = human_age(ev.get("firstTimestamp")) if ev.get("firstTimestamp") else human_age(ev.get("eventTime"))
    last = human_age(ev.get("lastTimestamp")) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    series = ev.get("series")
    if isinstance(series, dict):
        last = human_age(series.get("lastObservedTime"))
        count = series.get("count") or count
    obj = as_dict(ev.get("involvedObject"))
    kind = str(obj.get("kind", "")).lower()
    target = f"{kind}/{obj['name']}" if obj.get("name") else kind
    return [last, ev.get("type", ""), ev.get("reason", ""), target, obj.get("fieldPath", ""),
            _event_source(ev), str(ev.get("message", "")).strip(), first, count, name_of(ev)]


EVENT_PRINTER = Printer(
    columns=[
        Column("Last Seen", description="When the event last happened."),
        Column("Type", description="Normal or Warning."),
        Column("Reason", description="Why the event happened, in one word."),
        Column("Object", description="The object the event is about."),
        Column("Subobject", priority=1, description="The part of the object, e.g. a container."),
        Column("Source", priority=1, description="The component that reported the event."),
        Column("Message", description="What happened."),
        Column("First Seen", priority=1, description="When the event first happened."),
        Column("Count", type="integer", priority=1, description="How many times it happened."),
        Column("Name", format="name", priority=1, description="The name of the event object."),
    ],
    row=event_row,
)


class EventStrategy(NoStatus):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        involved = obj.get("involvedObject")
        if not involved:
            return [required("involvedObject")]
        if not isinstance(involved, dict):
            return [type_invalid("involvedObject", involved, dict)]
        event_ns = as_dict(obj.get("metadata")).get("namespace") or ""
        obj_ns = involved.get("namespace") or ""
        if obj_ns and obj_ns != event_ns and involved.get("kind") not in CLUSTER_SCOPED_KINDS:
            causes.append(invalid_value("involvedObject.namespace", obj_ns, "does not match event.namespace"))
        check_int(obj, "count", "count", causes, minimum=0)
        return causes
