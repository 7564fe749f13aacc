"""README's walkthrough (a database, its nightly backup, live configuration and a node
drain), step by step on one `sendo up`, with the real kubectl and exactly the manifests
of examples/walkthrough/ — which the README shows, so the two cannot drift apart.

The tests of this module run in order on one cluster, as a newcomer runs the steps:
the StatefulSet database keeps its rows when its pod is deleted; the backup CronJob,
started by `kubectl create job --from`, saves them to its own claim; a new version of
the mounted settings ConfigMap reaches the running pod and changes what it does; and a
second agent on this machine is drained while a PodDisruptionBudget refuses one eviction
until a replacement is Ready, then allows it. Then the "watch it scale" walkthrough:
examples/autoscale.yaml scales up under its load pod, and every target of the README's
Prometheus configs (the hand-written one and the prometheus-scrape add-on's) answers with
metrics prometheus_client's parser reads. (The console itself is driven in Chromium by
test_console.py; HPA scale-down by test_metrics.py.)
"""
from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .harness import REPO, Agent, Cluster, is_ready, poll, shared_cluster

EXAMPLES = REPO / "examples" / "walkthrough"
README = REPO / "README.md"
DB_PORT = 5432  # as in examples/walkthrough/db.yaml
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod IPs are loopback: no proxy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # usage sampled every second and HPAs synced every second, for the autoscaling walkthrough
    with shared_cluster(tmp_path_factory.mktemp("walkthrough"),
                        ("--metrics-interval", "1", "--hpa-sync-period", "1")) as c:
        yield c


@pytest.fixture(scope="module")
def n2(cluster: Cluster):
    """The README's `sendo agent … --node-name n2` on this machine. Its data directory is
    under the cluster's, so the harness's clean-up finds its pods (--stop-pods stops them)."""
    agent = Agent(cluster, "--node-name", "n2", "--data-dir", str(cluster.data_dir / "n2"), "--no-service-proxy",
                  "--no-ingress", "--stop-pods", log=cluster.base / "agent-n2.log")
    try:
        yield agent
    finally:
        agent.stop()


def node_ready(cluster: Cluster, name: str) -> bool:
    r = cluster.kubectl("get", "node", name, "-o", "json", check=False)
    return r.returncode == 0 and any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in (json.loads(r.stdout).get("status") or {}).get("conditions", []))


def documents(name: str) -> list[str]:
    return (REPO / "examples" / name).read_text().rstrip("\n").split("\n---\n")


