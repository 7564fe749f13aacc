"""See and scale, end to end on one `sendo up` (usage sampled every second, HPAs synced every
second): `kubectl top` and metrics.k8s.io through the official client, an HPA made by
`kubectl autoscale` scaling a CPU-burning Deployment up and back down, every component's
/metrics parsed with prometheus_client's parser and counting what the test did, the
health checks with ?verbose, and `sendo status`.

CPU thresholds: a pod that burns a core gets much less than one here (two cores shared
with other test runs: at a load average of 30 it got 75m), so "busy" means at least 60m in
one of the samples polled for a minute and a half, and "idle" (a sleeping process, 0m) at
most 20m. Every burner stops when the test's stop file appears or after
150 s, whichever is first, and the harness kills every pod process at the end.
"""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import REPO, Cluster, poll

BURN_SECONDS = 150


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("metrics"),
                ("--no-ingress", "--metrics-interval", "1", "--hpa-sync-period", "1"))
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


def burner_command(stop_file: str) -> list[str]:
    """Burn a CPU until stop_file exists (or BURN_SECONDS pass), then sleep."""
    code = (f"import os, time\nt = time.time()\n"
            f"while not os.path.exists({stop_file!r}) and time.time() - t < {BURN_SECONDS}:\n"
            f"    for _ in range(100000): pass\n"
            f"time.sleep(600)\n")
    return ["python3", "-c", code]


def millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


# ---------------------------------------------------------------------------- HTTP helpers

def _ssl(cluster: Cluster) -> ssl.SSLContext:
    import base64
    ca = cluster.kubeconfig_data()["clusters"][0]["cluster"]["certificate-authority-data"]
    return ssl.create_default_context(cadata=base64.b64decode(ca).decode())


def get(cluster: Cluster, url: str, token: str | None = None) -> tuple[int, str]:
    """GET a component of this cluster (all on loopback)."""
    assert url.startswith(("https://127.", "http://127.")), url
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=_ssl(cluster)))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def endpoints(cluster: Cluster) -> dict[str, str]:
    comps = json.loads((cluster.data_dir / "server" / "components.json").read_text())
    node = cluster.kubectl_json("get", "nodes")["items"][0]
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    comps["agent"] = f"http://{node['status']['addresses'][0]['address']}:{port}"
    # the controllers run in a child process that may still be starting
    poll(lambda: get(cluster, comps["controllers"] + "/readyz")[0] == 200 if _listening(comps["controllers"])
         else None, timeout=60, what="the controllers' /readyz")
    return comps


def _listening(url: str) -> bool:
    import socket
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


def admin_token(cluster: Cluster) -> str:
    return (cluster.data_dir / "server" / "admin-token").read_text().strip()


def node_token(cluster: Cluster) -> str:
    return (cluster.data_dir / "server" / "node-token").read_text().strip()


def scrape(cluster: Cluster, url: str, token: str | None = None) -> dict[str, list]:
    code, text = get(cluster, url, token)
    assert code == 200, text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(families: dict[str, list], sample_name: str, **labels: str) -> float:
    """The sum of the samples of that name whose labels include these."""
    for samples in families.values():
        hits = [s.value for s in samples if s.name == sample_name and labels.items() <= s.labels.items()]
        if hits:
            return sum(hits)
    return 0.0


# ---------------------------------------------------------------------------- kubectl top

def test_top_shows_a_burning_pod_and_an_idle_one(cluster, tmp_path):
    stop = tmp_path / "stop-burner"
    cluster.kubectl("run", "burner", "--image=python", "--restart=Never", "--command", "--",
                    *burner_command(str(stop)))
    cluster.kubectl("run", "idle", "--image=busybox", "--restart=Never", "--command", "--", "sleep", "300")
    try:
        def top() -> dict[str, int] | None:
            r = cluster.kubectl("top", "pods", "--no-headers", check=False)
            rows = {line.split()[0]: millicores(line.split()[1]) for line in r.stdout.splitlines() if line.strip()}
            assert rows.get("burner", 0) >= 60 and rows.get("idle", 10 ** 6) <= 20, rows
            return rows
        poll(top, timeout=90, interval=1.0, what="kubectl top pods: burner >= 60m, idle <= 20m")

        out = cluster.kubectl("top", "pods", "--containers", "-A").stdout.splitlines()
        assert out[0].split() == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        assert any(line.split()[:3] == ["default", "burner", "burner"] for line in out[1:]), out
        node = cluster.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
        nodes = cluster.kubectl("top", "nodes", "--no-headers").stdout.split()
        assert nodes[0] == node and millicores(nodes[1]) >= 60 and nodes[2].endswith("%"), nodes

        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        api = client.CustomObjectsApi(cluster.api())
        pm = api.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods", "idle")
        assert pm["kind"] == "PodMetrics" and pm["containers"][0]["name"] == "idle"
        cpu = pm["containers"][0]["usage"]["cpu"]
        assert cpu.endswith("n") and int(cpu[:-1]) <= 50 * 10 ** 6, cpu  # nanocores, as metrics-server writes
        assert pm["containers"][0]["usage"]["memory"].endswith("Ki")
        nm = api.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        assert [n["metadata"]["name"] for n in nm["items"]] == [node] and nm["items"][0]["window"] == "1s"
        with pytest.raises(ApiException) as e:
            api.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods", "no-such-pod")
        assert e.value.status == 404
        r = cluster.kubectl("create", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", "-f", "-",
                            input="{}", check=False)
        assert r.returncode != 0 and "MethodNotAllowed" in r.stderr + r.stdout or "not allow" in r.stderr, r.stderr
    finally:
        stop.touch()
        cluster.kubectl("delete", "pod", "burner", "idle", "--wait=false", check=False)


