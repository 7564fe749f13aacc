"""The default ClusterRoles and ClusterRoleBindings every cluster has, as Kubernetes'
bootstrap policy defines them (cut to the kinds sendo serves and will serve).

* ``cluster-admin`` (everything), bound to the group ``system:masters`` (the admin token).
* ``admin``, ``edit``, ``view``: aggregated ClusterRoles meant for RoleBindings in a
  namespace. Their rules are the sum of the ClusterRoles labelled
  ``rbac.authorization.k8s.io/aggregate-to-{admin,edit,view}: "true"``
  (``system:aggregate-to-*`` here, and any a user adds); ``view`` aggregates into
  ``edit`` and ``edit`` into ``admin``. ``view`` cannot read Secrets; ``edit`` can, and
  can change workloads but not roles or bindings; ``admin`` can also manage Roles and
  RoleBindings in the namespace.
* ``system:discovery``, ``system:basic-user`` (bound to every authenticated user) and
  ``system:public-info-viewer`` (bound to authenticated and unauthenticated users).
* the roles of sendo's own scheduler and control loops, each bound to the identity the
  component acts as (component_policy.py).

At every start the server creates what is missing and brings back what changed, unless
the object says ``rbac.authorization.kubernetes.io/autoupdate: "false"``.
"""
from __future__ import annotations

from typing import Any

import orjson

from .errors import APIError

from .component_policy import component_roles, component_subjects
from ..kinds.rbac import GROUP, READ, WRITE, aggregated_rules, rule, url_rule

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def _role(name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None,
          aggregate_from: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                           "metadata": {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})},
                                        "annotations": {AUTOUPDATE: "true"}},
                           "rules": rules}
    if aggregate_from:
        obj["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate_from}": "true"}}]}
    return obj


def _binding(name: str, role: str, groups: list[str], subjects: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABEL), "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups] + (subjects or [])}


def _to(role: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true"}


VIEW_RULES = [
    rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                "services/status"], READ),
    rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
    rule([""], ["namespaces"], READ),
    rule(["discovery.k8s.io"], ["endpointslices"], READ),
    rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                    "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                    "statefulsets/scale", "statefulsets/status"], READ),
    rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
    rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
    rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
    rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
]

EDIT_RULES = [
    rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
    rule([""], ["serviceaccounts"], ["impersonate"]),
    rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
    rule([""], ["pods/eviction"], ["create"]),
    rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
    rule([""], ["serviceaccounts/token"], ["create"]),
    rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                    "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
    rule(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
    rule(["batch"], ["cronjobs", "jobs"], WRITE),
    rule(["policy"], ["poddisruptionbudgets"], WRITE),
    rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
    rule(["coordination.k8s.io"], ["leases"], READ + WRITE),
]

ADMIN_RULES = [
    rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    rule([GROUP], ["rolebindings", "roles"], READ + WRITE),
]

PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                  "/readyz", "/version", "/version/"]


def cluster_roles() -> list[dict[str, Any]]:
    """In the order they are written: aggregated roles after the roles they sum."""
    return [
        _role("cluster-admin", [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])]),
        _role("system:discovery", [url_rule(DISCOVERY_URLS, ["get"])]),
        _role("system:public-info-viewer", [url_rule(PUBLIC_URLS, ["get"])]),
        _role("system:basic-user", [
            rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        _role("system:auth-delegator", [  # for servers that delegate authentication and authorization
            rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]),
        _role("system:aggregate-to-view", VIEW_RULES, _to("view")),
        _role("system:aggregate-to-edit", EDIT_RULES, _to("edit")),
        _role("system:aggregate-to-admin", ADMIN_RULES, _to("admin")),
        _role("view", [], {**_to("edit")}, aggregate_from="view"),
        _role("edit", [], {**_to("admin")}, aggregate_from="edit"),
        _role("admin", [], aggregate_from="admin"),
        *(_role(name, rules) for name, rules in component_roles()),
    ]


def cluster_role_bindings() -> list[dict[str, Any]]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 ["system:authenticated", "system:unauthenticated"]),
        *(_binding(name, name, [], [subject]) for name, subject in component_subjects().items()),
    ]


def _differs(stored: dict[str, Any], want: dict[str, Any]) -> bool:
    keys = ("rules", "aggregationRule", "roleRef", "subjects")
    labels = (stored.get("metadata") or {}).get("labels") or {}
    return any(stored.get(k) != want.get(k) for k in keys if k in want) or \
        any(labels.get(k) != v for k, v in want["metadata"]["labels"].items())


async def _write_default(api, resource, name: str, want: dict[str, Any]) -> None:
    """Create a default role or binding, or bring a stored one back to the defaults unless
    its owner turned auto-update off."""
    kv = await api.store.get(resource.key(None, name))
    if kv is None:
        await api.create(resource, None, want)
        return
    have = orjson.loads(kv.value)
    auto = ((have.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE, "true")
    if auto != "false" and _differs(have, want):
        merged = {**have, **{k: v for k, v in want.items() if k != "metadata"}}
        merged["metadata"] = {**have["metadata"],
                              "labels": {**(have["metadata"].get("labels") or {}), **want["metadata"]["labels"]}}
        await api.update(resource, None, name, merged)


async def bootstrap_rbac(api, registry) -> None:
    """Write the default roles and bindings (``api`` is the ResourceAPI, writing as the server)."""
    roles_r = registry.get(GROUP, "v1", "clusterroles")
    bindings_r = registry.get(GROUP, "v1", "clusterrolebindings")
    stored_roles = {}
    kvs, _ = await api.list_kvs(roles_r, None)
    for kv in kvs:
        obj = orjson.loads(kv.value)
        stored_roles[obj["metadata"]["name"]] = obj
    for resource, objs in ((roles_r, cluster_roles()), (bindings_r, cluster_role_bindings())):
        for want in objs:
            name = want["metadata"]["name"]
            if want.get("aggregationRule"):
                want["rules"] = aggregated_rules(want, stored_roles.values())
            try:
                await _write_default(api, resource, name, want)
            except APIError as e:
                if e.code != 409:
                    raise
                # another server starting on the same store wrote it first: the same defaults
            if resource is roles_r:
                stored_roles[name] = want  # what later aggregated roles sum
