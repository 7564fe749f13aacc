"""README's walkthrough (a database, its nightly backup, live configuration and a node
drain), step by step on one `sendo up`, with the real kubectl and exactly the manifests
of examples/walkthrough/ — which the README shows, so the two cannot drift apart.

The tests of this module run in order on one cluster, as a newcomer runs the steps:
the StatefulSet database keeps its rows when its pod is deleted; the backup CronJob,
started by `kubectl create job --from`, saves them to its own claim; a new version of
the mounted settings ConfigMap reaches the running pod and changes what it does; and a
second agent on this machine is drained while a PodDisruptionBudget refuses one eviction
until a replacement is Ready, then allows it.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .harness import REPO, Agent, Cluster, is_ready, poll, shared_cluster

EXAMPLES = REPO / "examples" / "walkthrough"
README = REPO / "README.md"
DB_PORT = 5432  # as in examples/walkthrough/db.yaml
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod IPs are loopback: no proxy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("walkthrough")) as c:
        yield c


def documents(name: str) -> list[str]:
    return (EXAMPLES / name).read_text().rstrip("\n").split("\n---\n")


def indented(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def test_the_readme_shows_the_manifests_the_walkthrough_applies():
    readme = README.read_text()
    for name in ("db.yaml", "db-backup.yaml", "db-settings-read-only.yaml", "web.yaml"):
        assert f"kubectl apply -f examples/walkthrough/{name}" in readme, name
        for doc in documents(name):
            if "name: db-server}" in doc:  # the database's code: the README describes it in words
                continue
            assert indented(doc) in readme, f"README.md does not show this part of {name}:\n{doc}"


def apply(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("apply", "-f", str(EXAMPLES / name)).stdout


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
        pod = cluster.kubectl_json("get", "pod", "db-0") if cluster.kubectl(
            "get", "pod", "db-0", check=False).returncode == 0 else None
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


def test_a_new_version_of_the_mounted_settings_reaches_the_running_database(cluster: Cluster):
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


def second_agent(cluster: Cluster) -> Agent:
    """The README's `sendo agent … --node-name n2` on this machine. Its data directory is
    under the cluster's, so the harness's clean-up finds its pods (--stop-pods stops them)."""
    return Agent(cluster, "--node-name", "n2", "--data-dir", str(cluster.data_dir / "n2"), "--no-service-proxy",
                 "--no-ingress", "--stop-pods", log=cluster.base / "agent-n2.log")


def test_drain_moves_web_to_the_other_node_without_breaking_its_budget(cluster: Cluster):
    first_node = socket.gethostname()  # the README cordons $(hostname)
    assert [n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"]] == [first_node]
    db_uid = db_pod(cluster)["metadata"]["uid"]
    agent = second_agent(cluster)
    try:
        poll(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                         cluster.kubectl_json("get", "node", "n2")["status"].get("conditions", []))
             if cluster.kubectl("get", "node", "n2", check=False).returncode == 0 else False,
             timeout=60, what="node n2 Ready")
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
    finally:
        agent.stop()
