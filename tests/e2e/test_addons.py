"""The add-on manager end to end on one `sendo up`: the Addon kind through the official
client (CustomObjectsApi) and kubectl, the `sendo addons` CLI, the prometheus-scrape add-on
rendering the cluster's real component endpoints, config changes, disabling that removes
exactly what was added, log shipping to a file, and 422s naming the field."""
from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid

import pytest
import yaml
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from .harness import REPO, Cluster, poll

GROUP, VERSION, PLURAL = "sendo.dev", "v1alpha1", "addons"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("addons"), ("--no-ingress",))
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


def sendo(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sendo.cli.main", "addons", *args, "--data-dir",
                           str(cluster.data_dir)], capture_output=True, text=True, timeout=60, cwd=str(REPO),
                          env={**cluster.env(), "COLUMNS": "200"})


def configmap(cluster: Cluster, name: str, ns: str = "kube-system") -> dict | None:
    r = cluster.kubectl("get", "configmap", "-n", ns, name, "-o", "json", "--show-managed-fields", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def names(cluster: Cluster, kind: str, ns: str = "kube-system") -> set[str]:
    return {o["metadata"]["name"] for o in cluster.kubectl_json("get", kind, "-n", ns)["items"]}


def addon(objs: k8s.CustomObjectsApi, name: str) -> dict:
    return objs.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def healthy(a: dict) -> bool:
    conds = {c["type"]: c["status"] for c in (a.get("status") or {}).get("conditions") or []}
    return conds.get("Healthy") == "True" and a["status"].get("observedGeneration") == a["metadata"]["generation"]


def scrape_as_prometheus(job: dict) -> int:
    """Scrape every target of a job as Prometheus would (its scheme, path, CA and token files;
    loopback only) and parse each answer; the number of metric families seen."""
    families = 0
    ca = (job.get("tls_config") or {}).get("ca_file")
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    token_file = (job.get("authorization") or {}).get("credentials_file")
    headers = {"Authorization": "Bearer " + open(token_file).read().strip()} if token_file else {}
    for target in (t for sc in job["static_configs"] for t in sc["targets"]):
        assert target.startswith("127."), target  # network safety: sendo up serves on loopback
        req = urllib.request.Request(f"{job['scheme']}://{target}{job['metrics_path']}", headers=headers)
        with opener.open(req, timeout=10) as r:
            families += len(list(text_string_to_metric_families(r.read().decode())))
    return families


def test_prometheus_scrape_lists_every_component_follows_config_and_goes_away(cluster):
    objs = k8s.CustomObjectsApi(cluster.api())
    before = names(cluster, "configmaps")
    server = cluster.data_dir / "server"
    objs.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Addon", "metadata": {"name": "prometheus-scrape"},
        "spec": {"config": {"scrapeInterval": "15s", "caFile": str(server / "tls" / "ca.crt"),
                            "apiTokenFile": str(server / "admin-token"),
                            "nodeTokenFile": str(server / "node-token")}}})
    cm = poll(lambda: configmap(cluster, "sendo-prometheus-scrape"), timeout=60, what="the scrape ConfigMap")
    scrape = yaml.safe_load(cm["data"]["prometheus.yml"])
    assert scrape["global"]["scrape_interval"] == "15s"
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert set(jobs) == {"sendo-apiserver", "sendo-controllers", "sendo-agent", "sendo-agent-resource"}
    targets = {k: [t for sc in j["static_configs"] for t in sc["targets"]] for k, j in jobs.items()}
    assert targets["sendo-apiserver"] == [f"127.0.0.1:{cluster.port}"]
    comps = json.loads((cluster.data_dir / "server" / "components.json").read_text())
    assert targets["sendo-controllers"] == [comps["controllers"].removeprefix("http://")]
    node = cluster.kubectl_json("get", "nodes")["items"][0]
    agent_port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert [t.rsplit(":", 1)[1] for t in targets["sendo-agent"]] == [str(agent_port)]
    assert jobs["sendo-agent"]["static_configs"][0]["labels"]["node"] == node["metadata"]["name"]
    for job in jobs.values():  # every target answers with Prometheus text, using the config as written
        assert scrape_as_prometheus(job) > 0, job["job_name"]
    managers = {m["manager"] for m in cm["metadata"]["managedFields"]}
    assert managers == {"sendo-addons/prometheus-scrape"}

    a = poll(lambda: (lambda a: a if healthy(a) else None)(addon(objs, "prometheus-scrape")), timeout=60)
    assert a["status"]["applied"] == [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "kube-system",
                                       "name": "sendo-prometheus-scrape"}]
    table = cluster.kubectl("get", "addons").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "ENABLED", "HEALTHY", "MESSAGE"]
    assert table[1].split()[:3] == ["prometheus-scrape", "true", "True"]

    # a config change re-renders; a new name moves the ConfigMap (the old one is pruned)
    objs.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "prometheus-scrape",
                                     {"spec": {"config": {"scrapeInterval": "5s", "configMapName": "scrape-b"}}})
    cm = poll(lambda: configmap(cluster, "scrape-b"), timeout=60, what="the renamed ConfigMap")
    assert yaml.safe_load(cm["data"]["prometheus.yml"])["global"]["scrape_interval"] == "5s"
    poll(lambda: configmap(cluster, "sendo-prometheus-scrape") is None, timeout=60, what="the old one pruned")

    r = sendo(cluster, "list")
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("prometheus-scrape"))
    assert row[1] == "true"
    r = sendo(cluster, "disable", "prometheus-scrape")
    assert r.returncode == 0, r.stderr
    poll(lambda: names(cluster, "configmaps") == before, timeout=60, what="kube-system as it was")
    a = poll(lambda: (lambda a: a if a["status"]["applied"] == [] else None)(addon(objs, "prometheus-scrape")),
             timeout=60)
    assert "addons.sendo.dev/cleanup" not in (a["metadata"].get("finalizers") or [])
    objs.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "prometheus-scrape")


