"""Workload identity against a real `sendo up`: ServiceAccount tokens made with
`kubectl create token` and used by kubectl, and pods that talk to the API with the
official client's in-cluster config from the token the agent gives them (bound to the
`view` ClusterRole first: a ServiceAccount can do nothing until bound)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import yaml

from .harness import KUBECTL, Cluster, poll, to_yaml

POD_SCRIPT = r"""
import base64, json, os
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader
d = os.environ["SENDO_SERVICEACCOUNT_DIR"]
InClusterConfigLoader(token_filename=os.path.join(d, "token"), cert_filename=os.path.join(d, "ca.crt")).load_and_set()
ns = open(os.path.join(d, "namespace")).read()
body = open(os.path.join(d, "token")).read().split(".")[1]
sub = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]
pods = client.CoreV1Api().list_namespaced_pod(ns)
print(f"as {sub} via {os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}: "
      f"{len(pods.items)} pods in {ns}", flush=True)
"""

ENV_SCRIPT = 'import os; print("dir=" + os.environ.get("SENDO_SERVICEACCOUNT_DIR", "none"), flush=True)'


def wait_for_default_sa(cluster: Cluster, ns: str = "default") -> None:
    poll(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0,
         30, what=f"serviceaccount {ns}/default")


def kubectl_as(cluster: Cluster, kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    env = {**cluster.env(), "KUBECONFIG": kubeconfig}
    return subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=60)


def claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_kubectl_create_token_gives_a_token_kubectl_can_use(cluster: Cluster, tmp_path):
    wait_for_default_sa(cluster)
    # a ServiceAccount can do nothing until bound (RBAC): let it read the namespace
    cluster.kubectl("create", "rolebinding", "default-view", "--clusterrole=view",
                    "--serviceaccount=default:default")
    token = cluster.kubectl("create", "token", "default").stdout.strip()
    c = claims(token)
    assert c["sub"] == "system:serviceaccount:default:default"
    assert c["exp"] - c["iat"] == 3600
    longer = cluster.kubectl("create", "token", "default", "--duration=2h", "--audience=api",
                             "--audience=https://kubernetes.default.svc.cluster.local").stdout.strip()
    assert claims(longer)["exp"] - claims(longer)["iat"] == 7200
    assert claims(longer)["aud"] == ["api", "https://kubernetes.default.svc.cluster.local"]
    short = cluster.kubectl("create", "token", "default", "--duration=1m", check=False)
    assert short.returncode != 0 and "may not specify a duration less than 10 minutes" in short.stderr, short.stderr
    missing = cluster.kubectl("create", "token", "nobody", check=False)
    assert missing.returncode != 0 and 'serviceaccounts "nobody" not found' in missing.stderr, missing.stderr

    # a kubeconfig with nothing but the server and its CA: the token is the only credential
    admin = cluster.kubeconfig_data()
    cluster_entry = admin["clusters"][0]["cluster"]
    fresh = tmp_path / "sa-kubeconfig"
    fresh.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "sendo", "cluster": {"server": cluster_entry["server"],
                                                   "certificate-authority-data":
                                                       cluster_entry["certificate-authority-data"]}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "sa", "context": {"cluster": "sendo", "user": "nobody", "namespace": "default"}}]}))
    ok = kubectl_as(cluster, str(fresh), f"--token={token}", "get", "pods")
    assert ok.returncode == 0, ok.stderr
    assert "No resources found in default namespace." in ok.stderr
    denied = kubectl_as(cluster, str(fresh), "--token=" + token[:-4] + "AAAA", "get", "pods")
    assert denied.returncode != 0 and "Unauthorized" in denied.stderr, denied.stderr
    with_token = tmp_path / "sa-kubeconfig-token"
    cfg = yaml.safe_load(fresh.read_text())
    cfg["users"][0]["user"] = {"token": token}
    with_token.write_text(yaml.safe_dump(cfg))
    assert kubectl_as(cluster, str(with_token), "get", "pods").returncode == 0

    # deleting the ServiceAccount revokes its tokens (the controller makes a new `default`)
    uid = cluster.kubectl_json("get", "serviceaccount", "default")["metadata"]["uid"]
    cluster.kubectl("delete", "serviceaccount", "default")
    gone = kubectl_as(cluster, str(with_token), "get", "pods")
    assert gone.returncode != 0 and "Unauthorized" in gone.stderr, gone.stderr
    poll(lambda: cluster.kubectl_json("get", "serviceaccount", "default")["metadata"]["uid"] != uid
         if cluster.kubectl("get", "serviceaccount", "default", check=False).returncode == 0 else None,
         30, what="the default ServiceAccount to be recreated")


def _pod(name: str, script: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", **spec,
                     "containers": [{"name": "main", "image": "python:3.11",
                                     "command": [sys.executable, "-c", script]}]}}


def _finished_log(cluster: Cluster, name: str) -> str:
    def done():
        phase = cluster.kubectl_json("get", "pod", name).get("status", {}).get("phase")
        assert phase != "Failed", cluster.kubectl("logs", name, check=False).stdout + \
            cluster.kubectl("describe", "pod", name, check=False).stdout
        return phase == "Succeeded"
    poll(done, 60, what=f"pod {name} to succeed")
    return cluster.kubectl("logs", name).stdout


def test_a_pod_lists_pods_with_its_own_token_and_the_official_client(cluster: Cluster):
    wait_for_default_sa(cluster)
    cluster.kubectl("create", "rolebinding", "default-view", "--clusterrole=view",
                    "--serviceaccount=default:default")
    cluster.kubectl("apply", "-f", "-", input=to_yaml(
        _pod("lister", POD_SCRIPT),
        _pod("no-token", ENV_SCRIPT, automountServiceAccountToken=False)))
    out = _finished_log(cluster, "lister")
    server = cluster.kubeconfig_data()["clusters"][0]["cluster"]["server"]
    host_port = server.removeprefix("https://")
    # both pods exist while the lister runs
    assert f"as system:serviceaccount:default:default via {host_port}: 2 pods in default" in out, out
    pod = cluster.kubectl_json("get", "pod", "lister")
    assert pod["spec"]["serviceAccountName"] == "default"
    assert _finished_log(cluster, "no-token").strip() == "dir=none"
