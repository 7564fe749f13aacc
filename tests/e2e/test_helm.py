"""helm 4 (the real binary, see tools.py) against sendo: install a local chart, list,
upgrade, history, rollback, uninstall — each step checked through kubectl and against
the pod processes on this machine.

helm 4 writes objects with server-side apply by default, stores each release revision
as a Secret (`sh.helm.release.v1.<name>.v<N>`, sent as protobuf), and `--wait` watches
the objects until kstatus calls them Current."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .harness import Cluster, poll, ready_pods, unique_port
from .tools import helm_binary

CHART = Path(__file__).resolve().parent / "charts" / "web"
SEL = "app.kubernetes.io/instance=web"


def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run helm with the cluster's kubeconfig and HOME/XDG dirs of this test's own."""
    root = cluster.base / "helm"
    env = cluster.env()
    env.update(XDG_CACHE_HOME=str(root / "cache"), XDG_CONFIG_HOME=str(root / "config"),
               XDG_DATA_HOME=str(root / "data"), HELM_NAMESPACE="default")
    r = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=env, timeout=timeout,
                       cwd=str(cluster.base))
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def _web_processes(cluster: Cluster, port: int):
    return cluster.pod_processes(cmdline_contains=f"http.server {port}")


def _release_secrets(cluster: Cluster) -> list[str]:
    items = cluster.kubectl_json("get", "secrets", "-l", "owner=helm,name=web")["items"]
    return sorted(s["metadata"]["name"] for s in items)


def _check_release(cluster: Cluster, port: int, replicas: int, greeting: str) -> None:
    """The Deployment, its pods (Running, answering on their pod IPs), the ConfigMap
    and the Service are what the chart says for these values."""
    dep = cluster.kubectl_json("get", "deploy", "web")
    assert dep["spec"]["replicas"] == replicas
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert dep["metadata"]["annotations"]["meta.helm.sh/release-name"] == "web"
    st = dep["status"]
    assert st.get("readyReplicas") == replicas and st.get("updatedReplicas") == replicas, st
    items = poll(lambda: ready_pods(cluster, SEL, replicas, port), 60,
                 what=f"{replicas} web pods Running and answering")
    assert len({p["status"]["podIP"] for p in items}) == replicas
    poll(lambda: len(_web_processes(cluster, port)) == replicas, 30, what=f"{replicas} web processes")
    cm = cluster.kubectl_json("get", "configmap", "web-config")
    assert cm["data"] == {"greeting": greeting, "port": str(port)}
    svc = cluster.kubectl_json("get", "service", "web")
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == "http"


def test_helm_install_upgrade_rollback_uninstall(cluster: Cluster):
    port = unique_port()
    assert helm(cluster, "version", "--short").stdout.startswith("v4."), "expected helm 4"

    # --- install: helm waits until the Deployment is ready
    r = helm(cluster, "install", "web", str(CHART), "--set", f"port={port}", "--wait", "--timeout", "60s")
    assert "STATUS: deployed" in r.stdout, r.stdout
    _check_release(cluster, port, replicas=2, greeting="hello")
    (proc, *_) = _web_processes(cluster, port)
    assert proc.environ().get("GREETING") == "hello"  # configMapKeyRef resolved by the agent
    # helm 4 applies server-side: the objects' managed fields name helm's field manager
    dep = cluster.kubectl_json("get", "deploy", "web", "--show-managed-fields")
    managers = {(m.get("manager"), m.get("operation")) for m in dep["metadata"].get("managedFields") or []}
    assert any(m and "helm" in m for m, _ in managers), managers
    assert _release_secrets(cluster) == ["sh.helm.release.v1.web.v1"]

    listed = json.loads(helm(cluster, "list", "-o", "json").stdout)
    assert [(x["name"], x["namespace"], str(x["revision"]), x["status"], x["chart"]) for x in listed] == [
        ("web", "default", "1", "deployed", "web-0.1.0")]

    # --- upgrade: three replicas and a new greeting
    helm(cluster, "upgrade", "web", str(CHART), "--set", f"port={port}", "--set", "replicaCount=3",
         "--set", "greeting=hi", "--wait", "--timeout", "60s")
    _check_release(cluster, port, replicas=3, greeting="hi")
    listed = json.loads(helm(cluster, "list", "-o", "json").stdout)
    assert [(x["name"], str(x["revision"]), x["status"]) for x in listed] == [("web", "2", "deployed")]

    hist = json.loads(helm(cluster, "history", "web", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in hist] == [(1, "superseded"), (2, "deployed")], hist
    assert _release_secrets(cluster) == ["sh.helm.release.v1.web.v1", "sh.helm.release.v1.web.v2"]

    # --- rollback to revision 1: two replicas, the first greeting, a third revision
    r = helm(cluster, "rollback", "web", "1", "--wait", "--timeout", "60s")
    assert "Rollback was a success" in r.stdout, r.stdout
    poll(lambda: ready_pods(cluster, SEL, 2, port), 60, what="2 web pods after the rollback")
    _check_release(cluster, port, replicas=2, greeting="hello")
    poll(lambda: len(_web_processes(cluster, port)) == 2, 30, what="two web processes after the rollback")
    hist = json.loads(helm(cluster, "history", "web", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in hist] == [(1, "superseded"), (2, "superseded"),
                                                           (3, "deployed")], hist
    assert "Rollback to 1" in hist[-1]["description"]

    # --- uninstall: every object of the release goes, and so do its pods and processes
    r = helm(cluster, "uninstall", "web", "--wait", "--timeout", "60s")
    assert 'release "web" uninstalled' in r.stdout, r.stdout
    for kind, name in (("deploy", "web"), ("configmap", "web-config"), ("service", "web")):
        r = cluster.kubectl("get", kind, name, check=False)
        assert r.returncode != 0 and "NotFound" in r.stderr, (kind, r.stdout, r.stderr)
    poll(lambda: not cluster.kubectl_json("get", "rs,pods", "-l", SEL)["items"], 60,
         what="the release's ReplicaSets and pods deleted")
    poll(lambda: not _web_processes(cluster, port), 30, what="web processes stopped")
    assert _release_secrets(cluster) == []
    assert json.loads(helm(cluster, "list", "-o", "json").stdout) == []
    r = helm(cluster, "status", "web", check=False)
    assert r.returncode != 0 and "not found" in r.stderr