def test_log_shipping_to_a_file_then_an_endpoint_and_disabling_removes_the_shippers(cluster):
    out = cluster.base / "shipped.jsonl"
    r = sendo(cluster, "enable", "log-shipping", "--set", f"file={out}", "--set", "namespaces=default",
              "--wait", "90")
    assert r.returncode == 0 and "is Healthy" in r.stderr, r.stderr  # its DaemonSet's pod is Ready
    token = f"shipped-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("run", "talker", "--image=unused", "--restart=Never", "--command", "--",
                    "sh", "-c", f"echo {token}; sleep 120")

    def shipped():
        if not out.exists():
            return None
        recs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        return next((r for r in recs if r["line"] == token), None)
    rec = poll(shipped, timeout=90, what="the pod's line in the shipped file")
    assert (rec["namespace"], rec["pod"], rec["container"]) == ("default", "talker", "talker")
    objs = k8s.CustomObjectsApi(cluster.api())
    poll(lambda: healthy(addon(objs, "log-shipping")), timeout=60, what="log-shipping Healthy")
    assert names(cluster, "daemonsets") == {"sendo-log-shipper"}

    # the same add-on switched to an HTTP endpoint (this test's own, on loopback): the
    # DaemonSet is updated and the new shipper posts the pod's lines there
    received: list[bytes] = []

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        objs.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "log-shipping", {"spec": {"config": {
            "file": None, "url": f"http://127.0.0.1:{sink.server_port}/logs"}}})

        def posted():
            recs = [json.loads(line) for body in list(received) for line in body.decode().splitlines()]
            return next((r for r in recs if r["line"] == token and r["pod"] == "talker"), None)
        poll(posted, timeout=90, what="the pod's line posted to the endpoint")
    finally:
        sink.shutdown()

    cluster.kubectl("patch", "addon", "log-shipping", "--type", "merge", "-p", '{"spec":{"enabled":false}}')
    poll(lambda: names(cluster, "daemonsets") == set(), timeout=60, what="the DaemonSet removed")
    poll(lambda: not [p for p in names(cluster, "pods") if p.startswith("sendo-log-shipper")], timeout=90,
         what="the shipper pods gone")
    cluster.kubectl("delete", "pod", "talker", "--wait=false")


def test_local_path_storage_is_switched_off_and_on(cluster):
    assert cluster.kubectl_json("get", "storageclass", "local-path")["provisioner"] == "sendo.io/local-path"
    r = sendo(cluster, "disable", "local-path-storage")
    assert r.returncode == 0, r.stderr
    poll(lambda: cluster.kubectl("get", "storageclass", "local-path", check=False).returncode != 0, timeout=60,
         what="the local-path StorageClass deleted")
    cluster.kubectl("patch", "addon", "local-path-storage", "--type", "merge", "-p", '{"spec":{"enabled":true}}')
    poll(lambda: cluster.kubectl("get", "storageclass", "local-path", check=False).returncode == 0, timeout=60,
         what="the local-path StorageClass back")
    sc = cluster.kubectl_json("get", "storageclass", "local-path")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == "sendo.io/local-path"


def test_a_bad_addon_is_a_422_naming_the_field(cluster):
    objs = k8s.CustomObjectsApi(cluster.api())

    def refused(body: dict) -> dict:
        with pytest.raises(k8s.ApiException) as e:
            objs.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        assert e.value.status == 422
        return json.loads(e.value.body)

    def body(name: str, spec: dict) -> dict:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Addon", "metadata": {"name": name}, "spec": spec}
    status = refused(body("no-such-addon", {}))
    assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"]
    status = refused(body("prometheus-scrape", {"config": {"colour": "red"}}))
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.config.colour"]
    status = refused(body("log-shipping", {"config": {"file": "relative/path"}}))
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.config.file"]
    status = refused(body("dns", {"enabled": False}))
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.enabled"]
    r = cluster.kubectl("create", "-f", "-", check=False, input=yaml.safe_dump(
        body("prometheus-scrape", {"config": {"scrapeInterval": "soon"}})))
    assert r.returncode != 0 and "spec.config.scrapeInterval" in r.stderr
    r = sendo(cluster, "enable", "prometheus-scrape", "--set", "bogus=1")
    assert r.returncode == 1 and "spec.config.bogus" in r.stderr
    assert "no-such-addon" not in cluster.kubectl("get", "addons").stdout  # nothing was written
