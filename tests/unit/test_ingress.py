"""Ingress, IngressClass and NetworkPolicy (sendo.kinds.networking) and the ingress controller's
routing table (sendo.network.ingress): validation causes, table rows, host and path precedence.
The controller itself, against a real API server and fake backends, is tested in
tests/integration/test_ingress.py."""
from __future__ import annotations

import datetime as dt

import pytest

from sendo.kinds import builtin_registry
from sendo.network.ingress import Backend, RouteTable, normalize_host
from tests.ingress_helpers import NS, svc_backend, path, ingress

REG = builtin_registry()
RES = {r.kind: r for r in REG.all()}


def ago(**kw) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def causes(kind_: str, obj: dict) -> list[str]:
    s = RES[kind_].strategy
    obj.setdefault("metadata", {"name": "x", "namespace": NS})
    s.default(obj)
    return [c.text() for c in s.validate(obj)]


# ============================================================================ validation

def test_a_full_ingress_is_valid_and_starts_with_an_empty_status():
    obj = ingress(rules=[{"host": "web.example.test", "http": {"paths": [
        path("/", "Prefix"), path("/api", "Exact", svc_backend("api", "http")),
        path(None, "ImplementationSpecific")]}},
        {"host": "*.example.test", "http": {"paths": [path("/x")]}}, {"http": {"paths": [path("/")]}}],
        defaultBackend=svc_backend("fallback", 8080), ingressClassName="sendo",
        tls=[{"hosts": ["web.example.test", "*.example.test"], "secretName": "web-tls"}, {}])
    assert causes("Ingress", obj) == []
    RES["Ingress"].strategy.prepare_create(obj)
    assert obj["status"] == {"loadBalancer": {}}
    backend_only = ingress(defaultBackend={"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket",
                                                         "name": "static"}})
    assert causes("Ingress", backend_only) == []