def indented(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def test_the_readme_shows_the_manifests_the_walkthroughs_apply():
    readme = README.read_text()
    for name in ("walkthrough/db.yaml", "walkthrough/db-backup.yaml", "walkthrough/db-settings-read-only.yaml",
                 "walkthrough/web.yaml", "autoscale.yaml", "autoscale-load.yaml"):
        assert f"kubectl apply -f examples/{name}" in readme, name
        for doc in documents(name):
            if "name: db-server}" in doc:  # the database's code: the README describes it in words
                continue
            assert indented(doc) in readme, f"README.md does not show this part of {name}:\n{doc}"


def apply(cluster: Cluster, name: str, examples: Path = EXAMPLES) -> str:
    return cluster.kubectl("apply", "-f", str(examples / name)).stdout


def request(method: str, ip: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{ip}:{DB_PORT}{path}", data=body, method=method)
    try:
        with _opener.open(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def db_pod(cluster: Cluster) -> dict:
    """db-0 once it is Ready (a new one after a delete)."""
    def ready():
        r = cluster.kubectl("get", "pod", "db-0", "-o", "json", check=False)
        pod = json.loads(r.stdout) if r.returncode == 0 else None
        return pod if pod and is_ready(pod) and not pod["metadata"].get("deletionTimestamp") else None
    return poll(ready, timeout=90, what="db-0 Ready")


def test_the_database_keeps_its_rows_when_its_pod_is_deleted(cluster: Cluster):
    out = apply(cluster, "db.yaml")
    assert "statefulset.apps/db created" in out, out
    cluster.kubectl("rollout", "status", "sts/db", "--timeout=90s", timeout=120)
    first = db_pod(cluster)
    claim = cluster.kubectl_json("get", "pvc", "data-db-0")
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "local-path"
    ip = first["status"]["podIP"]
    assert request("PUT", ip, "/user1", b"Ada Lovelace") == (201, "stored\n")
    assert request("GET", ip, "/user1") == (200, "Ada Lovelace")

    cluster.kubectl("delete", "pod", "db-0", timeout=90)
    second = poll(lambda: (lambda p: p if p["metadata"]["uid"] != first["metadata"]["uid"] else None)(
        db_pod(cluster)), timeout=90, what="a new db-0")
    assert second["spec"]["volumes"][-1]["persistentVolumeClaim"] == {"claimName": "data-db-0"}
    assert request("GET", second["status"]["podIP"], "/") == (200, '{"user1": "Ada Lovelace"}\n')
    # kubectl exec sees the pod's volumes at their mountPath, as the pod's own process does
    out = cluster.kubectl("exec", "db-0", "--", "cat", "/data/db.json").stdout
    assert json.loads(out) == {"user1": "Ada Lovelace"}


def volume_path(cluster: Cluster, claim: str) -> Path:
    pv = cluster.kubectl("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}").stdout
    return Path(cluster.kubectl("get", "pv", pv, "-o", "jsonpath={.spec.hostPath.path}").stdout)


def test_the_backup_cronjob_saves_every_row_to_its_claim(cluster: Cluster):
    apply(cluster, "db-backup.yaml")
    cron = cluster.kubectl_json("get", "cronjob", "db-backup")
    assert cron["spec"]["schedule"] == "0 3 * * *" and not cron["spec"]["suspend"]
    cluster.kubectl("create", "job", "backup-now", "--from=cronjob/db-backup")
    cluster.kubectl("wait", "--for=condition=complete", "job/backup-now", "--timeout=90s", timeout=120)
    log = cluster.kubectl("logs", "job/backup-now").stdout
    assert log.startswith("saved 26 bytes to /backups/db-"), log
    saved = [json.loads(p.read_text()) for p in volume_path(cluster, "db-backups").glob("db-*.json")]
    assert saved == [{"user1": "Ada Lovelace"}]


def test_a_new_version_of_the_mounted_settings_reaches_the_running_database(cluster: Cluster, n2: Agent):
    # n2 (step 4 of the README) starts joining now, to save the drain test its wait
    before = db_pod(cluster)
    ip = before["status"]["podIP"]
    assert request("PUT", ip, "/user2", b"Grace Hopper")[0] == 201
    apply(cluster, "db-settings-read-only.yaml")
    poll(lambda: json.loads(cluster.kubectl("exec", "db-0", "--", "cat", "/config/settings.json").stdout)
         == {"readOnly": True}, timeout=30, what="the new settings in the pod")
    assert request("PUT", ip, "/user3", b"x") == (403, "read-only\n")
    after = db_pod(cluster)  # the same pod, not restarted
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


def test_drain_moves_web_to_the_other_node_without_breaking_its_budget(cluster: Cluster, n2: Agent):
    first_node = socket.gethostname()  # the README cordons $(hostname)
    poll(lambda: node_ready(cluster, "n2"), timeout=60, what="node n2 Ready")
    assert sorted(n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"]) == \
        sorted([first_node, "n2"])
    db_uid = db_pod(cluster)["metadata"]["uid"]
    cluster.kubectl("cordon", first_node)
    apply(cluster, "web.yaml")
    cluster.kubectl("rollout", "status", "deploy/web", "--timeout=90s", timeout=120)
    cluster.kubectl("uncordon", first_node)
    web = cluster.kubectl_json("get", "pods", "-l", "app=web")["items"]
    assert sorted(p["spec"]["nodeName"] for p in web) == ["n2", "n2"]
    poll(lambda: cluster.kubectl_json("get", "pdb", "web")["status"].get("disruptionsAllowed") == 1,
         timeout=30, what="the budget to allow one disruption")

    r = cluster.kubectl("drain", "n2", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s",
                        timeout=150)
    out = r.stdout + r.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget." in out, out
    assert "node/n2 drained" in out, out
    web = [p for p in cluster.kubectl_json("get", "pods", "-l", "app=web")["items"]
           if not p["metadata"].get("deletionTimestamp")]
    assert [p["spec"]["nodeName"] for p in web] == [first_node] * 2
    assert db_pod(cluster)["metadata"]["uid"] == db_uid  # the database was not touched
    cluster.kubectl("uncordon", "n2")


# ---------------------------------------------------------------- see and scale (#13)

def test_busy_scales_up_under_load_and_its_pods_log_each_request(cluster: Cluster):
    """examples/autoscale.yaml and its load pod, as the README's walkthrough applies them."""
    apply(cluster, "autoscale.yaml", REPO / "examples")
    cluster.kubectl("rollout", "status", "deploy/busy", "--timeout=90s", timeout=120)
    poll(lambda: "cpu: " in cluster.kubectl("get", "hpa", "busy", "--no-headers").stdout and "<unknown>" not in
         cluster.kubectl("get", "hpa", "busy", "--no-headers").stdout, timeout=60, what="the HPA's first CPU figure")
    apply(cluster, "autoscale-load.yaml", REPO / "examples")
    try:
        poll(lambda: (cluster.kubectl_json("get", "deploy", "busy")["status"].get("readyReplicas") or 0) >= 2,
             timeout=120, what="busy scaled up and a new replica Ready")
        events = cluster.kubectl_json("get", "events", "--field-selector", "reason=SuccessfulRescale")["items"]
        assert any(e["involvedObject"]["name"] == "busy" for e in events), events
        logs = cluster.kubectl("logs", "-l", "app=busy", "--tail=20").stdout
        assert '"GET / HTTP/1.1" 200' in logs, logs
    finally:
        cluster.kubectl("delete", "pod", "load", "--wait=false", check=False)


def scraped(url: str, token_file: str | None = None, ca_file: str | None = None) -> list:
    """The sample names of one target, read as Prometheus would: its bearer token file,
    its CA, and prometheus_client's parser."""
    handlers: list = [urllib.request.ProxyHandler({})]
    if ca_file:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    headers = {"Authorization": "Bearer " + Path(token_file).read_text().strip()} if token_file else {}
    with urllib.request.build_opener(*handlers).open(urllib.request.Request(url, headers=headers), timeout=10) as r:
        text = r.read().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


EXPECTED = {  # a metric each component's /metrics must have, by the README's job names
    "sendo-apiserver": "apiserver_request_total",
    "sendo-controllers": "workqueue_adds_total",
    "sendo-agent": "kubelet_running_pods",
    "sendo-agent-resource": "node_cpu_usage_seconds_total",
}


def scrape_all(config: dict) -> dict[str, list[str]]:
    """Every target of a Prometheus config, scraped; job -> targets that answered. The
    agents' /metrics must show the service proxy's connections to `busy` (from the load
    pod of the autoscaling test) on the node that runs the proxy."""
    seen: dict[str, list[str]] = {}
    proxied, synced = 0.0, 0.0
    for job in config["scrape_configs"]:
        auth, tls = job.get("authorization") or {}, job.get("tls_config") or {}
        for group in job["static_configs"]:
            for target in group["targets"]:
                url = f"{job.get('scheme', 'http')}://{target}{job.get('metrics_path', '/metrics')}"
                samples = scraped(url, auth.get("credentials_file"), tls.get("ca_file"))
                names = {s.name for s in samples}
                assert EXPECTED[job["job_name"]] in names, (url, sorted(names)[:20])
                seen.setdefault(job["job_name"], []).append(target)
                if job["job_name"] == "sendo-agent":  # n2 runs no service proxy (--no-service-proxy)
                    proxied += sum(s.value for s in samples if s.name == "sendo_proxy_connections_total" and s.labels
                                   == {"service": "default/busy", "protocol": "TCP", "result": "forwarded"})
                    synced = max([synced, *(s.value for s in samples
                                            if s.name == "kubeproxy_sync_proxy_rules_last_timestamp_seconds")])
    assert proxied > 0, "no agent counted the load's connections to the busy Service"
    assert synced > 0, "no agent said when its service proxy last synced"
    return seen


def test_the_readme_prometheus_configs_reach_every_component(cluster: Cluster, n2: Agent):
    data = str(cluster.data_dir)
    # the hand-written config of "Metrics, autoscaling and health", with the ports sendo up printed
    readme = README.read_text()
    start = readme.index("    scrape_configs:", readme.index("A Prometheus scrape config for a `sendo up`"))
    hand = readme[start:readme.index("\n\n", start)]
    ctl_port, agent_port = re.findall(r"controllers\s+http://127\.0\.0\.1:(\d+)/metrics, agent\s+"
                                      r"http://127\.0\.0\.1:(\d+)/metrics", cluster.log_path.read_text())[-1]
    hand = (hand.replace("/root/.sendo", data).replace("127.0.0.1:6443", f"127.0.0.1:{cluster.port}")
            .replace("AGENT_PORT", agent_port).replace("CONTROLLERS_PORT", ctl_port))
    seen = scrape_all(yaml.safe_load("\n".join(line[4:] for line in hand.split("\n"))))
    assert sorted(seen) == ["sendo-agent", "sendo-apiserver", "sendo-controllers"], seen

    # the prometheus-scrape add-on's file, made as the README says (its paths in this data dir)
    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "addons", "enable", "prometheus-scrape",
                        "--set", f"caFile={data}/server/tls/ca.crt", "--set", f"apiTokenFile={data}/server/admin-token",
                        "--set", f"nodeTokenFile={data}/server/node-token", "--wait", "60"],
                       capture_output=True, text=True, env=cluster.env(), cwd=str(REPO), timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    generated = cluster.kubectl("get", "configmap", "-n", "kube-system", "sendo-prometheus-scrape",
                                "-o", "jsonpath={.data.prometheus\\.yml}").stdout
    seen = scrape_all(yaml.safe_load(generated))
    assert sorted(seen) == sorted(EXPECTED), seen
    assert len(seen["sendo-agent"]) == len(seen["sendo-agent-resource"]) == 2  # both nodes' agents
