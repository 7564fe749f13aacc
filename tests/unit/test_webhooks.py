"""Admission webhooks' rule matching and review handling (api/webhooks.py), and the
validation of the configurations (kinds/admissionregistration.py)."""
from __future__ import annotations

import base64

import orjson
import pytest

from sendo.api import errors
from sendo.api.options import RequestOptions, User
from sendo.api.webhooks import (Attributes, CallFailed, apply_patch, denied, hook_matches, read_response,
                                review_request, rule_matches)
from sendo.kinds.registry import builtin_registry

REG = builtin_registry()
PODS = REG.get("", "v1", "pods")
DEPLOYMENTS = REG.get("apps", "v1", "deployments")
NODES = REG.get("", "v1", "nodes")
VWC = REG.get("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")


def attrs(r=PODS, op="CREATE", sub="", ns="default", labels=None, old_labels=None):
    obj = {"metadata": {"name": "x", "labels": labels or {}}}
    old = {"metadata": {"name": "x", "labels": old_labels or {}}} if old_labels is not None else None
    return Attributes(op, r, sub, ns if r.namespaced else "", "x", obj, old, RequestOptions(User("ann", ["dev"])))


def rule(resources, ops=("CREATE",), groups=("",), versions=("v1",), scope="*"):
    return {"operations": list(ops), "apiGroups": list(groups), "apiVersions": list(versions),
            "resources": list(resources), "scope": scope}


@pytest.mark.parametrize("resources,sub,want", [
    (["pods"], "", True), (["pods"], "status", False), (["pods/status"], "status", True),
    (["pods/status"], "", False), (["pods/*"], "status", True), (["pods/*"], "", True),
    (["*"], "", True), (["*"], "status", False), (["*/status"], "status", True), (["*/*"], "exec", True),
    (["deployments"], "", False),
])
def test_resources_and_subresources(resources, sub, want):
    assert rule_matches(rule(resources, ops=("UPDATE",)), attrs(op="UPDATE", sub=sub)) is want


def test_operations_groups_versions_and_scope():
    a = attrs()
    assert rule_matches(rule(["pods"], ops=("*",)), a)
    assert not rule_matches(rule(["pods"], ops=("UPDATE", "DELETE")), a)
    assert not rule_matches(rule(["pods"], groups=("apps",)), a)
    assert rule_matches(rule(["deployments"], groups=("*",), versions=("*",)), attrs(DEPLOYMENTS))
    assert not rule_matches(rule(["deployments"], groups=("apps",), versions=("v1beta1",)), attrs(DEPLOYMENTS))
    assert rule_matches(rule(["pods"], scope="Namespaced"), a)
    assert not rule_matches(rule(["pods"], scope="Cluster"), a)
    assert rule_matches(rule(["nodes"], scope="Cluster"), attrs(NODES))
    assert not rule_matches(rule(["nodes"], scope="Namespaced"), attrs(NODES))


def test_selectors():
    h = {"rules": [rule(["pods"])], "objectSelector": {"matchLabels": {"app": "web"}},
         "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}}
    assert hook_matches(h, attrs(labels={"app": "web"}), {"env": "prod"})
    assert not hook_matches(h, attrs(labels={"app": "db"}), {"env": "prod"})
    assert not hook_matches(h, attrs(labels={"app": "web"}), {"env": "dev"})
    # the old object's labels count as well (an update that removes the label still matches)
    assert hook_matches(h, attrs(op="CREATE", labels={}, old_labels={"app": "web"}), {"env": "prod"})
    # cluster-scoped objects ignore the namespace selector
    assert hook_matches({**h, "rules": [rule(["nodes"])]}, attrs(NODES, labels={"app": "web"}), None)
    assert hook_matches({"rules": [rule(["pods"])], "objectSelector": {}, "namespaceSelector": {}}, attrs(), {})


def test_review_request_carries_the_request():
    a = attrs(op="UPDATE", sub="status", old_labels={"a": "b"})
    a.opts.dry_run = True
    review = review_request({}, a)
    req = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"} == req["requestKind"]
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"} == req["requestResource"]
    assert (req["subResource"], req["namespace"], req["name"], req["operation"]) == ("status", "default", "x",
                                                                                     "UPDATE")
    assert req["userInfo"] == {"username": "ann", "uid": "", "groups": ["dev"]}
    assert req["dryRun"] is True and req["options"]["kind"] == "UpdateOptions"
    assert req["oldObject"]["metadata"]["labels"] == {"a": "b"} and len(req["uid"]) == 36


def _resp(**response):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u", **response}}


def test_read_response():
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}])).decode()
    v = read_response(_resp(allowed=True, patchType="JSONPatch", patch=patch, warnings=["careful"],
                            auditAnnotations={"k": "v"}), "u", True)
    assert v.allowed and v.patch[0]["op"] == "add" and v.warnings == ["careful"] and v.annotations == {"k": "v"}
    for body, why in [({"kind": "AdmissionReview"}, "expected webhook response"),
                      (_resp(allowed=True) | {"response": {"uid": "other", "allowed": True}}, "response.uid"),
                      (_resp(), "allowed must be a boolean"),
                      (_resp(allowed=True, patch=patch), "unsupported patch type"),
                      (_resp(allowed=True, patchType="JSONPatch", patch="%%%"), "base64"),
                      ("nope", "not a JSON object")]:
        with pytest.raises(CallFailed, match=why):
            read_response(body, "u", True)
    with pytest.raises(CallFailed, match="validating webhook may not return a patch"):
        read_response(_resp(allowed=True, patchType="JSONPatch", patch=patch), "u", False)