@pytest.mark.parametrize("spec,expected", [
    ({}, "spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"),
    ({"rules": [{"host": "10.1.2.3", "http": {"paths": [path("/")]}}]},
     'spec.rules[0].host: Invalid value: "10.1.2.3": must be a DNS name, not an IP address'),
    ({"rules": [{"host": "Web.Example", "http": {"paths": [path("/")]}}]},
     'spec.rules[0].host: Invalid value: "Web.Example": a lowercase RFC 1123 subdomain'),
    ({"rules": [{"host": "a.*.example.com", "http": {"paths": [path("/")]}}]},
     'spec.rules[0].host: Invalid value: "a.*.example.com": a wildcard DNS-1123 subdomain must start with'),
    ({"rules": [{"host": "*", "http": {"paths": [path("/")]}}]},
     'spec.rules[0].host: Invalid value: "*": a wildcard DNS-1123 subdomain'),
    ({"rules": [{"http": {"paths": [path("foo")]}}]},
     'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path'),
    ({"rules": [{"http": {"paths": [path("foo", "Exact")]}}]},
     'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path'),
    ({"rules": [{"http": {"paths": [path("rel", "ImplementationSpecific")]}}]},
     'spec.rules[0].http.paths[0].path: Invalid value: "rel": must be an absolute path'),
    ({"rules": [{"http": {"paths": [path("/a//b")]}}]},
     'spec.rules[0].http.paths[0].path: Invalid value: "/a//b": must not contain \'//\''),
    ({"rules": [{"http": {"paths": [path("/a/..")]}}]},
     'spec.rules[0].http.paths[0].path: Invalid value: "/a/..": cannot end with \'/..\''),
    ({"rules": [{"http": {"paths": [path("/a%2Fb", "Exact")]}}]},
     "must not contain '%2F'"),
    ({"rules": [{"http": {"paths": [{"path": "/", "backend": svc_backend()}]}}]},
     "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"),
    ({"rules": [{"http": {"paths": [path("/", "Regex")]}}]},
     'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", '
     '"ImplementationSpecific", "Prefix"'),
    ({"rules": [{"http": {"paths": []}}]}, "spec.rules[0].http.paths: Required value"),
    ({"rules": [{"http": {"paths": [path("/", backend={})]}}]},
     'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required'),
    ({"defaultBackend": {**svc_backend(), "resource": {"kind": "Bucket", "name": "b"}}},
     'spec.defaultBackend: Invalid value: "": cannot set both resource and service backends'),
    ({"defaultBackend": {"service": {"port": {"number": 80}}}}, "spec.defaultBackend.service.name: Required value"),
    ({"defaultBackend": {"service": {"name": "Web_1", "port": {"number": 80}}}},
     'spec.defaultBackend.service.name: Invalid value: "Web_1": a lowercase RFC 1123 label'),
    ({"defaultBackend": {"service": {"name": "web"}}},
     "spec.defaultBackend: Required value: port name or number is required"),
    ({"defaultBackend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}},
     'spec.defaultBackend: Invalid value: "": cannot set both port name & port number'),
    ({"defaultBackend": svc_backend("web", 70000)},
     "spec.defaultBackend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ({"defaultBackend": svc_backend("web", "HTTP")},
     'spec.defaultBackend.service.port.name: Invalid value: "HTTP": must contain only alpha-numeric characters'),
    ({"defaultBackend": {"resource": {"name": "b"}}}, "spec.defaultBackend.resource.kind: Required value"),
    ({"defaultBackend": svc_backend(), "tls": [{"hosts": ["10.0.0.1.."], "secretName": "Bad_Name"}]},
     'spec.tls[0].secretName: Invalid value: "Bad_Name"'),
    ({"defaultBackend": svc_backend(), "tls": [{"hosts": ["*.*.x"]}]},
     'spec.tls[0].hosts[0]: Invalid value: "*.*.x": a wildcard DNS-1123 subdomain'),
    ({"defaultBackend": svc_backend(), "ingressClassName": "Sendo"},
     'spec.ingressClassName: Invalid value: "Sendo"'),
    ({"defaultBackend": svc_backend(), "rules": "all"}, 'spec.rules: Invalid value: "all": must be an array'),
])
def test_ingress_rules(spec, expected):
    found = causes("Ingress", ingress(**spec))
    assert any(expected in c for c in found), found


def test_class_annotation_must_agree_with_ingress_class_name_and_status_ips_are_checked():
    obj = ingress(defaultBackend=svc_backend(), ingressClassName="sendo")
    obj["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    assert causes("Ingress", obj) == ['annotations.kubernetes.io/ingress.class: Invalid value: "nginx": must match '
                                      '`ingressClassName` when both are specified']
    obj = ingress(defaultBackend=svc_backend())
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}, {"hostname": "127.0.0.1"}]}}
    found = causes("Ingress", obj)
    assert 'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip": must be a valid IP address, ' \
           '(e.g. 10.9.8.7 or 2001:db8::ffff)' in found
    assert 'status.loadBalancer.ingress[1].hostname: Invalid value: "127.0.0.1": must be a DNS name, not an ' \
           'IP address' in found


def test_ingress_printer():
    p = RES["Ingress"].printer
    assert [c.name for c in p.columns] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    obj = ingress("web", rules=[{"host": h} for h in ("a.test", "b.test", "c.test", "d.test", "e.test")],
                  tls=[{"secretName": "s"}])
    obj["metadata"]["creationTimestamp"] = ago(minutes=3)
    assert p.row(obj) == ["web", "<none>", "a.test,b.test,c.test + 2 more...", "", "80, 443", "3m"]
    obj = ingress("web", rules=[{"http": {"paths": [path("/")]}}], ingressClassName="sendo")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}, {"ip": "127.0.0.1"}]}}
    assert p.row(obj)[1:5] == ["sendo", "*", "127.0.0.1", "80"]
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.10"}, {"hostname": "lb.example.test"}]}}
    assert p.row(obj)[3] == "127.0.0.10,lb..."  # clipped to 16 characters, as kubectl does


