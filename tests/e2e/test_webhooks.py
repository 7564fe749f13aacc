"""Admission webhooks end to end: the real kubectl and the official Python client against
`sendo up`, with webhook servers run by the test (tests/webhook_server.py) reached by URL and
through a Service reference."""
from __future__ import annotations

import json

import pytest

from tests.waiting import poll
from tests.webhook_server import DENY_MESSAGE, WebhookServer, configuration, hook

from .harness import shared_cluster

NS = "hooked"
SERVICE_HOST = f"hook-svc.{NS}.svc"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("webhooks")
    server = WebhookServer(d / "tls", hosts=(SERVICE_HOST,))
    try:
        with shared_cluster(d / "cluster") as c:
            c.kubectl("create", "namespace", NS)
            yield c, server
    finally:
        server.stop()


def apply(c, *objs: dict) -> None:
    c.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def configmap(name: str, ns: str = NS, **labels: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns,
                                                                             "labels": labels}})


def kubectl_create(c, manifest: str):
    return c.kubectl("create", "-f", "-", input=manifest, check=False)


def refused_dry_run(c, **labels):
    """The API server follows the store: wait until a configuration is in force."""
    r = c.kubectl("create", "--dry-run=server", "-f", "-", input=configmap("probe", **labels), check=False)
    return r if r.returncode != 0 else None


def test_kubectl_create_is_refused_with_the_webhooks_message(env):
    c, server = env
    cc = {"url": server.url("/deny"), "caBundle": server.ca_bundle}
    apply(c, configuration("ValidatingWebhookConfiguration", "deny-labelled",
                           [hook("deny.hooks.test", cc, ["configmaps"], operations=("CREATE", "UPDATE", "DELETE"),
                                 namespaceSelector={"matchExpressions": [
                                     {"key": "webhooks", "operator": "NotIn", "values": ["off"]}]})]))
    listed = c.kubectl("get", "validatingwebhookconfigurations").stdout
    assert "deny-labelled" in listed and "WEBHOOKS" in listed
    poll(lambda: refused_dry_run(c, deny="yes"), 60, what="the validating webhook in force")
    r = kubectl_create(c, configmap("refused", deny="yes"))
    assert r.returncode != 0
    assert f'admission webhook "deny.hooks.test" denied the request: {DENY_MESSAGE}' in r.stderr, r.stderr
    r = kubectl_create(c, configmap("allowed", deny="no"))
    assert r.returncode == 0, r.stderr
    assert "checked CREATE by the test webhook" in r.stderr  # the webhook's warning, printed by kubectl
    # namespaceSelector: a namespace labelled webhooks=off is not sent to the webhook
    c.kubectl("create", "namespace", "unhooked")
    c.kubectl("label", "namespace", "unhooked", "webhooks=off")
    r = kubectl_create(c, configmap("free", "unhooked", deny="yes"))
    assert r.returncode == 0, r.stderr
    c.kubectl("delete", "validatingwebhookconfiguration", "deny-labelled")


def test_mutating_webhook_labels_pods_created_with_the_python_client(env):
    from kubernetes import client
    c, server = env
    api = c.api()
    admission = client.AdmissionregistrationV1Api(api)
    cc = client.AdmissionregistrationV1WebhookClientConfig(url=server.url("/label"), ca_bundle=server.ca_bundle)
    admission.create_mutating_webhook_configuration(client.V1MutatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name="label-pods"),
        webhooks=[client.V1MutatingWebhook(
            name="label.hooks.test", client_config=cc, side_effects="None", admission_review_versions=["v1"],
            object_selector=client.V1LabelSelector(match_labels={"mutate": "me"}),
            rules=[client.V1RuleWithOperations(operations=["CREATE"], api_groups=[""], api_versions=["v1"],
                                               resources=["pods"])])]))
    got = admission.read_mutating_webhook_configuration("label-pods")
    assert got.webhooks[0].failure_policy == "Fail" and got.webhooks[0].reinvocation_policy == "Never"
    core = client.CoreV1Api(api)

    def pod(name):
        return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels={"mutate": "me"}),
                            spec=client.V1PodSpec(containers=[client.V1Container(
                                name="c", image="none", command=["sleep", "3600"])]))
    poll(lambda: (core.create_namespaced_pod(NS, pod("probe"), dry_run="All").metadata.labels or {})
         .get("webhooked"), 60, what="the mutating webhook in force")
    made = core.create_namespaced_pod(NS, pod("mutated"))
    assert made.metadata.labels == {"mutate": "me", "webhooked": "yes"}
    assert core.read_namespaced_pod("mutated", NS).metadata.labels["webhooked"] == "yes"
    core.delete_namespaced_pod("mutated", NS, grace_period_seconds=0)
    admission.delete_mutating_webhook_configuration("label-pods")


def test_failure_policy_with_the_webhook_server_stopped(env, tmp_path):
    c, _ = env
    stopped = WebhookServer(tmp_path / "tls")
    cc = {"url": stopped.url("/deny"), "caBundle": stopped.ca_bundle}
    stopped.stop()
    apply(c, configuration("ValidatingWebhookConfiguration", "down", [
        hook("fail.hooks.test", cc, ["configmaps"], objectSelector={"matchLabels": {"case": "fail"}}),
        hook("ignore.hooks.test", cc, ["configmaps"], failurePolicy="Ignore", timeoutSeconds=5,
             objectSelector={"matchLabels": {"case": "ignore"}})]))
    poll(lambda: refused_dry_run(c, case="fail"), 60, what="the failing webhook in force")
    r = kubectl_create(c, configmap("failing", case="fail"))
    assert r.returncode != 0 and 'failed calling webhook "fail.hooks.test"' in r.stderr, r.stderr
    r = kubectl_create(c, configmap("ignored", case="ignore"))
    assert r.returncode == 0, r.stderr
    c.kubectl("delete", "validatingwebhookconfiguration", "down")


def test_webhook_reached_through_a_service_reference(env):
    c, server = env
    apply(c, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook-svc", "namespace": NS},
              "spec": {"ports": [{"name": "https", "port": 443, "targetPort": server.port}]}},
          {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "hook-svc", "namespace": NS},
           "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": server.port}]}]})
    cc = {"service": {"namespace": NS, "name": "hook-svc", "path": "/deny"}, "caBundle": server.ca_bundle}
    apply(c, configuration("ValidatingWebhookConfiguration", "by-service",
                           [hook("svc.hooks.test", cc, ["configmaps"], objectSelector={"matchLabels": {"via": "svc"}})]))
    r = poll(lambda: refused_dry_run(c, via="svc", deny="yes"), 60, what="the service-backed webhook in force")
    assert 'admission webhook "svc.hooks.test" denied the request' in r.stderr, r.stderr
    r = kubectl_create(c, configmap("through-service", via="svc"))
    assert r.returncode == 0, r.stderr
    assert any(p == "/deny" and req["name"] == "through-service" for p, req in server.reviews)
    c.kubectl("delete", "validatingwebhookconfiguration", "by-service")