def test_denied_status():
    e = denied("w.example.com", {"code": 403, "message": "no", "reason": "Forbidden"})
    assert (e.code, e.message, e.reason) == (403, 'admission webhook "w.example.com" denied the request: no',
                                             "Forbidden")
    e = denied("w.example.com", {"code": 200})
    assert (e.code, e.message) == (400, 'admission webhook "w.example.com" denied the request without explanation')
    assert denied("w", {"reason": "because"}).message.endswith(": because")
    assert isinstance(e, errors.APIError)


def test_apply_patch_keeps_identity_and_fails_cleanly():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "default"}, "spec": {}}
    meta = obj["metadata"]
    apply_patch(obj, [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
                      {"op": "replace", "path": "/metadata/name", "value": "other"},
                      {"op": "add", "path": "/spec/x", "value": 1}])
    assert obj["metadata"] is meta and meta == {"name": "x", "namespace": "default", "labels": {"a": "b"}}
    assert obj["spec"] == {"x": 1}
    with pytest.raises(CallFailed, match="does not apply"):
        apply_patch(obj, [{"op": "remove", "path": "/nothing/here"}])


def _causes(obj):
    VWC.strategy.default(obj)
    return {c.field: c.message for c in VWC.strategy.validate(obj)}


def test_configuration_validation_names_fields():
    good = {"name": "a.b.c", "clientConfig": {"url": "https://127.0.0.1:9443/x"}, "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]}
    assert _causes({"metadata": {"name": "c"}, "webhooks": [good]}) == {}
    bad = {**good, "clientConfig": {"url": "https://h/x?q=1", "caBundle": "@@"},
           "rules": [{"operations": ["CREATE", "*"], "apiGroups": [], "apiVersions": [""],
                      "resources": ["*", "pods"], "scope": "Everywhere"}],
           "timeoutSeconds": 0, "namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}
    got = _causes({"metadata": {"name": "c"}, "webhooks": [bad]})
    for f in ("webhooks[0].clientConfig.url", "webhooks[0].clientConfig.caBundle",
              "webhooks[0].rules[0].operations", "webhooks[0].rules[0].apiGroups",
              "webhooks[0].rules[0].apiVersions[0]", "webhooks[0].rules[0].resources",
              "webhooks[0].rules[0].scope", "webhooks[0].timeoutSeconds",
              "webhooks[0].namespaceSelector.matchExpressions[0].values"):
        assert f in got, (f, got)
    svc = {**good, "clientConfig": {"service": {"namespace": "default", "name": "hooks", "port": 0,
                                                "path": "no-slash"}}}
    got = _causes({"metadata": {"name": "c"}, "webhooks": [svc]})
    assert set(got) == {"webhooks[0].clientConfig.service.port", "webhooks[0].clientConfig.service.path"}
    neither = {**good, "clientConfig": {}}
    assert "exactly one of url or service" in _causes({"metadata": {"name": "c"}, "webhooks": [neither]})[
        "webhooks[0].clientConfig"]


async def test_dry_run_refused_by_a_webhook_with_side_effects():
    from sendo.api.webhooks import Webhooks
    w = Webhooks(None, REG)  # the store is not read: no namespace selector
    a = attrs()
    a.opts.dry_run = True
    hooks = [{"name": "a.b.c", "rules": [rule(["pods"])], "sideEffects": "Some"}]
    with pytest.raises(errors.APIError, match='"a.b.c" has side effects and does not support dry run'):
        await w._matching(hooks, a)
    hooks[0]["sideEffects"] = "NoneOnDryRun"
    assert await w._matching(hooks, a) == hooks