def test_ingress_class_rules_defaults_and_printer():
    s = RES["IngressClass"].strategy
    assert not RES["IngressClass"].namespaced
    ok = {"metadata": {"name": "sendo"}, "spec": {"controller": "sendo.dev/ingress"}}
    assert causes("IngressClass", ok) == []
    assert causes("IngressClass", {"metadata": {"name": "x"}, "spec": {}}) == ["spec.controller: Required value"]
    assert causes("IngressClass", {"metadata": {"name": "x"}, "spec": {"controller": "nginx"}}) == [
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")']
    assert "Too long" in causes("IngressClass", {"metadata": {"name": "x"},
                                                 "spec": {"controller": "a.io/" + "x" * 250}})[0]
    with_params = {"metadata": {"name": "x"}, "spec": {"controller": "a.io/c", "parameters": {
        "apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}}
    assert causes("IngressClass", with_params) == []
    assert with_params["spec"]["parameters"]["scope"] == "Cluster"  # the default scope
    with_params["spec"]["parameters"].update(scope="Namespace")
    assert causes("IngressClass", with_params) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    with_params["spec"]["parameters"].update(scope="Cluster", namespace="default")
    assert causes("IngressClass", with_params) == [
        "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    changed = {"metadata": {"name": "sendo"}, "spec": {"controller": "other.io/ingress"}}
    assert [c.text() for c in s.validate_update(changed, ok)] == [
        'spec.controller: Invalid value: "other.io/ingress": field is immutable']
    p = RES["IngressClass"].printer
    assert [c.name for c in p.columns] == ["Name", "Controller", "Parameters", "Age"]
    assert p.row(with_params)[:3] == ["x", "a.io/c", "IngressParameters.k8s.example.com/p"]
    assert p.row(ok)[:3] == ["sendo", "sendo.dev/ingress", "<none>"]


def test_network_policy_defaults_rules_and_printer():
    np = {"metadata": {"name": "db", "namespace": NS},
          "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                         {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                                "ports": [{"port": 5432}, {"port": "metrics"}, {"port": 30000, "endPort": 30100}]}],
                   "egress": [{"to": [{"namespaceSelector": {}}]}]}}
    assert causes("NetworkPolicy", np) == []
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"
    bad = {"metadata": {"name": "x", "namespace": NS}, "spec": {
        "podSelector": {"matchLabels": {"a": "b c"}}, "policyTypes": ["Ingress", "Sideways"],
        "ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]},
                                "podSelector": {}}],
                     "ports": [{"protocol": "ICMP"}, {"port": 80, "endPort": 79}, {"port": "web", "endPort": 90}]}]}}
    found = causes("NetworkPolicy", bad)
    for expected in ['spec.podSelector.matchLabels: Invalid value: "b c"',
                     'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Egress", "Ingress"',
                     "spec.ingress[0].from[0]: Required value: must specify a peer",
                     'spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict '
                     'subset of `cidr`',
                     "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
                     'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP"',
                     "spec.ingress[0].ports[1].endPort: Invalid value: 79: must be greater than or equal to `port`",
                     "spec.ingress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is "
                     "non-numeric"]:
        assert any(expected in c for c in found), (expected, found)
    p = RES["NetworkPolicy"].printer
    assert [c.name for c in p.columns] == ["Name", "Pod-Selector", "Age"]
    assert p.row(np)[:2] == ["db", "app=db"]
    assert p.row({"metadata": {"name": "all"}, "spec": {"podSelector": {}}})[:2] == ["all", "<none>"]


def test_networking_kinds_are_served_with_their_names():
    ing, cls, np = (REG.get("networking.k8s.io", "v1", p) for p in ("ingresses", "ingressclasses", "networkpolicies"))
    assert ing.short_names == ["ing"] and ing.namespaced and "status" in ing.subresources
    assert not cls.namespaced and np.short_names == ["netpol"]


# ============================================================================ routing

def ing(name: str, rules: list, created: str = "2024-01-01T00:00:00Z", default: str | None = None,
        ns: str = NS) -> dict:
    spec = {"rules": rules}
    if default:
        spec["defaultBackend"] = svc_backend(default)
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def rule(host: str | None, *paths: tuple) -> dict:
    r = {"http": {"paths": [path(p, t, svc_backend(svc)) for p, t, svc in paths]}}
    if host:
        r["host"] = host
    return r


def to(table: RouteTable, host: str | None, p: str) -> str | None:
    b = table.route(host, p)
    return b.service if b else None


