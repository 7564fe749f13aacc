"""The kubectl verbs people use daily, through the real kubectl binary, against one
`sendo up` shared by this module (each test works on objects, ports and namespaces of
its own, so the tests stay independent).

Every test asserts what a real Kubernetes API server makes kubectl print and do."""
from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest
import yaml

from .harness import (KUBECTL, REPO, Cluster, LineReader, is_ready, poll, pods, ready_pods, shared_cluster, to_yaml,
                      unique_port, web_deployment)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One sendo up for the whole module (the harness's Cluster, module scope)."""
    with shared_cluster(tmp_path_factory.mktemp("verbs")) as c:
        yield c


@pytest.fixture(autouse=True)
def _alive(cluster: Cluster):
    assert cluster.proc is not None and cluster.proc.poll() is None, \
        "sendo up is no longer running:\n" + cluster.log_tail()
    yield


def apply(cluster: Cluster, *objs: dict, args: tuple[str, ...] = ()) -> str:
    return cluster.kubectl("apply", *args, "-f", "-", input=to_yaml(*objs)).stdout


def deploy(cluster: Cluster, name: str, replicas: int = 1, ns: str | None = None) -> int:
    """Apply a hello-web style Deployment on a port of its own and wait until its pods run."""
    port = unique_port()
    d = web_deployment(name, port, replicas=replicas)
    if ns:
        d["metadata"]["namespace"] = ns
    assert f"deployment.apps/{name} created" in apply(cluster, d)
    if not ns:
        poll(lambda: ready_pods(cluster, f"app={name}", replicas, port), 60,
             what=f"{replicas} pods of {name} Running and answering")
    return port


def configmap(name: str, data: dict[str, str], **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data}


def not_found(cluster: Cluster, *args: str) -> bool:
    r = cluster.kubectl("get", *args, check=False)
    return r.returncode != 0 and "NotFound" in r.stderr


# ------------------------------------------------------------------------------ apply

def test_apply_client_side_and_server_side(cluster: Cluster):
    port = unique_port()
    d = web_deployment("applied", port, replicas=1)
    assert "deployment.apps/applied created" in apply(cluster, d)
    assert "deployment.apps/applied unchanged" in apply(cluster, d)
    got = cluster.kubectl_json("get", "deploy", "applied")
    last = json.loads(got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 1 and last["metadata"]["name"] == "applied"
    # a field dropped from the manifest is removed (three-way merge with last-applied)
    d2 = web_deployment("applied", port, replicas=1, env={"MODE": "a"})
    d2["metadata"]["labels"] = {"app": "applied", "extra": "yes"}  # (a new dict: the selector shares the old)
    assert "deployment.apps/applied configured" in apply(cluster, d2)
    assert cluster.kubectl_json("get", "deploy", "applied")["metadata"]["labels"] == {"app": "applied",
                                                                                      "extra": "yes"}
    assert "deployment.apps/applied configured" in apply(cluster, d)
    got = cluster.kubectl_json("get", "deploy", "applied")
    assert got["metadata"]["labels"] == {"app": "applied"}
    assert [e["name"] for e in got["spec"]["template"]["spec"]["containers"][0]["env"]] == ["POD_IP"]

    # server-side apply: field ownership, conflicts between managers, --force-conflicts
    cm = configmap("ssa", {"key": "one", "mine": "x"})
    assert "configmap/ssa serverside-applied" in apply(cluster, cm, args=("--server-side",))
    got = cluster.kubectl_json("get", "cm", "ssa", "--show-managed-fields")
    (mf,) = got["metadata"]["managedFields"]
    assert (mf["manager"], mf["operation"], mf["fieldsType"]) == ("kubectl", "Apply", "FieldsV1")
    assert set(mf["fieldsV1"]["f:data"]) == {"f:key", "f:mine"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (got["metadata"].get("annotations") or {})

    other = configmap("ssa", {"key": "two"})
    r = cluster.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=to_yaml(other),
                        check=False)
    assert r.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .data.key' in r.stderr, r.stderr
    assert cluster.kubectl_json("get", "cm", "ssa")["data"] == {"key": "one", "mine": "x"}
    apply(cluster, other, args=("--server-side", "--field-manager=other", "--force-conflicts"))
    got = cluster.kubectl_json("get", "cm", "ssa", "--show-managed-fields")
    assert got["data"] == {"key": "two", "mine": "x"}
    owners = {m["manager"]: set(m["fieldsV1"].get("f:data", {})) for m in got["metadata"]["managedFields"]}
    assert owners == {"kubectl": {"f:mine"}, "other": {"f:key"}}, owners
    # a manager that stops mentioning a field it alone owns removes it
    assert "serverside-applied" in apply(cluster, configmap("ssa", {}), args=("--server-side",))
    assert cluster.kubectl_json("get", "cm", "ssa")["data"] == {"key": "two"}

    # server-side apply of a Deployment creates it and its pods
    sport = unique_port()
    assert "deployment.apps/ssa-web serverside-applied" in apply(
        cluster, web_deployment("ssa-web", sport, replicas=1), args=("--server-side",))
    poll(lambda: ready_pods(cluster, "app=ssa-web", 1, sport), 60, what="the server-side applied pod")
    cluster.kubectl("delete", "deploy", "applied", "ssa-web", "--timeout=60s")
    cluster.kubectl("delete", "cm", "ssa")


# ------------------------------------------------------------------------------ get

def test_get_output_formats_and_watch(cluster: Cluster):
    deploy(cluster, "fmt")
    out = cluster.kubectl("get", "deploy", "fmt", "-o", "wide").stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE",
                                                   "CONTAINERS", "IMAGES", "SELECTOR"], out
    assert re.split(r"\s{2,}", out[1].strip())[:3] == ["fmt", "1/1", "1"] and "python:3.11" in out[1] \
        and "app=fmt" in out[1], out
    out = cluster.kubectl("get", "pods", "-l", "app=fmt", "-o", "wide").stdout.splitlines()
    head = re.split(r"\s{2,}", out[0].strip())
    assert head[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], out
    row = dict(zip(head, re.split(r"\s{2,}", out[1].strip())))
    assert row["STATUS"] == "Running" and row["READY"] == "1/1" and row["IP"].startswith("127."), row

    y = yaml.safe_load(cluster.kubectl("get", "deploy", "fmt", "-o", "yaml").stdout)
    assert (y["apiVersion"], y["kind"], y["metadata"]["name"]) == ("apps/v1", "Deployment", "fmt")
    j = json.loads(cluster.kubectl("get", "deploy", "fmt", "-o", "json").stdout)
    assert j["metadata"]["uid"] == y["metadata"]["uid"] and j["status"]["readyReplicas"] == 1
    assert cluster.kubectl("get", "deploy", "fmt", "-o", "jsonpath={.spec.replicas}").stdout == "1"
    ips = cluster.kubectl("get", "pods", "-l", "app=fmt", "-o",
                          "jsonpath={range .items[*]}{.status.podIP}{'\\n'}{end}").stdout.split()
    assert len(ips) == 1 and ips[0].startswith("127.")
    assert cluster.kubectl("get", "deploy", "fmt", "-o", "name").stdout.strip() == "deployment.apps/fmt"
    names = cluster.kubectl("get", "pods", "-l", "app=fmt", "-o", "name").stdout.split()
    assert len(names) == 1 and names[0].startswith("pod/fmt-")
    out = cluster.kubectl("get", "deploy", "fmt", "-o",
                          "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas").stdout.split()
    assert out == ["NAME", "REPLICAS", "fmt", "1"]
    # a list of several kinds, and an unknown name
    out = cluster.kubectl("get", "deploy,rs", "-l", "app=fmt", "-o", "name").stdout.split()
    assert out[0] == "deployment.apps/fmt" and out[1].startswith("replicaset.apps/fmt-"), out
    r = cluster.kubectl("get", "deploy", "nope", check=False)
    assert r.returncode == 1 and 'deployments.apps "nope" not found' in r.stderr

    # get -w: the existing pod first, then a new one appears and becomes Running
    first = {n.split("/", 1)[1] for n in names}
    w = cluster.kubectl_popen("get", "pods", "-l", "app=fmt", "-w", "--output-watch-events")
    try:
        lines = LineReader(w.stdout)
        lines.wait_for(next(iter(first)), 20)
        cluster.kubectl("scale", "deploy", "fmt", "--replicas=2")

        def new_pod_running():
            for line in lines.lines:
                f = line.split()
                if len(f) >= 4 and f[0] in ("ADDED", "MODIFIED") and f[1].startswith("fmt-") \
                        and f[1] not in first and f[3] == "Running":
                    return line
            return None
        line = poll(new_pod_running, 60, what="get -w to show the new pod Running")
        assert any(l.split()[:1] == ["ADDED"] and line.split()[1] in l for l in lines.lines), lines.lines
    finally:
        w.terminate()
        w.wait(10)
    assert w.returncode is not None
    cluster.kubectl("delete", "deploy", "fmt", "--timeout=60s")


# ------------------------------------------------------------------------------ describe, label, annotate

def test_describe_label_annotate(cluster: Cluster):
    deploy(cluster, "desc")
    out = cluster.kubectl("describe", "deploy", "desc").stdout
    for text in (r"^Name:\s+desc$", r"^Namespace:\s+default$", r"^Selector:\s+app=desc$",
                 r"^Replicas:\s+1 desired \| 1 updated \| 1 total \| 1 available \| 0 unavailable$",
                 r"^StrategyType:\s+RollingUpdate$", r"^NewReplicaSet:\s+desc-\w+ \(1/1 replicas created\)$",
                 r"^Events:", r"\sScalingReplicaSet\s"):
        assert re.search(text, out, re.M), f"{text!r} not in describe output:\n{out}"
    out = cluster.kubectl("describe", "pod", "-l", "app=desc").stdout
    for text in (r"^Status:\s+Running$", r"^IP:\s+127\.", r"^Controlled By:\s+ReplicaSet/desc-",
                 r"^Node:\s+\S+/127\.", r"^\s+Ready:\s+True$", r"\sScheduled\s+\S+\s+default-scheduler\s",
                 r"\sStarted\s"):
        assert re.search(text, out, re.M), f"{text!r} not in describe output:\n{out}"
    out = cluster.kubectl("describe", "node").stdout
    assert "Capacity:" in out and "Allocatable:" in out and "Non-terminated Pods:" in out, out

    apply(cluster, configmap("tags", {"a": "1"}))
    assert cluster.kubectl("label", "cm", "tags", "tier=backend").stdout.strip() == "configmap/tags labeled"
    assert cluster.kubectl("get", "cm", "-l", "tier=backend", "-o", "name").stdout.split() == ["configmap/tags"]
    r = cluster.kubectl("label", "cm", "tags", "tier=frontend", check=False)
    assert r.returncode != 0 and "'tier' already has a value (backend), and --overwrite is false" in r.stderr
    cluster.kubectl("label", "cm", "tags", "tier=frontend", "--overwrite")
    assert cluster.kubectl("get", "cm", "-l", "tier=frontend", "-o", "name").stdout.split() == ["configmap/tags"]
    assert cluster.kubectl("get", "cm", "-l", "tier=backend", "-o", "name").stdout.strip() == ""
    assert cluster.kubectl("get", "cm", "-l", "tier in (frontend,x),!missing", "-o", "name").stdout.split() == [
        "configmap/tags"]
    cluster.kubectl("label", "cm", "tags", "tier-")
    assert "tier" not in (cluster.kubectl_json("get", "cm", "tags")["metadata"].get("labels") or {})

    out = cluster.kubectl("annotate", "cm", "tags", "owner=team-e2e", "note=hello world").stdout
    assert out.strip() == "configmap/tags annotated"
    ann = cluster.kubectl_json("get", "cm", "tags")["metadata"]["annotations"]
    assert ann["owner"] == "team-e2e" and ann["note"] == "hello world"
    cluster.kubectl("annotate", "cm", "tags", "owner=other", "--overwrite")
    cluster.kubectl("annotate", "cm", "tags", "note-")
    ann = cluster.kubectl_json("get", "cm", "tags")["metadata"].get("annotations") or {}
    assert ann.get("owner") == "other" and "note" not in ann
    # labels on pods select them; label many objects at once
    cluster.kubectl("label", "pods", "-l", "app=desc", "checked=yes")
    assert len(pods(cluster, "checked=yes")) == 1
    cluster.kubectl("delete", "deploy", "desc", "--timeout=60s")
    cluster.kubectl("delete", "cm", "tags")


# ------------------------------------------------------------------------------ patch, edit

def test_patch_and_edit(cluster: Cluster):
    apply(cluster, configmap("patched", {"a": "1", "b": "2"}))
    out = cluster.kubectl("patch", "cm", "patched", "--type", "merge",
                          "-p", '{"data":{"a":"10","b":null,"c":"3"}}').stdout
    assert out.strip() == "configmap/patched patched"
    assert cluster.kubectl_json("get", "cm", "patched")["data"] == {"a": "10", "c": "3"}
    cluster.kubectl("patch", "cm", "patched", "--type", "json", "-p",
                    '[{"op":"add","path":"/data/d","value":"4"},{"op":"remove","path":"/data/a"},'
                    '{"op":"replace","path":"/data/c","value":"30"},{"op":"test","path":"/data/d","value":"4"}]')
    assert cluster.kubectl_json("get", "cm", "patched")["data"] == {"c": "30", "d": "4"}
    out = cluster.kubectl("patch", "cm", "patched", "--type", "merge", "-p", '{"data":{"c":"30"}}').stdout
    assert out.strip() == "configmap/patched patched (no change)"
    r = cluster.kubectl("patch", "cm", "patched", "--type", "json", "-p",
                        '[{"op":"test","path":"/data/c","value":"wrong"}]', check=False)
    assert r.returncode != 0 and "test" in r.stderr.lower(), r.stderr
    assert cluster.kubectl_json("get", "cm", "patched")["data"] == {"c": "30", "d": "4"}
    r = cluster.kubectl("patch", "cm", "patched", "--type", "merge", "-p", "{not json", check=False)
    assert r.returncode != 0

    # strategic merge: containers and env merge by name, a directive deletes one entry
    port = deploy(cluster, "smp")
    out = cluster.kubectl("patch", "deploy", "smp", "-p", json.dumps({"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "EXTRA", "value": "1"}]}]}}}})).stdout
    assert out.strip() == "deployment.apps/smp patched"
    c = cluster.kubectl_json("get", "deploy", "smp")["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["command"][:3] == ["python3", "-m", "http.server"]
    assert [e["name"] for e in c[0]["env"]] == ["EXTRA", "POD_IP"] or \
        sorted(e["name"] for e in c[0]["env"]) == ["EXTRA", "POD_IP"], c[0]["env"]
    cluster.kubectl("patch", "deploy", "smp", "--type", "strategic", "-p", json.dumps({"spec": {"template": {
        "spec": {"containers": [{"name": "web", "env": [{"name": "EXTRA", "$patch": "delete"}]}]}}}}))
    c = cluster.kubectl_json("get", "deploy", "smp")["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in c[0]["env"]] == ["POD_IP"], c[0]["env"]
    cluster.kubectl("patch", "deploy", "smp", "--type", "json",
                    "-p", '[{"op":"replace","path":"/spec/replicas","value":2}]')
    poll(lambda: ready_pods(cluster, "app=smp", 2, port), 60, what="2 smp pods after the json patch")
    r = cluster.kubectl("rollout", "status", "deploy/smp", "--timeout=60s")
    assert "successfully rolled out" in r.stdout

    # edit with a scripted editor
    apply(cluster, configmap("edited", {"word": "foo"}))
    env = cluster.env()
    env["EDITOR"] = env["KUBE_EDITOR"] = "sed -i s/foo/bar/"  # (KUBE_EDITOR wins if the caller has one)
    r = subprocess.run([str(KUBECTL), "edit", "cm", "edited"], capture_output=True, text=True, env=env,
                       timeout=60, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configmap/edited edited"
    assert cluster.kubectl_json("get", "cm", "edited")["data"] == {"word": "bar"}
    r = subprocess.run([str(KUBECTL), "edit", "cm", "edited"], capture_output=True, text=True, env=env,
                       timeout=60, cwd=str(REPO))  # nothing to replace now
    assert r.returncode == 0 and "Edit cancelled, no changes made." in r.stdout + r.stderr, (r.stdout, r.stderr)
    cluster.kubectl("delete", "cm", "patched", "edited")
    cluster.kubectl("delete", "deploy", "smp", "--timeout=60s")


# ------------------------------------------------------------------------------ delete --cascade

def _rs(cluster: Cluster, app: str) -> list[dict]:
    return cluster.kubectl_json("get", "rs", "-l", f"app={app}")["items"]


def test_delete_cascade(cluster: Cluster):
    for name in ("bg", "fg", "orph"):
        deploy(cluster, name)

    # background: the Deployment goes at once, the collector removes the rest
    out = cluster.kubectl("delete", "deploy", "bg", "--cascade=background").stdout
    assert out.startswith('deployment.apps "bg" deleted'), out  # (kubectl 1.37 adds "from default namespace")
    assert not_found(cluster, "deploy", "bg")
    poll(lambda: not _rs(cluster, "bg") and not pods(cluster, "app=bg"), 60, what="bg's ReplicaSet and pod gone")

    # foreground: the owner waits (foregroundDeletion finalizer) until its dependents are gone
    cluster.kubectl("delete", "deploy", "fg", "--cascade=foreground", "--wait=false")
    r = cluster.kubectl("get", "deploy", "fg", "-o", "json", check=False)
    if r.returncode == 0:  # still there: it must be held by the foreground finalizer
        d = json.loads(r.stdout)
        assert d["metadata"].get("deletionTimestamp") and "foregroundDeletion" in d["metadata"]["finalizers"], d
    poll(lambda: not_found(cluster, "deploy", "fg"), 60, what="fg deleted")
    assert not _rs(cluster, "fg")
    poll(lambda: not pods(cluster, "app=fg"), 60, what="fg's pod gone")

    # orphan: the ReplicaSet and its pod survive, the ReplicaSet loses its ownerReference
    (rs,) = _rs(cluster, "orph")
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    cluster.kubectl("delete", "deploy", "orph", "--cascade=orphan", "--timeout=60s")
    assert not_found(cluster, "deploy", "orph")
    (rs2,) = _rs(cluster, "orph")
    assert rs2["metadata"]["uid"] == rs["metadata"]["uid"]
    assert not rs2["metadata"].get("ownerReferences"), rs2["metadata"]
    assert "orphan" not in (rs2["metadata"].get("finalizers") or [])
    (pod,) = pods(cluster, "app=orph")
    assert is_ready(pod)
    assert [o["uid"] for o in pod["metadata"]["ownerReferences"]] == [rs["metadata"]["uid"]]
    # the orphaned ReplicaSet still keeps its pod
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "--timeout=60s")
    poll(lambda: len(pods(cluster, "app=orph")) == 1 and pods(cluster, "app=orph")[0]["metadata"]["name"]
         != pod["metadata"]["name"], 60, what="the orphaned ReplicaSet to replace its pod")
    cluster.kubectl("delete", "rs", rs["metadata"]["name"], "--timeout=60s")
    poll(lambda: not pods(cluster, "app=orph"), 60, what="orph's pod gone")


# ------------------------------------------------------------------------------ wait, scale, rollout

def test_wait_scale_rollout(cluster: Cluster):
    port = unique_port()
    apply(cluster, web_deployment("roll", port, replicas=1))
    out = cluster.kubectl("wait", "--for=condition=Available", "deploy/roll", "--timeout=60s", timeout=90).stdout
    assert out.strip() == "deployment.apps/roll condition met"
    out = cluster.kubectl("wait", "--for=jsonpath={.status.readyReplicas}=1", "deploy/roll", "--timeout=60s",
                          timeout=90).stdout
    assert out.strip() == "deployment.apps/roll condition met"

    out = cluster.kubectl("scale", "deploy", "roll", "--replicas=2").stdout
    assert out.strip() == "deployment.apps/roll scaled"
    r = cluster.kubectl("scale", "deploy", "roll", "--current-replicas=5", "--replicas=1", check=False)
    assert r.returncode != 0 and "Expected replicas to be 5, was 2" in r.stderr, r.stderr
    r = cluster.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90)
    assert 'deployment "roll" successfully rolled out' in r.stdout
    poll(lambda: ready_pods(cluster, "app=roll", 2, port), 60, what="2 roll pods")
    assert cluster.kubectl_json("get", "deploy/roll")["status"]["availableReplicas"] == 2

    # a second revision, its history, and undo back to the first template
    cluster.kubectl("set", "env", "deploy/roll", "VERSION=2")
    cluster.kubectl("annotate", "deploy/roll", "kubernetes.io/change-cause=set VERSION=2")
    r = cluster.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90)
    assert "successfully rolled out" in r.stdout
    out = cluster.kubectl("rollout", "history", "deploy/roll").stdout
    rows = [l.split(None, 1) for l in out.splitlines() if l[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"], out
    assert rows[1][1].strip() == "set VERSION=2", out
    out = cluster.kubectl("rollout", "history", "deploy/roll", "--revision=2").stdout
    assert "VERSION:\t2" in out or re.search(r"VERSION:\s+2", out), out
    out = cluster.kubectl("rollout", "undo", "deploy/roll").stdout
    assert out.strip() == "deployment.apps/roll rolled back"
    r = cluster.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90)
    assert "successfully rolled out" in r.stdout
    d = cluster.kubectl_json("get", "deploy/roll")
    assert [e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]] == ["POD_IP"]
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    revs = [l.split()[0] for l in cluster.kubectl("rollout", "history", "deploy/roll").stdout.splitlines()
            if l[:1].isdigit()]
    assert revs == ["2", "3"], revs  # revision 1 became revision 3
    items = poll(lambda: ready_pods(cluster, "app=roll", 2, port), 60, what="2 roll pods after the undo")
    assert all(all(e["name"] != "VERSION" for e in p["spec"]["containers"][0]["env"]) for p in items)

    # wait --for=delete: a finalizer holds the pod until kubectl wait is surely waiting
    victim = items[0]["metadata"]["name"]
    cluster.kubectl("patch", "pod", victim, "--type", "merge", "-p", '{"metadata":{"finalizers":["e2e.sendo.dev/hold"]}}')
    cluster.kubectl("delete", "pod", victim, "--wait=false")
    poll(lambda: cluster.kubectl_json("get", "pod", victim)["metadata"].get("deletionTimestamp"), 10,
         what="the pod marked for deletion")
    waiter = cluster.kubectl_popen("wait", "--for=delete", f"pod/{victim}", "--timeout=60s")
    waiting = LineReader(waiter.stdout)
    # the ReplicaSet replaces the terminating pod meanwhile; kubectl wait must still be waiting
    poll(lambda: len([p for p in pods(cluster, "app=roll") if is_ready(p) and p["metadata"]["name"] != victim])
         == 2, 60, what="a replacement for the held pod")
    assert waiter.poll() is None, f"kubectl wait --for=delete returned while the pod exists: {waiting.lines}"
    cluster.kubectl("patch", "pod", victim, "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    waiting.wait_for(f"pod/{victim} condition met", 30)
    assert waiter.wait(30) == 0
    assert not_found(cluster, "pod", victim)
    cluster.kubectl("delete", "deploy", "roll", "--timeout=60s")
    out = cluster.kubectl("wait", "--for=delete", "pods", "-l", "app=roll", "--timeout=60s", timeout=90)
    assert out.returncode == 0


# ------------------------------------------------------------------------------ discovery, explain

def test_api_resources_and_explain(cluster: Cluster):
    out = cluster.kubectl("api-resources").stdout.splitlines()
    rows: dict[str, str] = {}
    for l in out[1:]:  # the core group's row first (metrics.k8s.io has nodes and pods too)
        rows.setdefault(l.split()[0], l)
    for name in ("pods", "deployments", "replicasets", "configmaps", "secrets", "namespaces", "nodes", "events",
                 "services"):
        assert name in rows, f"{name} missing from api-resources:\n" + "\n".join(out)
    assert re.split(r"\s+", rows["deployments"].strip()) == ["deployments", "deploy", "apps/v1", "true",
                                                             "Deployment"]
    assert re.split(r"\s+", rows["nodes"].strip()) == ["nodes", "no", "v1", "false", "Node"]
    names = cluster.kubectl("api-resources", "-o", "name", "--namespaced=false").stdout.split()
    assert "nodes" in names and "namespaces" in names and "pods" not in names
    names = cluster.kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert {"deployments.apps", "replicasets.apps"} <= set(names) and "pods" not in names
    wide = cluster.kubectl("api-resources", "-o", "wide").stdout
    assert re.search(r"^pods\s.*\screate,delete,deletecollection,get,list,patch,update,watch\s", wide, re.M), wide
    versions = cluster.kubectl("api-versions").stdout.split()
    assert "v1" in versions and "apps/v1" in versions

    # explain reads the OpenAPI v3 schemas
    r = cluster.kubectl("explain", "pod.spec.containers", check=False)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M) and re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert "FIELD: containers <[]Container>" in out, out
    assert "DESCRIPTION:" in out and "FIELDS:" in out, out
    for field in ("image\t<string>", "command\t<[]string>", "env\t<[]EnvVar>", "ports\t<[]ContainerPort>"):
        assert re.search(r"^\s+" + re.escape(field).replace("\\\t", r"\s+"), out, re.M), (field, out)
    assert re.search(r"^\s+name\s+<string>\s+-required-", out, re.M), out
    r = cluster.kubectl("explain", "deployment.spec.replicas", check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^GROUP:\s+apps$", r.stdout, re.M) and "FIELD: replicas <integer>" in r.stdout, r.stdout
    r = cluster.kubectl("explain", "pod.spec.nosuchfield", check=False)
    assert r.returncode != 0 and 'field "nosuchfield" does not exist' in r.stderr, r.stderr


# ------------------------------------------------------------------------------ create generators (protobuf)

def test_create_configmap_secret_namespace(cluster: Cluster):
    out = cluster.kubectl("create", "configmap", "lit", "--from-literal=a=b", "--from-literal=c=d e").stdout
    assert out.strip() == "configmap/lit created"
    cm = cluster.kubectl_json("get", "cm", "lit")
    assert cm["data"] == {"a": "b", "c": "d e"}
    assert cm["metadata"]["uid"] and cm["metadata"]["creationTimestamp"]
    out = cluster.kubectl("create", "secret", "generic", "pw", "--from-literal=p=q").stdout
    assert out.strip() == "secret/pw created"
    s = cluster.kubectl_json("get", "secret", "pw")
    assert s["type"] == "Opaque" and s["data"] == {"p": base64.b64encode(b"q").decode()}
    assert cluster.kubectl("get", "secret", "pw", "-o", "jsonpath={.data.p}").stdout == "cQ=="
    r = cluster.kubectl("create", "configmap", "lit", "--from-literal=x=y", check=False)
    assert r.returncode != 0 and 'configmaps "lit" already exists' in r.stderr, r.stderr
    out = cluster.kubectl("create", "namespace", "made-by-create").stdout
    assert out.strip() == "namespace/made-by-create created"
    assert cluster.kubectl("get", "ns", "made-by-create", "-o", "jsonpath={.status.phase}").stdout == "Active"
    out = cluster.kubectl("create", "configmap", "inside", "-n", "made-by-create", "--from-literal=k=v").stdout
    assert out.strip() == "configmap/inside created"
    assert cluster.kubectl_json("get", "cm", "inside", "-n", "made-by-create")["data"] == {"k": "v"}
    cluster.kubectl("delete", "ns", "made-by-create", "--timeout=60s")
    cluster.kubectl("delete", "cm", "lit")
    cluster.kubectl("delete", "secret", "pw")


# ------------------------------------------------------------------------------ namespaces

def test_namespace_lifecycle(cluster: Cluster):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    assert "namespace/team-a created" in apply(cluster, ns)
    assert cluster.kubectl("get", "ns", "team-a", "-o", "jsonpath={.status.phase}").stdout == "Active"
    port = deploy(cluster, "inner", ns="team-a")
    poll(lambda: (lambda ps: len(ps) == 1 and is_ready(ps[0]))(
        cluster.kubectl_json("get", "pods", "-n", "team-a", "-l", "app=inner")["items"]), 60,
        what="the pod in team-a Running")
    # a ConfigMap whose finalizer holds the namespace in Terminating until we release it
    held = configmap("held", {"k": "v"}, namespace="team-a", finalizers=["e2e.sendo.dev/hold"])
    apply(cluster, held, configmap("plain", {"k": "v"}, namespace="team-a"))
    assert len(cluster.kubectl_json("get", "cm", "-n", "team-a")["items"]) >= 2

    out = cluster.kubectl("delete", "ns", "team-a", "--wait=false").stdout
    assert out.strip() == 'namespace "team-a" deleted'
    nsobj = cluster.kubectl_json("get", "ns", "team-a")
    assert nsobj["status"]["phase"] == "Terminating" and nsobj["metadata"]["deletionTimestamp"]
    assert "kubernetes" in nsobj["spec"]["finalizers"]
    out = cluster.kubectl("get", "ns", "team-a").stdout
    assert re.search(r"^team-a\s+Terminating\s", out, re.M), out
    # nothing new may be created in a terminating namespace
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(configmap("late", {}, namespace="team-a")), check=False)
    assert r.returncode != 0 and "because it is being terminated" in r.stderr, r.stderr
    # its contents go; the held ConfigMap waits for its finalizer
    poll(lambda: not cluster.kubectl_json("get", "deploy,rs,pods", "-n", "team-a")["items"], 60,
         what="the namespace's workloads deleted")
    poll(lambda: not cluster.pod_processes(cmdline_contains=f"http.server {port}"), 30,
         what="the namespace's pod process stopped")
    poll(lambda: [c["metadata"]["name"] for c in cluster.kubectl_json("get", "cm", "-n", "team-a")["items"]]
         == ["held"], 60, what="only the held ConfigMap left")
    assert cluster.kubectl_json("get", "cm", "held", "-n", "team-a")["metadata"].get("deletionTimestamp")
    assert cluster.kubectl_json("get", "ns", "team-a")["status"]["phase"] == "Terminating"
    cluster.kubectl("patch", "cm", "held", "-n", "team-a", "--type", "json",
                    "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    poll(lambda: not_found(cluster, "ns", "team-a"), 60, what="namespace team-a gone")
    r = cluster.kubectl("get", "cm", "-n", "team-a", check=False)
    assert "No resources found in team-a namespace." in r.stderr, (r.stdout, r.stderr)


# ------------------------------------------------------------------------------ events

def test_events(cluster: Cluster):
    deploy(cluster, "evt")
    (pod,) = pods(cluster, "app=evt")
    name = pod["metadata"]["name"]

    def reasons(*args: str) -> set[str]:
        return {e["reason"] for e in cluster.kubectl_json("get", "events", *args)["items"]}
    poll(lambda: {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Started"} <= reasons(), 30,
         what="deployment, replicaset, scheduler and agent events")
    evs = cluster.kubectl_json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    assert evs and all(e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "Pod" for e in evs)
    sched = [e for e in evs if e["reason"] == "Scheduled"]
    assert sched and sched[0]["type"] == "Normal" and f"default/{name}" in sched[0]["message"], sched
    assert reasons("--field-selector", "reason=Scheduled,involvedObject.kind=Pod") == {"Scheduled"}
    out = cluster.kubectl("get", "events").stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], out
    assert any(f"pod/{name}" in l and "Scheduled" in l for l in out), out
    out = cluster.kubectl("events", "--for", f"pod/{name}").stdout
    assert "Scheduled" in out and f"Pod/{name}" in out, out
    cluster.kubectl("delete", "deploy", "evt", "--timeout=60s")


# ------------------------------------------------------------------------------ custom resources

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.e2e.sendo.dev"},
    "spec": {
        "group": "e2e.sendo.dev", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1},
                    "color": {"type": "string", "enum": ["red", "blue"]}}},
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
        }],
    },
}


