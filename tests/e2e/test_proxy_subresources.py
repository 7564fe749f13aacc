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


def test_kubectl_autoscale_read_back_in_v1(world):
    cluster, _, _ = world
    cluster.kubectl("autoscale", "deployment", "pweb", "--min=1", "--max=3", "--cpu=60%", "--memory=70%")
    hpa = cluster.kubectl_json("get", "horizontalpodautoscalers.v1.autoscaling", "pweb")
    assert hpa["apiVersion"] == "autoscaling/v1"
    assert hpa["spec"]["targetCPUUtilizationPercentage"] == 60 and hpa["spec"]["maxReplicas"] == 3
    assert json.loads(hpa["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageUtilization": 70}}]
    # a v1 manifest applied by kubectl changes the one object every version sees
    hpa["spec"]["targetCPUUtilizationPercentage"] = 45
    for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        hpa["metadata"].pop(k, None)
    hpa.pop("status", None)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(hpa))
    v2 = cluster.kubectl_json("get", "horizontalpodautoscalers.v2.autoscaling", "pweb")
    assert [(m["resource"]["name"], m["resource"]["target"]["averageUtilization"]) for m in v2["spec"]["metrics"]] \
        == [("memory", 70), ("cpu", 45)]
    assert "pweb" in cluster.kubectl("get", "horizontalpodautoscalers.v1.autoscaling").stdout
    cluster.kubectl("delete", "horizontalpodautoscalers.v1.autoscaling", "pweb")
    # kubectl validates v1 manifests against the v1 schema on the server (fieldValidation=Strict)
    hpa["metadata"] = {"name": "typo"}
    hpa["spec"]["targetCPUUtilisationPercentage"] = 50
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(hpa), check=False)
    assert r.returncode != 0 and 'unknown field "spec.targetCPUUtilisationPercentage"' in r.stderr, r.stderr


def test_python_client_autoscaling_v1(world):
    from kubernetes import client
    cluster, _, _ = world
    api = client.AutoscalingV1Api(cluster.api())
    body = client.V1HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="pweb-v1"),
        spec=client.V1HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V1CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                  name="pweb"),
            min_replicas=1, max_replicas=2, target_cpu_utilization_percentage=75))
    made = api.create_namespaced_horizontal_pod_autoscaler(NS, body)
    assert made.api_version == "autoscaling/v1" and made.spec.target_cpu_utilization_percentage == 75
    read = api.read_namespaced_horizontal_pod_autoscaler("pweb-v1", NS)
    assert read.spec.max_replicas == 2 and read.spec.scale_target_ref.name == "pweb"
    v2 = client.AutoscalingV2Api(cluster.api()).read_namespaced_horizontal_pod_autoscaler("pweb-v1", NS)
    assert v2.spec.metrics[0].resource.target.average_utilization == 75
    # the HPA controller, which works in v2, reports into the status v1 clients read
    poll(lambda: api.read_namespaced_horizontal_pod_autoscaler_status("pweb-v1", NS).status.current_replicas,
         90, what="the HPA controller's status of pweb-v1")
    scale = api.read_namespaced_deployment_scale("pweb", NS) if hasattr(api, "read_namespaced_deployment_scale") \
        else client.AppsV1Api(cluster.api()).read_namespaced_deployment_scale("pweb", NS)
    assert scale.api_version == "autoscaling/v1" and scale.spec.replicas >= 1
    api.delete_namespaced_horizontal_pod_autoscaler("pweb-v1", NS)
