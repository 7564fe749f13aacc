"""RBAC logic without a server: rule matching and covering, validation of the four kinds,
what a pod makes its node read, the aggregation controller reconcile by reconcile."""
from __future__ import annotations

import pytest

from sendo.api.nodeauth import pod_refs
from sendo.api.rbac import Rule, uncovered
from sendo.client import kind
from sendo.controllers.clusterroleaggregation import ClusterRoleAggregationController
from sendo.kinds.rbac import RESOURCES, aggregated_rules

RES = {r.kind: r for r in RESOURCES}
ROLES = kind("clusterroles", "rbac.authorization.k8s.io")


def rule(verbs, groups=("",), resources=(), names=(), urls=()) -> Rule:
    return Rule(frozenset(verbs), frozenset(groups) if not urls else frozenset(), frozenset(resources),
                frozenset(names), frozenset(urls))


def test_a_rule_allows_what_kubernetes_rule_allows_does():
    r = rule(["get", "list"], [""], ["pods", "pods/log"])
    assert r.allows("get", "", "pods", None, "web")
    assert r.allows("get", "", "pods", "log", "web")
    assert not r.allows("get", "", "pods", "exec", "web")  # a subresource must be named
    assert not r.allows("delete", "", "pods", None, "web")
    assert not r.allows("get", "apps", "pods", None, "web")
    star = rule(["*"], ["*"], ["*"])
    assert star.allows("deletecollection", "batch", "jobs", "status", None)
    assert rule(["get"], [""], ["*/status"]).allows("get", "", "nodes", "status", "n1")
    assert rule(["get"], [""], ["pods/*"]).allows("get", "", "pods", "log", "p")
    named = rule(["get", "update"], [""], ["configmaps"], ["cfg"])
    assert named.allows("get", "", "configmaps", None, "cfg")
    assert not named.allows("get", "", "configmaps", None, "other")
    assert not named.allows("list", "", "configmaps", None, None)  # a list names nothing
    urls = Rule(frozenset(["get"]), urls=frozenset(["/healthz", "/apis/*"]))
    assert urls.allows_url("get", "/healthz") and urls.allows_url("get", "/apis/apps/v1")
    assert not urls.allows_url("get", "/api") and not urls.allows_url("post", "/healthz")


def test_covering_is_per_single_permission():
    owner = [rule(["get", "list", "watch"], [""], ["pods", "configmaps"]), rule(["create"], ["apps"], ["*"])]
    assert uncovered(owner, [rule(["get"], [""], ["pods"])]) == []
    assert uncovered(owner, [rule(["create"], ["apps"], ["deployments", "deployments/scale"])]) == []
    missing = uncovered(owner, [rule(["get", "delete"], [""], ["pods"])])
    assert [(sorted(m.verbs), sorted(m.resources)) for m in missing] == [(["delete"], ["pods"])]
    assert uncovered(owner, [rule(["*"], [""], ["pods"])])  # "*" is only covered by "*"
    assert uncovered([rule(["get"], [""], ["secrets"], ["a"])], [rule(["get"], [""], ["secrets"])])
    assert uncovered([rule(["get"], [""], ["secrets"])], [rule(["get"], [""], ["secrets"], ["a"])]) == []
    huge = rule([f"v{i}" for i in range(100)], [f"g{i}" for i in range(100)], [f"r{i}" for i in range(100)])
    assert uncovered(owner, [huge]) == [huge]  # too big to break down: refused whole, at once
    assert uncovered([rule(["*"], ["*"], ["*"])], [huge]) == []  # unless one rule holds all of it
    full = [rule(["*"], ["*"], ["*"]), Rule(frozenset("*"), urls=frozenset("*"))]
    assert uncovered(full, [Rule(frozenset(["get"]), urls=frozenset(["/metrics"])),
                            rule(["escalate"], ["rbac.authorization.k8s.io"], ["roles"])]) == []