# ---------------------------------------------------------------------------- the HPA

def test_hpa_scales_a_burning_deployment_up_and_back_down(cluster, tmp_path):
    stop = tmp_path / "stop-load"
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "burn"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
                       "template": {"metadata": {"labels": {"app": "burn"}}, "spec": {"containers": [{
                           "name": "burn", "image": "python", "command": burner_command(str(stop)),
                           "resources": {"requests": {"cpu": "100m"}}}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deploy))
    try:
        cluster.kubectl("autoscale", "deployment", "burn", "--cpu-percent=50", "--min=1", "--max=4")
        # short windows through behavior: scale down 2 s after the load stops, not 300 s
        cluster.kubectl("patch", "hpa", "burn", "--type=merge", "-p", json.dumps(
            {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}}}}))

        def replicas() -> int:
            return cluster.kubectl_json("get", "deployment", "burn")["spec"]["replicas"]
        poll(lambda: replicas() > 1, timeout=120, interval=1.0, what="the HPA to scale burn up")
        header, row = cluster.kubectl("get", "hpa", "burn").stdout.splitlines()
        assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert row.split()[:2] == ["burn", "Deployment/burn"] and row.split()[2] == "cpu:"
        assert row.split()[3].endswith("/50%") and row.split()[4:6] == ["1", "4"], row

        stop.touch()  # the load stops
        poll(lambda: replicas() == 1, timeout=120, interval=1.0, what="the HPA to scale burn back down to 1")

        from kubernetes import client
        hpa = client.AutoscalingV2Api(cluster.api()).read_namespaced_horizontal_pod_autoscaler_status(
            "burn", "default")
        assert hpa.spec.behavior.scale_down.stabilization_window_seconds == 2
        assert hpa.spec.behavior.scale_up.policies[0].type == "Pods"  # defaults filled in
        assert hpa.status.last_scale_time is not None and hpa.status.desired_replicas == 1
        conds = {c.type: c.status for c in hpa.status.conditions}
        assert set(conds) == {"AbleToScale", "ScalingActive", "ScalingLimited"} and conds["AbleToScale"] == "True"
        assert hpa.status.current_metrics[0].resource.name == "cpu"

        def rescales() -> list[str]:
            evs = cluster.kubectl_json("get", "events", "--field-selector", "involvedObject.name=burn")["items"]
            msgs = [e["message"] for e in evs if e["reason"] == "SuccessfulRescale"]
            assert len(msgs) >= 2, msgs
            return msgs
        msgs = poll(rescales, timeout=30, what="two SuccessfulRescale events")
        assert any("above target" in m for m in msgs) and any("New size: 1" in m for m in msgs), msgs
    finally:
        stop.touch()
        cluster.kubectl("delete", "hpa,deployment", "burn", "--wait=false", check=False)


def test_hpa_refuses_a_bad_spec_naming_the_field(cluster):
    bad = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "bad"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "minReplicas": 5, "maxReplicas": 2}}
    r = cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0 and "spec.maxReplicas" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- Prometheus

