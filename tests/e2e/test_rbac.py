"""RBAC and identities against one real `sendo up`: kubeconfigs made by `sendo user add`
(client certificates), `kubectl auth whoami` / `can-i [--list]` per user, RoleBindings
that open a namespace and nothing else, escalation refused, a pod's ServiceAccount token
refused until bound, the node identity limited to its pods' Secrets, anonymous 401."""
from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from .harness import KUBECTL, REPO, Cluster, poll, to_yaml

SECRETS_SCRIPT = r"""
import os, ssl, time, urllib.request, urllib.error
d = os.environ["SENDO_SERVICEACCOUNT_DIR"]
base = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
def code(ns):
    token = open(os.path.join(d, "token")).read()
    req = urllib.request.Request(base + "/api/v1/namespaces/%s/secrets" % ns, headers={"Authorization": "Bearer " + token})
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
for i in range(600):  # at most ten minutes, then the pod ends
    print("team=%s default=%s" % (code("team"), code("default")), flush=True)
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("rbac"))
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


def run_as(cluster: Cluster, kubeconfig, *args: str) -> subprocess.CompletedProcess:
    env = {**cluster.env(), "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=60)


def add_user(cluster: Cluster, tmp_path, name: str, *groups: str):
    out = tmp_path / f"{name}.kubeconfig"
    args = [sys.executable, "-m", "sendo.cli.main", "user", "add", name, "--data-dir", str(cluster.data_dir),
            "-o", str(out), "--namespace", "team"]
    for g in groups:
        args += ["--group", g]
    r = subprocess.run(args, capture_output=True, text=True, cwd=str(REPO), timeout=60, env=cluster.env())
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    return out


def can_i(cluster: Cluster, kubeconfig, *args: str) -> str:
    r = run_as(cluster, kubeconfig, "auth", "can-i", *args)
    return r.stdout.strip()


def test_users_roles_bindings_and_escalation(cluster: Cluster, tmp_path):
    cluster.kubectl("create", "namespace", "team")
    alice = add_user(cluster, tmp_path, "alice", "devs")
    bob = add_user(cluster, tmp_path, "bob")

    who = json.loads(run_as(cluster, alice, "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "alice"
    assert set(who["status"]["userInfo"]["groups"]) == {"devs", "system:authenticated"}

    # a new user can do nothing: the 403 says who was refused what, as Kubernetes words it
    denied = run_as(cluster, alice, "get", "pods", "-n", "default")
    assert denied.returncode != 0
    assert 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace ' \
           '"default"' in denied.stderr, denied.stderr
    assert can_i(cluster, alice, "list", "pods", "-n", "team") == "no"

    cluster.kubectl("create", "rolebinding", "devs-edit", "--clusterrole=edit", "--group=devs", "-n", "team")
    cluster.kubectl("create", "rolebinding", "bob-admin", "--clusterrole=admin", "--user=bob", "-n", "team")
    assert can_i(cluster, alice, "create", "deployments.apps", "-n", "team") == "yes"
    assert can_i(cluster, alice, "get", "secrets", "-n", "team") == "yes"
    assert can_i(cluster, alice, "create", "deployments.apps", "-n", "default") == "no"
    assert can_i(cluster, alice, "create", "rolebindings", "-n", "team") == "no"
    assert can_i(cluster, bob, "create", "rolebindings", "-n", "team") == "yes"
    assert can_i(cluster, bob, "get", "nodes") == "no"
    listing = run_as(cluster, alice, "auth", "can-i", "--list", "-n", "team").stdout
    assert "deployments.apps" in listing and "selfsubjectaccessreviews.authorization.k8s.io" in listing, listing
    assert run_as(cluster, alice, "create", "configmap", "c1", "--from-literal=a=b", "-n", "team").returncode == 0

    # edit cannot bind anything; admin can bind what it holds, never cluster-admin
    pwn = run_as(cluster, alice, "create", "rolebinding", "pwn", "--clusterrole=cluster-admin", "--user=alice",
                 "-n", "team")
    assert pwn.returncode != 0 and "forbidden" in pwn.stderr, pwn.stderr
    assert run_as(cluster, bob, "create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice",
                  "-n", "team").returncode == 0
    escalate = run_as(cluster, bob, "create", "rolebinding", "pwn", "--clusterrole=cluster-admin", "--user=bob",
                      "-n", "team")
    assert escalate.returncode != 0
    assert "is attempting to grant RBAC permissions not currently held" in escalate.stderr, escalate.stderr
    role = run_as(cluster, bob, "create", "role", "nodes-reader", "--verb=get", "--resource=nodes", "-n", "team")
    assert role.returncode != 0 and "not currently held" in role.stderr, role.stderr
    assert run_as(cluster, bob, "create", "role", "cm-reader", "--verb=get", "--resource=configmaps",
                  "-n", "team").returncode == 0

    # the admin (system:masters) may do anything, and lists everything it may do
    assert cluster.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_a_pods_token_is_refused_until_bound_then_only_in_its_namespace(cluster: Cluster):
    cluster.kubectl("create", "namespace", "team", check=False)
    cluster.kubectl("create", "serviceaccount", "robot", "-n", "team")
    cluster.kubectl("create", "secret", "generic", "s1", "--from-literal=k=v", "-n", "team")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prober", "namespace": "team"},
           "spec": {"serviceAccountName": "robot", "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.11",
                                    "command": [sys.executable, "-c", SECRETS_SCRIPT]}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod))

    def lines() -> list[str]:
        r = cluster.kubectl("logs", "prober", "-n", "team", check=False)
        return r.stdout.splitlines() if r.returncode == 0 else []
    poll(lambda: "team=403 default=403" in lines(), 90, what="the pod's token refused to list secrets")

    token = cluster.kubectl("create", "token", "robot", "-n", "team").stdout.strip()
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "-n", "team", f"--token={token}",
                           check=False).stdout.strip() == "no"
    cluster.kubectl("create", "role", "secret-lister", "--verb=list", "--resource=secrets", "-n", "team")
    cluster.kubectl("create", "rolebinding", "robot-secrets", "--role=secret-lister",
                    "--serviceaccount=team:robot", "-n", "team")
    poll(lambda: "team=200 default=403" in lines(), 60, what="the pod's token allowed in team only")
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "-n", "team", f"--token={token}",
                           check=False).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "-n", "default", f"--token={token}",
                           check=False).stdout.strip() == "no"
    cluster.kubectl("delete", "pod", "prober", "-n", "team", "--wait=false")


def _node_client(cluster: Cluster, node: str):
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{cluster.port}"
    cfg.ssl_ca_cert = str(cluster.data_dir / "server" / "tls" / "ca.crt")
    cfg.api_key = {"authorization": (cluster.data_dir / "server" / "node-token").read_text().strip()}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    api = client.ApiClient(cfg)
    api.set_default_header("X-Sendo-Node", node)
    cluster._clients.append(api)
    return client.CoreV1Api(api)


def test_an_agent_reads_only_the_secrets_its_pods_use(cluster: Cluster):
    from kubernetes.client.rest import ApiException
    node = cluster.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    cluster.kubectl("create", "secret", "generic", "used", "--from-literal=k=v")
    cluster.kubectl("create", "secret", "generic", "unused", "--from-literal=k=v")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user-of-secret"},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "main", "image": "python:3.11", "command": [sys.executable, "-c", "print('ok')"],
               "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod))
    poll(lambda: cluster.kubectl_json("get", "pod", "user-of-secret").get("status", {}).get("phase") == "Succeeded",
         90, what="the pod using the secret to run")
    mine = _node_client(cluster, node)
    assert mine.read_namespaced_secret("used", "default").data["k"]
    with pytest.raises(ApiException) as e:
        mine.read_namespaced_secret("unused", "default")
    assert e.value.status == 403
    assert f'User "system:node:{node}" cannot get resource "secrets"' in json.loads(e.value.body)["message"]
    other = _node_client(cluster, "some-other-node")
    with pytest.raises(ApiException) as e:
        other.read_namespaced_secret("used", "default")
    assert e.value.status == 403
    with pytest.raises(ApiException) as e:  # a node writes only its own Node
        other.patch_node(node, {"metadata": {"labels": {"x": "y"}}})
    assert e.value.status == 403
    assert mine.read_node(node).metadata.name == node


def test_anonymous_requests_are_refused_except_public_endpoints(cluster: Cluster):
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "server" / "tls" / "ca.crt"))
    base = f"https://127.0.0.1:{cluster.port}"

    def status(path: str) -> int:
        try:
            return urllib.request.urlopen(base + path, context=ctx, timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code
    assert status("/version") == 200 and status("/healthz") == 200 and status("/readyz") == 200
    assert status("/api/v1/namespaces/default/pods") == 401
    assert status("/apis") == 401
