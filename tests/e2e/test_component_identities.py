"""sendo's own scheduler and control loops act as least-privilege identities (client
certificates in DATA_DIR/server/components), checked against one real `sendo up` with the
real kubectl and the official Python client: a workload runs end to end with no request of
theirs refused; their identities are refused what their roles do not hold, and the refusal
names them; and the "Done when" of the security issue: a second team's kubeconfig limited
to one namespace with a quota (`sendo user add --namespace --role`), and an audit log that
shows who changed what."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from .harness import KUBECTL, REPO, Cluster, poll, ready_pods, shared_cluster, to_yaml, unique_port, web_deployment

REFUSED = "refused a cluster component"
POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
          "rules": [{"level": "None", "verbs": ["get", "list", "watch"]}, {"level": "Metadata"}]}  # writes only


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("components")
    (d / "policy.yaml").write_text(json.dumps(POLICY))
    with shared_cluster(d / "cluster", ("--audit-policy-file", str(d / "policy.yaml"),
                                        "--audit-log-path", str(d / "audit.log"))) as c:
        c.audit_log = d / "audit.log"
        yield c


def component_kubeconfig(cluster: Cluster, name: str) -> str:
    """A kubeconfig that presents one component's client certificate (what its loops use)."""
    comp = cluster.data_dir / "server" / "components"
    admin = cluster.kubeconfig_data()
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": name, "clusters": admin["clusters"],
           "users": [{"name": name, "user": {"client-certificate-data": b64(comp / f"{name}.crt"),
                                             "client-key-data": b64(comp / f"{name}.key")}}],
           "contexts": [{"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}]}
    path = cluster.base / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run_as(cluster: Cluster, kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, timeout=60,
                          env={**cluster.env(), "KUBECONFIG": kubeconfig})


def refusals(cluster: Cluster) -> list[str]:
    return [line for line in cluster.log_path.read_text(errors="replace").splitlines() if REFUSED in line]


def test_a_workload_runs_with_no_request_of_the_components_refused(cluster: Cluster):
    port = unique_port()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo done"]}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "idweb"},
           "spec": {"selector": {"app": "idweb"}, "ports": [{"port": port, "targetPort": port}]}}
    extra = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
             "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("idweb", port, replicas=2), svc, job, extra))
    # the aggregation loop (verb escalate, no more) folds the labelled role into view
    poll(lambda: any("widgets" in r.get("resources", []) for r in cluster.kubectl_json(
        "get", "clusterrole", "view").get("rules") or []), 60, what="widgets aggregated into view")
    # scheduler (bind), deployment → replicaset → pods, endpoints, job: each under its own identity
    running = poll(lambda: ready_pods(cluster, "app=idweb", 2), 120, what="2 idweb pods Running and Ready")
    ips = sorted(p["status"]["podIP"] for p in running)
    poll(lambda: sorted(a["ip"] for s in cluster.kubectl_json("get", "endpoints", "idweb").get("subsets") or []
                        for a in s.get("addresses") or []) == ips, 60, what="the service's endpoints")
    poll(lambda: (cluster.kubectl_json("get", "job", "once").get("status") or {}).get("succeeded") == 1, 120,
         what="the Job to complete")
    # the garbage collector takes what the Deployment owned
    cluster.kubectl("delete", "deployment", "idweb", "--cascade=foreground", "--wait=false")
    poll(lambda: not cluster.kubectl_json("get", "rs,pods", "-l", "app=idweb")["items"], 120,
         what="the ReplicaSet and pods deleted in cascade")
    assert refusals(cluster) == []
    controllers_log = (cluster.data_dir / "server" / "controllers.log").read_text(errors="replace")
    assert [line for line in controllers_log.splitlines() if "403" in line and 'User "' in line] == []
    # the writes were made by the loops' own identities, as the audit log shows
    writers: dict[tuple[str, str], set[str]] = {}
    for line in cluster.audit_log.read_text().splitlines():
        e = json.loads(line)
        ref = e.get("objectRef") or {}
        key = (e["verb"], ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else ""))
        writers.setdefault(key, set()).add(e["user"]["username"])
    sa = "system:serviceaccount:kube-system:"
    assert writers[("create", "pods")] == {sa + "replicaset-controller", sa + "job-controller"}, writers
    assert writers[("create", "pods/binding")] == {"system:kube-scheduler"}, writers
    assert writers[("create", "replicasets")] == {sa + "deployment-controller"}, writers
    assert sa + "generic-garbage-collector" in writers[("delete", "replicasets")], writers