def widget(name: str, size, color: str = "blue") -> dict:
    return {"apiVersion": "e2e.sendo.dev/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size, "color": color}}


def test_custom_resources(cluster: Cluster):
    out = apply(cluster, CRD)
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.e2e.sendo.dev created" in out
    out = cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.e2e.sendo.dev", "--timeout=30s",
                          timeout=60).stdout
    assert out.strip() == "customresourcedefinition.apiextensions.k8s.io/widgets.e2e.sendo.dev condition met"
    crd = cluster.kubectl_json("get", "crd", "widgets.e2e.sendo.dev")
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    names = cluster.kubectl("api-resources", "--api-group=e2e.sendo.dev", "-o", "name").stdout.split()
    assert names == ["widgets.e2e.sendo.dev"]

    assert "widget.e2e.sendo.dev/w1 created" in apply(cluster, widget("w1", 3))
    apply(cluster, widget("w2", 5, "red"))
    out = cluster.kubectl("get", "widgets").stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["NAME", "SIZE", "COLOR", "AGE"], out
    rows = [re.split(r"\s{2,}", l.strip())[:3] for l in out[1:]]
    assert rows == [["w1", "3", "blue"], ["w2", "5", "red"]], out
    w = cluster.kubectl_json("get", "wd", "w1")
    assert (w["apiVersion"], w["kind"], w["spec"]) == ("e2e.sendo.dev/v1", "Widget", {"size": 3, "color": "blue"})
    assert w["metadata"]["uid"] and w["metadata"]["resourceVersion"]
    assert cluster.kubectl("get", "widget.e2e.sendo.dev/w2", "-o", "jsonpath={.spec.color}").stdout == "red"

    # the schema is enforced
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(widget("bad", "big")), check=False)
    assert r.returncode != 0 and "spec.size" in r.stderr and "integer" in r.stderr, r.stderr
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(widget("bad", 2, "green")), check=False)
    assert r.returncode != 0 and "spec.color" in r.stderr and "Unsupported value" in r.stderr, r.stderr
    assert not_found(cluster, "widget", "bad")

    # patch, label, the status subresource, server-side apply
    cluster.kubectl("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"size":4}}')
    cluster.kubectl("label", "widget", "w1", "tier=gold")
    assert cluster.kubectl("get", "widgets", "-l", "tier=gold", "-o", "name").stdout.split() == [
        "widget.e2e.sendo.dev/w1"]
    cluster.kubectl("patch", "widget", "w1", "--subresource=status", "--type", "merge",
                    "-p", '{"status":{"phase":"Ready"}}')
    w = cluster.kubectl_json("get", "widget", "w1")
    assert w["spec"]["size"] == 4 and w["status"] == {"phase": "Ready"}
    assert "widget.e2e.sendo.dev/w3 serverside-applied" in apply(cluster, widget("w3", 1), args=("--server-side",))

    # deleting the CRD deletes its API and its objects
    out = cluster.kubectl("delete", "crd", "widgets.e2e.sendo.dev", "--timeout=60s").stdout
    assert out.startswith('customresourcedefinition.apiextensions.k8s.io "widgets.e2e.sendo.dev" deleted'), out
    assert not_found(cluster, "crd", "widgets.e2e.sendo.dev")
    assert "widgets.e2e.sendo.dev" not in cluster.kubectl("api-resources", "-o", "name").stdout.split()
    r = cluster.kubectl("get", "--raw", "/apis/e2e.sendo.dev/v1/namespaces/default/widgets", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr, (r.stdout, r.stderr)
    r = cluster.kubectl("get", "widgets", check=False)
    assert r.returncode != 0, r.stdout
    # a new CRD of the same name starts empty: the old objects were deleted with the old one
    apply(cluster, CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.e2e.sendo.dev", "--timeout=30s", timeout=60)
    assert json.loads(cluster.kubectl("get", "--raw", "/apis/e2e.sendo.dev/v1/widgets").stdout)["items"] == []
    cluster.kubectl("delete", "crd", "widgets.e2e.sendo.dev", "--timeout=60s")
