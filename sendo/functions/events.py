"""CloudEvents 1.0 (structured JSON form) for the invocations sendo makes itself."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

SPEC_VERSION = "1.0"
CRON_TYPE = "dev.sendo.function.cron"
EVENT_TYPE_PREFIX = "dev.sendo.cluster."  # + added / modified / deleted


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud_event(source: str, type_: str, data: Any, *, id_: str | None = None, subject: str | None = None,
                time: dt.datetime | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"specversion": SPEC_VERSION, "id": id_ or str(uuid.uuid4()), "source": source,
                          "type": type_, "time": rfc3339(time or dt.datetime.now(dt.timezone.utc)),
                          "datacontenttype": "application/json", "data": data}
    if subject:
        ev["subject"] = subject
    return ev


def cron_event(namespace: str, name: str, schedule: str, tick: dt.datetime) -> dict[str, Any]:
    """One cron tick; its id is the tick, so a retried tick is recognisable as the same event."""
    return cloud_event(f"/apis/sendo.dev/v1alpha1/namespaces/{namespace}/functions/{name}/cron", CRON_TYPE,
                       {"schedule": schedule, "scheduledTime": rfc3339(tick)},
                       id_=f"{namespace}/{name}/cron/{rfc3339(tick)}", time=tick)


def cluster_event(watch_type: str, obj: dict[str, Any], source: str) -> dict[str, Any]:
    """One watch event on a cluster object; its id is (uid, resourceVersion, type)."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name", "")
    return cloud_event(source, EVENT_TYPE_PREFIX + watch_type.lower(), obj,
                       id_=f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}/{watch_type}",
                       subject=f"{ns}/{name}" if ns else name)
