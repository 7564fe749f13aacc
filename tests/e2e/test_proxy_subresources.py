"""The API proxy subresources and autoscaling/v1 through a real `sendo up` (ONE cluster
for the module), the real kubectl and the official Python client.

A web pod (python's http.server on its loopback pod IP) behind a Service is reached
through services/proxy and pods/proxy (`kubectl get --raw`, `kubectl proxy` on a free
127.0.0.1 port, the client's connect_* calls); the node's agent through nodes/proxy.
All traffic stays on loopback."""
from __future__ import annotations

import json
import subprocess

import pytest

from sendo.server import free_port

from .harness import KUBECTL, REPO, Cluster, LineReader, http_get, poll, ready_pods, shared_cluster, to_yaml, \
    unique_port, web_deployment

NS = "default"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("proxy")) as cluster:
        port = unique_port()
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pweb"},
               "spec": {"selector": {"app": "pweb"}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}
        cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("pweb", port, replicas=1), svc))
        pod = poll(lambda: ready_pods(cluster, "app=pweb", 1, port), 90, what="pweb Ready and answering")[0]
        poll(lambda: (cluster.kubectl_json("get", "endpoints", "pweb").get("subsets") or [None])[0], 60,
             what="the endpoints of pweb")
        yield cluster, pod["metadata"]["name"], port


def _raw(cluster: Cluster, path: str, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.kubectl("get", "--raw", path, check=check)


def test_kubectl_get_raw_through_service_pod_and_node_proxy(world):
    cluster, pod, port = world
    base = f"/api/v1/namespaces/{NS}"
    for path in (f"{base}/services/pweb:8080/proxy/", f"{base}/services/pweb:http/proxy/",
                 f"{base}/services/http:pweb:http/proxy/?x=1", f"{base}/pods/{pod}:{port}/proxy/",
                 f"{base}/pods/{pod}/proxy/"):
        assert "Directory listing" in _raw(cluster, path).stdout, path
    r = _raw(cluster, f"{base}/services/nothere/proxy/", check=False)
    assert r.returncode != 0 and 'services "nothere" not found' in r.stderr
    r = _raw(cluster, f"{base}/pods/{pod}:notaport/proxy/", check=False)
    assert r.returncode != 0 and "invalid port" in r.stderr
    node = cluster.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    assert _raw(cluster, f"/api/v1/nodes/{node}/proxy/healthz").stdout.strip() == "ok"
    resources = {r["name"]: r for r in json.loads(_raw(cluster, "/api/v1").stdout)["resources"]}
    assert {"pods/proxy", "services/proxy", "nodes/proxy"} <= resources.keys()
    assert resources["services/proxy"]["kind"] == "ServiceProxyOptions"


def test_kubectl_proxy(world):
    cluster, pod, port = world
    local = free_port("127.0.0.1")
    p = subprocess.Popen([str(KUBECTL), "proxy", "--address=127.0.0.1", f"--port={local}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=cluster.env(), cwd=str(REPO))
    cluster._helpers.append(p)
    try:
        LineReader(p.stdout).wait_for("Starting to serve on", 30)
        status, body = http_get("127.0.0.1", local, f"/api/v1/namespaces/{NS}/services/pweb:http/proxy/", 30)
        assert status == 200 and b"Directory listing" in body
        status, body = http_get("127.0.0.1", local, f"/api/v1/namespaces/{NS}/pods/{pod}:{port}/proxy/", 30)
        assert status == 200 and b"Directory listing" in body
        status, body = http_get("127.0.0.1", local, "/api/v1/namespaces/default/pods", 30)
        assert status == 200 and json.loads(body)["kind"] == "PodList"
    finally:
        p.terminate()
        p.wait(10)


def test_python_client_connect_calls(world):
    from kubernetes import client
    cluster, pod, port = world
    core = client.CoreV1Api(cluster.api())
    assert "Directory listing" in core.connect_get_namespaced_service_proxy_with_path("pweb:http", NS, "")
    assert "Directory listing" in core.connect_get_namespaced_pod_proxy_with_path(f"{pod}:{port}", NS, "")