def test_the_scheduler_identity_holds_its_role_and_no_more(cluster: Cluster):
    kc = component_kubeconfig(cluster, "kube-scheduler")
    assert run_as(cluster, kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout == \
        "system:kube-scheduler"
    yes = run_as(cluster, kc, "auth", "can-i", "create", "pods", "--subresource=binding", "-n", "default")
    assert yes.returncode == 0 and yes.stdout.strip() == "yes", yes
    for args in (["get", "secrets"], ["list", "configmaps"], ["delete", "pods"], ["create", "deployments"]):
        no = run_as(cluster, kc, "auth", "can-i", *args, "-n", "default")
        assert no.returncode == 1 and no.stdout.strip() == "no", (args, no)
    got = run_as(cluster, kc, "get", "secrets", "-n", "kube-system")
    assert got.returncode != 0 and 'User "system:kube-scheduler" cannot list resource "secrets"' in got.stderr


def test_a_refused_controller_request_names_its_identity(cluster: Cluster):
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    cfg = client.Configuration()
    config.load_kube_config(config_file=component_kubeconfig(cluster, "deployment-controller"),
                            client_configuration=cfg)
    api = client.ApiClient(cfg)
    try:
        apps = client.AppsV1Api(api)
        assert isinstance(apps.list_namespaced_deployment("default").items, list)  # its own kind: allowed
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(api).create_namespaced_pod("default", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    finally:
        api.close()
    assert e.value.status == 403
    who = "system:serviceaccount:kube-system:deployment-controller"
    assert f'User "{who}" cannot create resource "pods"' in json.loads(e.value.body)["message"]
    poll(lambda: any(who in line and '"pods"' in line for line in refusals(cluster)), 30,
         what="the server's log line naming the refused component")


def add_user(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sendo.cli.main", "user", "add", *args,
                           "--data-dir", str(cluster.data_dir)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=60, env=cluster.env())


def test_a_second_team_gets_one_namespace_with_a_quota_and_the_audit_shows_who(cluster: Cluster):
    cluster.kubectl("create", "namespace", "team-b")
    cluster.kubectl("create", "quota", "team-b-pods", "--hard=pods=1", "-n", "team-b")
    out = cluster.base / "bob.kubeconfig"
    refused = add_user(cluster, "bob", "--namespace", "team-b", "--role", "no-such-role", "-o", str(out))
    assert refused.returncode == 2 and "no ClusterRole 'no-such-role'" in refused.stderr and not out.exists()
    r = add_user(cluster, "bob", "--namespace", "team-b", "--role", "edit", "-o", str(out))
    assert r.returncode == 0, r.stderr
    bob = str(out)
    binding = cluster.kubectl_json("get", "rolebinding", "bob-edit", "-n", "team-b")
    assert binding["roleRef"]["name"] == "edit"
    assert run_as(cluster, bob, "auth", "can-i", "create", "deployments").stdout.strip() == "yes"  # its namespace
    for args in (["create", "deployments", "-n", "default"], ["list", "secrets", "-A"],
                 ["create", "rolebindings"], ["delete", "resourcequotas"]):
        assert run_as(cluster, bob, "auth", "can-i", *args).stdout.strip() == "no", args
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"]}]}}
    first = subprocess.run([str(KUBECTL), "create", "-f", "-"], input=to_yaml(pod), capture_output=True, text=True,
                           timeout=60, env={**cluster.env(), "KUBECONFIG": bob})
    assert first.returncode == 0, first.stderr
    pod["metadata"]["name"] = "p2"
    second = subprocess.run([str(KUBECTL), "create", "-f", "-"], input=to_yaml(pod), capture_output=True,
                            text=True, timeout=60, env={**cluster.env(), "KUBECONFIG": bob})
    assert second.returncode != 0 and "exceeded quota: team-b-pods" in second.stderr, second.stderr
    # an auditor sees who created what
    def bobs_create():
        for line in cluster.audit_log.read_text().splitlines():
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if e["user"]["username"] == "bob" and e["verb"] == "create" and ref.get("name") == "p1":
                return e
        return None
    e = poll(bobs_create, 30, what="bob's create in the audit log")
    assert e["objectRef"]["namespace"] == "team-b" and e["responseStatus"]["code"] == 201
