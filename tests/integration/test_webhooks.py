"""Admission webhooks against a real API server and a real HTTPS webhook server
(tests/webhook_server.py): configurations validated, denials, patches, failure policies,
timeouts, selectors, a Service reference, dry-run and deletes."""
from __future__ import annotations

import pytest

from tests.waiting import wait_until
from tests.webhook_server import DENY_MESSAGE, WebhookServer, configuration, hook

from test_request_robustness import CMS, call, cm

VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@pytest.fixture
def webhook(tmp_path):
    w = WebhookServer(tmp_path / "webhook-tls", hosts=("hooks.default.svc",), slow_seconds=3)
    yield w
    w.stop()


def labelled(name, **labels):
    obj = cm(name)
    obj["metadata"]["labels"] = labels
    return obj


async def configure(server, url, kind, name, hooks):
    status, body, _ = await call(server, "POST", url, configuration(kind, name, hooks))
    assert status == 201, body
    return body


async def until_refused(server, name, **labels):
    """The API server's cache follows the store: wait until a new configuration applies."""
    async def refused():
        status, body, _ = await call(server, "POST", f"{CMS}?dryRun=All", labelled(name, **labels))
        return (status, body) if status != 201 else None
    return await wait_until(refused, 30, what="the webhook configuration in force")


async def test_configurations_are_validated_and_served(server, webhook):
    cc = {"url": webhook.url("/deny"), "caBundle": webhook.ca_bundle}
    bad = hook("short", {"url": "http://x", "service": {"namespace": "default", "name": "s"}}, [""],
               operations=("MAKE",), sideEffects="Some", admissionReviewVersions=["v1beta1"],
               failurePolicy="Maybe", timeoutSeconds=31, matchPolicy="Loose")
    status, body, _ = await call(server, "POST", VWC, configuration("ValidatingWebhookConfiguration", "bad", [bad]))
    assert status == 422, body
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"webhooks[0].name", "webhooks[0].rules[0].operations[0]", "webhooks[0].rules[0].resources[0]",
            "webhooks[0].clientConfig", "webhooks[0].clientConfig.url", "webhooks[0].sideEffects",
            "webhooks[0].admissionReviewVersions", "webhooks[0].failurePolicy", "webhooks[0].timeoutSeconds",
            "webhooks[0].matchPolicy"} <= fields, fields
    dup = [hook("a.test.io", cc, ["configmaps"]), hook("a.test.io", cc, ["configmaps"])]
    status, body, _ = await call(server, "POST", VWC, configuration("ValidatingWebhookConfiguration", "dup", dup))
    assert status == 422 and body["details"]["causes"][0]["field"] == "webhooks[1].name"
    made = await configure(server, VWC, "ValidatingWebhookConfiguration", "ok",
                           [hook("ok.test.io", cc, ["configmaps"], objectSelector={"matchLabels": {"x": "y"}})])
    h = made["webhooks"][0]  # defaults as Kubernetes sets them
    assert (h["failurePolicy"], h["matchPolicy"], h["timeoutSeconds"], h["namespaceSelector"],
            h["rules"][0]["scope"]) == ("Fail", "Equivalent", 10, {}, "*")
    status, body, _ = await call(server, "GET", "/apis/admissionregistration.k8s.io/v1")
    assert {r["name"] for r in body["resources"]} >= {"validatingwebhookconfigurations",
                                                      "mutatingwebhookconfigurations"}