def test_path_precedence_exact_then_longest_prefix_by_elements():
    t = RouteTable([ing("a", [rule("web.test", ("/", "Prefix", "root"), ("/foo", "Prefix", "foo"),
                                   ("/foo", "Exact", "foo-exact"), ("/foo/bar/", "Prefix", "foobar"),
                                   ("/api", "ImplementationSpecific", "api"), ("/x/y", "Exact", "xy"))])])
    assert to(t, "web.test", "/foo") == "foo-exact"
    assert to(t, "web.test", "/foo/") == "foo"  # Exact is exact: a trailing slash differs
    assert to(t, "web.test", "/foo/baz") == "foo"
    assert to(t, "web.test", "/foobar") == "root"  # element-wise: /foo does not match /foobar
    assert to(t, "web.test", "/foo/bar") == "foobar"  # a prefix's trailing slash is ignored
    assert to(t, "web.test", "/foo/bar/baz") == "foobar"
    assert to(t, "web.test", "/foo/barbaz") == "foo"
    assert to(t, "web.test", "/api/v1") == "api"  # ImplementationSpecific works as Prefix
    assert to(t, "web.test", "/x/y") == "xy" and to(t, "web.test", "/x/y/z") == "root"
    assert to(t, "web.test", "/") == "root"


def test_host_precedence_exact_then_wildcard_then_any():
    t = RouteTable([ing("a", [rule("*.example.test", ("/", "Prefix", "wild")),
                              rule("www.example.test", ("/only", "Prefix", "www")),
                              rule(None, ("/", "Prefix", "catchall"), ("/only", "Exact", "any-only"))])])
    assert to(t, "www.example.test", "/only") == "www"
    assert to(t, "www.example.test", "/other") == "wild"  # no path of the exact host matched: wildcard next
    assert to(t, "shop.example.test", "/") == "wild"
    assert to(t, "a.b.example.test", "/") == "catchall"  # a wildcard stands for exactly one label
    assert to(t, "example.test", "/") == "catchall"
    assert to(t, "WWW.Example.Test:8080", "/only") == "www"  # case and port do not matter
    assert to(t, "www.example.test.", "/only") == "www"
    assert to(t, None, "/only") == "any-only"
    assert normalize_host("[::1]:443") == "::1" and normalize_host("h:80") == "h"


def test_default_backends_and_404():
    t = RouteTable([ing("paths", [rule("web.test", ("/app", "Prefix", "app"))])])
    assert to(t, "web.test", "/app/x") == "app"
    assert t.route("web.test", "/other") is None and t.route("unknown.test", "/app") is None
    t = RouteTable([ing("old", [rule("old.test", ("/", "Prefix", "old"))], default="old-default",
                        created="2024-01-01T00:00:00Z"),
                    ing("team", [rule("team.test", ("/app", "Prefix", "team-app"))], default="team-default",
                        created="2024-02-01T00:00:00Z"),
                    ing("only-default", [], default="third", created="2024-03-01T00:00:00Z")])
    assert to(t, "team.test", "/app") == "team-app"
    assert to(t, "team.test", "/else") == "team-default"  # the default of the Ingress whose host matched
    assert to(t, "nobody.test", "/") == "old-default"  # else the oldest Ingress's default
    assert t.route("team.test", "/else") == Backend(NS, f"{NS}/team", "team-default", 80)


def test_conflicts_go_to_the_oldest_ingress_and_backends_keep_their_namespace():
    newer = ing("newer", [rule("web.test", ("/", "Prefix", "newer"), ("/x", "Exact", "newer-x"))],
                created="2024-05-01T00:00:00Z", ns="team-b")
    older = ing("older", [rule("web.test", ("/", "Prefix", "older"), ("/x", "Exact", "older-x"))],
                created="2024-01-01T00:00:00Z", ns="team-a")
    t = RouteTable([older, newer])  # the controller sorts by creation time
    assert to(t, "web.test", "/") == "older" and to(t, "web.test", "/x") == "older-x"
    assert t.route("web.test", "/").namespace == "team-a"
    named = RouteTable([ing("n", [{"host": "n.test", "http": {"paths": [
        path("/", "Prefix", {"resource": {"kind": "Bucket", "name": "b"}})]}}])])
    b = named.route("n.test", "/")
    assert b.service is None and b.resource == "Bucket/b"