def test_every_component_serves_metrics_that_count_what_the_test_did(cluster):
    eps = endpoints(cluster)
    server, token = eps["apiserver"], admin_token(cluster)
    assert get(cluster, server + "/metrics")[0] == 401
    assert get(cluster, eps["agent"] + "/metrics")[0] == 401

    def creates(families) -> float:
        return value(families, "apiserver_request_total", verb="POST", resource="configmaps", code="201")
    before = creates(scrape(cluster, server + "/metrics", token))
    ctl_before = scrape(cluster, eps["controllers"] + "/metrics")
    for i in range(3):
        cluster.kubectl("create", "configmap", f"counted-{i}", "--from-literal=a=b")
    cluster.kubectl("run", "probed", "--image=busybox", "--restart=Never", "--overrides", json.dumps(
        {"spec": {"containers": [{"name": "probed", "image": "busybox", "command": ["sleep", "300"],
                                  "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}))
    try:
        after = scrape(cluster, server + "/metrics", token)
        assert creates(after) - before == 3
        assert value(after, "apiserver_request_duration_seconds_count", verb="POST", resource="configmaps") >= 3
        assert value(after, "apiserver_storage_objects", resource="configmaps") >= 3
        assert value(after, "etcd_request_duration_seconds_count", operation="create", type="configmaps") >= 3
        assert value(after, "apiserver_registered_watchers", kind="Pod") >= 1
        assert value(after, "apiserver_current_inflight_requests", request_kind="readOnly") >= 1  # this scrape

        def controllers():
            fams = scrape(cluster, eps["controllers"] + "/metrics")
            scheduled = value(fams, "scheduler_schedule_attempts_total", result="scheduled")
            assert scheduled > value(ctl_before, "scheduler_schedule_attempts_total", result="scheduled"), scheduled
            return fams
        fams = poll(controllers, timeout=30, what="the scheduler to count the pod")
        assert value(fams, "workqueue_adds_total", name="scheduler") > value(ctl_before, "workqueue_adds_total",
                                                                             name="scheduler")
        assert value(fams, "scheduler_scheduling_attempt_duration_seconds_count", result="scheduled") >= 1
        assert {s.labels["name"] for s in fams["workqueue_depth"]} >= {"deployment", "horizontalpodautoscaling"}

        def agent():
            fams = scrape(cluster, eps["agent"] + "/metrics", node_token(cluster))
            assert value(fams, "prober_probe_total", probe_type="Readiness", result="successful", pod="probed") > 0
            return fams
        fams = poll(agent, timeout=60, what="the agent to count the pod's readiness probes")
        # the cluster DNS (in the agent's process) counts its answers by zone and rcode
        import dns.message
        import dns.query
        import re
        host, port = re.findall(r"Cluster DNS at (127\.[0-9.]+):([0-9]+)", cluster.log_path.read_text())[-1]
        assert host.startswith("127.")  # loopback only
        for name in ("kubernetes.default.svc.cluster.local", "missing.default.svc.cluster.local"):
            dns.query.udp(dns.message.make_query(name, "A"), host, port=int(port), timeout=5)
        fams = scrape(cluster, eps["agent"] + "/metrics", node_token(cluster))
        assert value(fams, "coredns_dns_responses_total", zone="cluster.local.", rcode="NOERROR") >= 1
        assert value(fams, "coredns_dns_responses_total", zone="cluster.local.", rcode="NXDOMAIN") >= 1
        assert value(fams, "kubelet_running_pods") >= 1
        assert value(fams, "kubelet_running_containers", container_state="running") >= 1
        assert value(fams, "kubelet_pod_start_duration_seconds_count") >= 1
        assert value(fams, "kubelet_runtime_operations_duration_seconds_count", operation_type="start_container") >= 1

        def resource():
            fams = scrape(cluster, eps["agent"] + "/metrics/resource", node_token(cluster))
            assert value(fams, "container_memory_working_set_bytes", pod="probed", container="probed") > 0
            return fams
        fams = poll(resource, timeout=30, what="/metrics/resource to show the pod")
        assert value(fams, "node_cpu_usage_seconds_total") > 0
    finally:
        cluster.kubectl("delete", "pod", "probed", "--wait=false", check=False)
        cluster.kubectl("delete", "configmap", "counted-0", "counted-1", "counted-2", check=False)


# ---------------------------------------------------------------------------- health and status

def test_health_checks_list_their_checks_and_sendo_status_shows_every_component(cluster):
    eps = endpoints(cluster)
    code, text = get(cluster, eps["apiserver"] + "/readyz?verbose")
    assert code == 200 and "[+]store ok" in text and "[+]crd-informer-synced ok" in text
    assert text.rstrip().endswith("readyz check passed")
    assert get(cluster, eps["apiserver"] + "/livez/ping") == (200, "ok")
    assert get(cluster, eps["apiserver"] + "/readyz?exclude=store&verbose")[1].startswith("[+]ping ok")
    assert get(cluster, eps["apiserver"] + "/readyz/nonexistent")[0] == 404
    code, text = get(cluster, eps["controllers"] + "/readyz?verbose")
    assert code == 200 and "[+]informer-sync ok" in text and "[+]controller/horizontalpodautoscaling ok" in text
    code, text = get(cluster, eps["agent"] + "/readyz?verbose")
    assert code == 200 and "[+]node-registered ok" in text and "[+]usage-sampler ok" in text
    assert get(cluster, eps["agent"] + "/livez?verbose")[1].splitlines()[-1] == "livez check passed"

    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "status", "--data-dir", str(cluster.data_dir)],
                       capture_output=True, text=True, env=cluster.env(), cwd=str(REPO), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["COMPONENT", "NODE", "ENDPOINT", "UP", "DETAIL"]
    assert [(row[0], row[3]) for row in rows[1:]] == [("apiserver", "1"), ("controllers", "1"), ("agent", "1")]
