"""Helpers for server-side Table cells, shaped like `kubectl get` prints them.

The API server returns these cells as a meta.k8s.io/v1 Table, so the real kubectl shows
our objects exactly as it shows Kubernetes' own: ages like "3m2s", selectors like
"app=web", "<none>" for what is missing.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from .base import Column

Obj = dict[str, Any]


def as_dict(v: Any) -> dict:
    """v if it is a mapping, else {} (printers must never fail on odd stored data)."""
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def dicts(v: Any) -> list[dict]:
    """The mappings in a list, skipping anything else."""
    return [x for x in as_list(v) if isinstance(x, dict)]


def parse_timestamp(ts: Any) -> dt.datetime | None:
    """RFC 3339 (with or without fractional seconds) as an aware datetime, None if unusable."""
    if isinstance(ts, dt.datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)
    if not isinstance(ts, str) or not ts:
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def human_duration(seconds: float) -> str:
    """About 2-3 significant figures of a duration, with kubectl's thresholds and units."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"  # more than a second in the future: clocks disagree
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def human_age(timestamp: Any, now: dt.datetime | None = None) -> str:
    """How long ago a timestamp was ("5s", "3m2s", "2d"); "<unknown>" when absent."""
    t = parse_timestamp(timestamp)
    if t is None:
        return "<unknown>"
    now = now or dt.datetime.now(dt.timezone.utc)
    return human_duration((now - t).total_seconds())


def object_age(obj: Obj) -> str:
    return human_age(as_dict(obj.get("metadata")).get("creationTimestamp"))


def name_of(obj: Obj) -> str:
    return str(as_dict(obj.get("metadata")).get("name", ""))


def format_labels(labels: Any) -> str:
    """Sorted "k=v,k2=v2", or "<none>" (kubectl's form for label maps and map selectors)."""
    labels = as_dict(labels)
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Any) -> str:
    """A LabelSelector in the string form clients parse back ("app=web,tier in (a,b)").

    This is also what the scale subresource's status.selector holds. Requirements are
    sorted by key, values within a set requirement sorted too. Empty selector: "".
    """
    sel = as_dict(selector)
    reqs: list[tuple[str, str]] = []
    for k, v in as_dict(sel.get("matchLabels")).items():
        reqs.append((str(k), f"{k}={v}"))
    for e in dicts(sel.get("matchExpressions")):
        key, op = str(e.get("key", "")), e.get("operator")
        values = ",".join(sorted(str(v) for v in as_list(e.get("values"))))
        if op == "In":
            reqs.append((key, f"{key} in ({values})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({values})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def format_selector(selector: Any) -> str:
    """selector_string, with "<none>" for an empty selector (ReplicaSet's SELECTOR column)."""
    return selector_string(selector) or "<none>"


def container_cells(containers: Any) -> tuple[str, str]:
    """The CONTAINERS and IMAGES cells: names and images, comma-joined."""
    cs = dicts(containers)
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)


def name_column() -> Column:
    return Column("Name", format="name", description="Name of the object, unique within its namespace.")


def age_column() -> Column:
    return Column("Age", description="Time since the object was created.")
