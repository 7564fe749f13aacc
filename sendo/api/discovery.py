"""Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>) built from the registry."""
from __future__ import annotations

from typing import Any

from ..kinds.registry import Registry

SUBRESOURCE_KINDS = {"binding": ("Binding", "", "", ["create"]),
                     "eviction": ("Eviction", "policy", "v1", ["create"]),
                     "log": ("Pod", "", "", ["get"]),
                     "portforward": ("PodPortForwardOptions", "", "", ["create", "get"]),
                     # PodProxyOptions, ServiceProxyOptions, NodeProxyOptions
                     "proxy": ("{kind}ProxyOptions", "", "", ["create", "delete", "get", "patch", "update"]),
                     "exec": ("PodExecOptions", "", "", ["create", "get"]),
                     "attach": ("PodAttachOptions", "", "", ["create", "get"]),
                     "finalize": (None, "", "", ["update"]),
                     "approval": (None, "", "", ["get", "patch", "update"]),
                     "scale": ("Scale", "autoscaling", "v1", ["get", "patch", "update"]),
                     "status": (None, "", "", ["get", "patch", "update"]),
                     "token": ("TokenRequest", "authentication.k8s.io", "v1", ["create"])}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [_group_entry(g, vs) for g, vs in sorted(registry.groups().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    vs = registry.groups().get(group)
    if not vs or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, vs)}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    rs = registry.in_group_version(group, version)
    if not rs:
        return None
    out = []
    for r in sorted(rs, key=lambda r: r.plural):
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": r.verbs, "storageVersionHash": ""}
        if r.short_names:
            entry["shortNames"] = r.short_names
        if r.categories:
            entry["categories"] = r.categories
        out.append(entry)
        for sub in sorted(r.subresources):
            kind, sgroup, sversion, verbs = SUBRESOURCE_KINDS[sub]
            e = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                 "kind": kind.format(kind=r.kind) if kind else r.kind, "verbs": verbs}
            if sgroup:
                e["group"], e["version"] = sgroup, sversion
            out.append(e)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
