"""What an API URL names (group, version, resource, namespace, name, subresource),
parsed once and shared by the router and the WebSocket entry of port-forward."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    """What a URL names: a group/version, maybe a resource, namespace, name, subresource;
    or, for discovery and OpenAPI, only a ``path`` (a non-resource request)."""

    group: str
    version: str
    plural: str = ""
    namespace: str | None = None
    name: str | None = None
    sub: str | None = None
    path: str = ""
    field_selector: str = ""  # of a list or watch: the node authorizer reads it (AuthorizeWithSelectors)


def parse_path(path: str) -> Target | None:
    segs = [s for s in path.split("/") if s]
    if not segs:
        return None
    if segs[0] == "api" and len(segs) >= 2:
        group, version, rest = "", segs[1], segs[2:]
    elif segs[0] == "apis" and len(segs) >= 3:
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    t = Target(group, version)
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        t.namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    t.plural = rest[0] if rest else ""
    t.name = rest[1] if len(rest) > 1 else None
    t.sub = rest[2] if len(rest) > 2 else None
    return t
