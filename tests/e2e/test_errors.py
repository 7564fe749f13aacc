"""Bad input gets a Kubernetes-style Status a person can act on — as kubectl, the
official client and a plain HTTPS client see it."""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request

import pytest

from .harness import Cluster, to_yaml


def _deployment(name: str, *, containers: list | None = None, selector: dict | None = None,
                labels: dict | None = None) -> dict:
    labels = labels if labels is not None else {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1,
                     "selector": {"matchLabels": selector if selector is not None else {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": containers if containers is not None else [
                                      {"name": "c", "image": "x", "command": ["sleep", "100"]}]}}}}


def _https(cluster: Cluster, method: str, path: str, body: bytes | None = None, token: str | None = None,
           content_type: str = "application/json") -> tuple[int, dict]:
    """A raw HTTPS request to the API server, verifying it with the kubeconfig's CA."""
    kc = cluster.kubeconfig_data()
    server = kc["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://127."), server  # loopback only
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    ctx = ssl.create_default_context(cadata=ca)
    req = urllib.request.Request(server + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _token(cluster: Cluster) -> str:
    return cluster.kubeconfig_data()["users"][0]["user"]["token"]


def _assert_status(body: dict, code: int, reason: str) -> None:
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    assert body.get("code") == code, body
    assert body.get("reason") == reason, body
    assert body.get("message"), body


def test_kubectl_rejects_invalid_deployments(cluster: Cluster):
    r = cluster.kubectl("apply", "-f", "-", "-v=6", input=to_yaml(_deployment("nocontainers", containers=[])),
                        check=False)
    assert r.returncode != 0
    assert 'The Deployment "nocontainers" is invalid' in r.stderr, r.stderr
    assert "spec.template.spec.containers: Required value" in r.stderr, r.stderr
    assert "status=\"422 Unprocessable Entity\"" in r.stderr, r.stderr  # -v=6 logs responses
    assert cluster.kubectl("get", "deploy", "nocontainers", check=False).returncode != 0

    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(
        _deployment("mismatch", selector={"app": "a"}, labels={"app": "b"})), check=False)
    assert r.returncode != 0
    assert 'The Deployment "mismatch" is invalid' in r.stderr, r.stderr
    assert "spec.template.metadata.labels" in r.stderr, r.stderr
    assert "selector" in r.stderr, r.stderr

    # the same through the official client: 422 with the field causes
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    apps = client.AppsV1Api(cluster.api())
    with pytest.raises(ApiException) as ei:
        apps.create_namespaced_deployment("default", _deployment("mismatch", selector={"app": "a"},
                                                                 labels={"app": "b"}))
    assert ei.value.status == 422
    body = json.loads(ei.value.body)
    _assert_status(body, 422, "Invalid")
    assert body["details"]["kind"] == "Deployment" and body["details"]["name"] == "mismatch"
    assert "spec.template.metadata.labels" in [c.get("field") for c in body["details"]["causes"]], body

    assert cluster.kubectl_json("get", "deploy")["items"] == []


def test_kubectl_get_missing_pod(cluster: Cluster):
    r = cluster.kubectl("get", "pod", "nope", check=False)
    assert r.returncode != 0
    assert 'Error from server (NotFound): pods "nope" not found' in r.stderr, r.stderr


def test_raw_https_errors(cluster: Cluster):
    # no token: 401 as a Status, never the object
    code, body = _https(cluster, "GET", "/api/v1/namespaces/default/pods")
    assert code == 401
    _assert_status(body, 401, "Unauthorized")
    code, body = _https(cluster, "GET", "/api/v1/namespaces/default/pods", token="not-the-token")
    assert code == 401
    _assert_status(body, 401, "Unauthorized")

    # the right token works over the same path
    code, body = _https(cluster, "GET", "/api/v1/namespaces/default/pods", token=_token(cluster))
    assert code == 200 and body["kind"] == "PodList", body

    # a malformed JSON body: 400, and nothing is created
    code, body = _https(cluster, "POST", "/api/v1/namespaces/default/configmaps", body=b'{"apiVersion": "v1", ',
                        token=_token(cluster))
    assert code == 400, body
    _assert_status(body, 400, "BadRequest")
    code, body = _https(cluster, "GET", "/api/v1/namespaces/default/configmaps", token=_token(cluster))
    assert code == 200 and [i["metadata"]["name"] for i in body["items"]
                            if i["metadata"]["name"] != "kube-root-ca.crt"] == [], body


def test_stale_resource_version_conflicts(cluster: Cluster):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    core = client.CoreV1Api(cluster.api())
    cm = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v1"}))
    stale = cm.metadata.resource_version

    cm.data = {"k": "v2"}
    fresh = core.replace_namespaced_config_map("cfg", "default", cm)
    assert fresh.metadata.resource_version != stale

    cm.metadata.resource_version = stale
    cm.data = {"k": "lost update"}
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_config_map("cfg", "default", cm)
    assert ei.value.status == 409
    body = json.loads(ei.value.body)
    _assert_status(body, 409, "Conflict")
    assert "cfg" in body["message"], body
    assert core.read_namespaced_config_map("cfg", "default").data == {"k": "v2"}