@pytest.mark.parametrize("kind_, obj, field", [
    ("Role", {"rules": [{"apiGroups": [""], "resources": ["pods"]}]}, "rules[0].verbs"),
    ("Role", {"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}, "rules[0].nonResourceURLs"),
    ("ClusterRole", {"rules": [{"verbs": ["get"], "resources": ["pods"]}]}, "rules[0].apiGroups"),
    ("ClusterRole", {"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
                                "nonResourceURLs": ["/x"]}]}, "rules[0].nonResourceURLs"),
    ("ClusterRole", {"rules": "all"}, "rules"),
    ("ClusterRole", {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b c"}}]}},
     "aggregationRule.clusterRoleSelectors[0].matchLabels"),
    ("RoleBinding", {"subjects": [{"kind": "User", "name": "a"}]}, "roleRef"),
    ("RoleBinding", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Pod", "name": "x"}},
     "roleRef.kind"),
    ("ClusterRoleBinding", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"}},
     "roleRef.kind"),
    ("RoleBinding", {"roleRef": {"apiGroup": "x", "kind": "Role", "name": "r"}}, "roleRef.apiGroup"),
    ("RoleBinding", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                     "subjects": [{"kind": "Robot", "name": "a"}]}, "subjects[0].kind"),
    ("ClusterRoleBinding", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                        "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "a"}]},
     "subjects[0].namespace"),
])
def test_invalid_rbac_objects_name_the_field(kind_, obj, field):
    s = RES[kind_].strategy
    obj = {"metadata": {"name": "x"}, **obj}
    s.default(obj)
    assert field in [c.field for c in s.validate(obj)]


def test_bindings_default_subject_groups_and_keep_their_role_ref():
    s = RES["RoleBinding"].strategy
    obj = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                  "name": "r"},
           "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]}
    s.default(obj)
    assert s.validate(obj) == []
    assert obj["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and "apiGroup" not in obj["subjects"][1]
    changed = {**obj, "roleRef": {**obj["roleRef"], "name": "other"}}
    assert [c.field for c in s.validate_update(changed, obj)] == ["roleRef"]


def test_a_pod_makes_its_node_read_what_it_uses():
    pod = {"metadata": {"namespace": "ns"}, "spec": {
        "serviceAccountName": "robot", "imagePullSecrets": [{"name": "pull"}],
        "volumes": [{"secret": {"secretName": "vol"}}, {"configMap": {"name": "cm"}},
                    {"persistentVolumeClaim": {"claimName": "data"}},
                    {"projected": {"sources": [{"secret": {"name": "p1"}}, {"configMap": {"name": "p2"}}]}}],
        "initContainers": [{"envFrom": [{"secretRef": {"name": "init-env"}}]}],
        "containers": [{"env": [{"valueFrom": {"secretKeyRef": {"name": "key"}}},
                                {"valueFrom": {"configMapKeyRef": {"name": "cmkey"}}}],
                        "envFrom": [{"configMapRef": {"name": "cm-env"}}]}, "not a container"]}}
    assert pod_refs(pod) == {
        ("serviceaccounts", "ns", "robot"), ("secrets", "ns", "pull"), ("secrets", "ns", "vol"),
        ("configmaps", "ns", "cm"), ("persistentvolumeclaims", "ns", "data"), ("secrets", "ns", "p1"),
        ("configmaps", "ns", "p2"), ("secrets", "ns", "init-env"), ("secrets", "ns", "key"),
        ("configmaps", "ns", "cmkey"), ("configmaps", "ns", "cm-env")}
    assert pod_refs({"metadata": {"namespace": "ns"}, "spec": "junk"}) == {("serviceaccounts", "ns", "default")}


def _role(name, rules=(), labels=None, selects=None):
    obj = {"metadata": {"name": name, "labels": labels or {}}, "rules": list(rules)}
    if selects:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": selects}]}
    return obj


READ_PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
READ_JOBS = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}


def test_aggregated_rules_sum_the_selected_roles_once_in_name_order():
    agg = _role("agg", selects={"to-agg": "true"})
    roles = [agg, _role("b", [READ_JOBS, READ_PODS], {"to-agg": "true"}), _role("a", [READ_PODS], {"to-agg": "true"}),
             _role("c", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])]
    assert aggregated_rules(agg, roles) == [READ_PODS, READ_JOBS]


async def test_the_aggregation_controller_fills_and_then_leaves_alone(fake_api):
    c = fake_api.build(ClusterRoleAggregationController)
    fake_api.add(ROLES, _role("agg", [], selects={"to-agg": "true"}), _role("a", [READ_PODS], {"to-agg": "true"}),
                 _role("plain", [READ_JOBS]))
    writes = await fake_api.run(c, "agg")
    assert [(w.method, w.path) for w in writes] == [("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/agg")]
    assert writes[0].body == {"rules": [READ_PODS]}
    assert await fake_api.run(c, "agg") == []  # synced: nothing more to write
    assert await fake_api.run(c, "plain") == []  # not an aggregating role