async def test_deny_mutate_warn_and_delete(server, webhook):
    cc = lambda path: {"url": webhook.url(path), "caBundle": webhook.ca_bundle}  # noqa: E731
    await configure(server, MWC, "MutatingWebhookConfiguration", "label",
                    [hook("label.test.io", cc("/label"), ["configmaps"])])
    await configure(server, VWC, "ValidatingWebhookConfiguration", "deny",
                    [hook("deny.test.io", cc("/deny"), ["configmaps"], operations=("*",))])
    status, body = await until_refused(server, "refused", deny="yes")
    assert status == 403 and body["message"] == f'admission webhook "deny.test.io" denied the request: {DENY_MESSAGE}'
    status, body, headers = await call(server, "POST", CMS, labelled("kept", team="a"))
    assert status == 201 and body["metadata"]["labels"] == {"team": "a", "webhooked": "yes"}
    assert any("checked CREATE by the test webhook" in w for w in headers.getall("Warning"))
    # the validating webhook saw the mutated object, with who asked and how
    review = [r for p, r in webhook.reviews if p == "/deny" and r["name"] == "kept"][-1]
    assert review["object"]["metadata"]["labels"]["webhooked"] == "yes"
    assert review["userInfo"]["username"] == "admin" and review["namespace"] == "default"
    assert review["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert review["options"]["kind"] == "CreateOptions" and review["dryRun"] is False
    # update: a patch that sets deny=yes is refused; the mutating webhook patches updates too
    status, body, _ = await call(server, "PATCH", f"{CMS}/kept", {"metadata": {"labels": {"deny": "yes"}}},
                                 "application/merge-patch+json")
    assert status == 403 and "deny.test.io" in body["message"]
    status, body, _ = await call(server, "PATCH", f"{CMS}/kept", {"data": {"k": "v"}}, "application/merge-patch+json")
    assert status == 200 and body["data"] == {"k": "v"}
    update = [r for p, r in webhook.reviews if p == "/deny" and r["operation"] == "UPDATE"][-1]
    assert update["oldObject"]["metadata"]["name"] == "kept" and update["object"]["data"] == {"k": "v"}
    # delete goes through the validating webhook with the old object
    status, body, _ = await call(server, "DELETE", f"{CMS}/kept")
    assert status == 200
    deleted = [r for p, r in webhook.reviews if p == "/deny" and r["operation"] == "DELETE"][-1]
    assert deleted["object"] is None and deleted["oldObject"]["metadata"]["name"] == "kept"
    assert deleted["options"]["kind"] == "DeleteOptions"
    # configurations themselves are never sent to webhooks: the fix is always possible
    status, _, _ = await call(server, "DELETE", f"{VWC}/deny")
    assert status == 200
    await wait_until(lambda: _created(server, "after", deny="yes"), 30, what="the deleted configuration out of force")


async def _created(server, name, **labels):
    status, _, _ = await call(server, "POST", CMS, labelled(name, **labels))
    return status == 201


async def test_failure_policy_timeout_selectors_and_dry_run(server, webhook):
    cc = lambda path: {"url": webhook.url(path), "caBundle": webhook.ca_bundle}  # noqa: E731
    gone = {"url": "https://127.0.0.1:1/nothing", "caBundle": webhook.ca_bundle}
    status, _, _ = await call(server, "POST", "/api/v1/namespaces",
                              {"metadata": {"name": "quiet", "labels": {"webhooks": "off"}}})
    assert status == 201
    await configure(server, VWC, "ValidatingWebhookConfiguration", "fail", [
        hook("down.test.io", gone, ["configmaps"], objectSelector={"matchLabels": {"case": "down"}}),
        hook("down-ignored.test.io", gone, ["configmaps"], failurePolicy="Ignore",
             objectSelector={"matchLabels": {"case": "ignored"}}),
        hook("slow.test.io", cc("/slow"), ["configmaps"], timeoutSeconds=1,
             objectSelector={"matchLabels": {"case": "slow"}}),
        hook("garbage.test.io", cc("/garbage"), ["configmaps"], objectSelector={"matchLabels": {"case": "garbage"}}),
        hook("side.test.io", cc("/deny"), ["configmaps"], sideEffects="NoneOnDryRun",
             namespaceSelector={"matchExpressions": [{"key": "webhooks", "operator": "NotIn", "values": ["off"]}]}),
    ])
    status, body = await until_refused(server, "down", case="down")
    assert status == 503 and body["message"].startswith('failed calling webhook "down.test.io": ')
    assert await _created(server, "ignored", case="ignored")
    status, body, _ = await call(server, "POST", CMS, labelled("slow", case="slow"))
    assert status == 503 and 'failed calling webhook "slow.test.io"' in body["message"]
    assert "within 1s" in body["message"]
    status, body, _ = await call(server, "POST", CMS, labelled("garbage", case="garbage"))
    assert status == 503 and "garbage.test.io" in body["message"]
    # namespaceSelector: the namespace labelled webhooks=off is left alone; dry-run calls the
    # NoneOnDryRun webhook, which says so in the review
    status, body, _ = await call(server, "POST", f"{CMS}?dryRun=All", labelled("dry", deny="yes"))
    assert status == 403 and "side.test.io" in body["message"]
    assert [r for p, r in webhook.reviews if r["name"] == "dry"][-1]["dryRun"] is True
    quiet = labelled("quiet", deny="yes")
    quiet["metadata"]["namespace"] = "quiet"
    status, body, _ = await call(server, "POST", "/api/v1/namespaces/quiet/configmaps", quiet)
    assert status == 201, body


async def test_service_reference_reaches_a_ready_endpoint(server, webhook):
    await call(server, "POST", "/api/v1/namespaces/default/services", {
        "metadata": {"name": "hooks"}, "spec": {"ports": [{"name": "https", "port": 443,
                                                           "targetPort": webhook.port}]}})
    status, body, _ = await call(server, "POST", "/api/v1/namespaces/default/endpoints", {
        "metadata": {"name": "hooks"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": webhook.port}]}]})
    assert status == 201, body
    svc = {"service": {"namespace": "default", "name": "hooks", "path": "/deny"}, "caBundle": webhook.ca_bundle}
    missing = {"service": {"namespace": "default", "name": "absent", "path": "/deny"},
               "caBundle": webhook.ca_bundle}
    await configure(server, VWC, "ValidatingWebhookConfiguration", "by-service", [
        hook("svc.test.io", svc, ["configmaps"]),
        hook("absent.test.io", missing, ["configmaps"], objectSelector={"matchLabels": {"case": "absent"}})])
    status, body = await until_refused(server, "via-service", deny="yes")
    assert status == 403 and 'admission webhook "svc.test.io" denied' in body["message"]
    status, body, _ = await call(server, "POST", CMS, labelled("absent", case="absent"))
    assert status == 503 and 'service "default/absent" not found' in body["message"]
