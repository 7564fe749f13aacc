"""examples/hello-web.yaml through the real kubectl: deploy, self-heal, replace, scale,
roll out, delete — checked against the API and against the processes on this machine."""
from __future__ import annotations

import os
import signal

import psutil

from .harness import (REPO, Cluster, answers, http_get, is_ready, poll, pods, ready_pods, to_yaml, unique_port,
                      web_deployment)

SEL = "app=hello-web"
PORT = 8080  # the example's port


def _identity(pid: int) -> tuple[int, float]:
    """pid and start time: a recycled pid is not mistaken for the same process."""
    return pid, psutil.Process(pid).create_time()


def _gone(ident: tuple[int, float]) -> bool:
    pid, created = ident
    try:
        p = psutil.Process(pid)
        return p.create_time() != created or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _web_processes(cluster: Cluster) -> list[psutil.Process]:
    return cluster.pod_processes(cmdline_contains=f"http.server {PORT}")


def _replicasets(cluster: Cluster) -> list[dict]:
    return cluster.kubectl_json("get", "rs", "-l", SEL)["items"]


def test_hello_web_lifecycle(cluster: Cluster):
    out = cluster.kubectl("apply", "-f", str(REPO / "examples" / "hello-web.yaml")).stdout
    assert "deployment.apps/hello-web created" in out

    # --- three Running pods, each serving HTTP on its own loopback pod IP
    items = poll(lambda: ready_pods(cluster, SEL, 3, PORT), 60, what="3 hello-web pods Running and answering")
    ips = [p["status"]["podIP"] for p in items]
    assert len(set(ips)) == 3, ips
    for ip in ips:
        assert ip.startswith("127."), ip
        status, body = http_get(ip, PORT)
        assert status == 200 and b"Directory listing" in body
    jp = cluster.kubectl("get", "pods", "-l", SEL, "-o", "jsonpath={.items[*].status.phase}").stdout.split()
    assert jp == ["Running"] * 3
    assert len(_web_processes(cluster)) == 3
    # the servers log our requests; kubectl reads every pod's log by label
    def logged_gets():
        lines = cluster.kubectl("logs", "-l", SEL, "--prefix").stdout.splitlines()
        return all(any(l.startswith(f"[pod/{p['metadata']['name']}/web]") and '"GET / HTTP/1.1" 200' in l
                       for l in lines) for p in items)
    poll(logged_gets, 20, what="a logged GET for every pod in kubectl logs -l")

    # --- kill -9 one pod's process: the agent restarts it in the same pod
    victim = items[0]
    name, ip = victim["metadata"]["name"], victim["status"]["podIP"]
    old = _identity(cluster.pod_pid(ip))
    os.kill(old[0], signal.SIGKILL)

    def restarted():
        p = cluster.kubectl_json("get", "pod", name)
        cs = p["status"]["containerStatuses"][0]
        if cs["restartCount"] < 1 or not is_ready(p) or not answers(ip, PORT):
            return None
        return p
    p = poll(restarted, 40, what=f"pod {name} restarted after kill -9")
    assert p["metadata"]["uid"] == victim["metadata"]["uid"]
    assert p["status"]["podIP"] == ip
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137, last
    assert _gone(old)
    assert cluster.pod_pid(ip) != old[0]
    assert len(_web_processes(cluster)) == 3

    # --- kubectl delete pod: the ReplicaSet makes a replacement with a new name
    victim = p
    name, ip = victim["metadata"]["name"], victim["status"]["podIP"]
    old = _identity(cluster.pod_pid(ip))
    before = {x["metadata"]["name"] for x in items}
    cluster.kubectl("delete", "pod", name, "--timeout=60s")

    def replaced():
        now = ready_pods(cluster, SEL, 3, PORT)
        if not now:
            return None
        names = {x["metadata"]["name"] for x in now}
        return now if name not in names and len(names - before) == 1 else None
    items = poll(replaced, 60, what="a replacement pod Running")
    assert _gone(old), f"process {old[0]} of deleted pod {name} still runs"
    assert cluster.kubectl("get", "pod", name, check=False).returncode != 0
    poll(lambda: len(_web_processes(cluster)) == 3, 10, what="three web processes")

    # --- scale to one replica: exactly one process is left
    cluster.kubectl("scale", "deploy", "hello-web", "--replicas=1")
    items = poll(lambda: ready_pods(cluster, SEL, 1, PORT), 60, what="1 hello-web pod")
    poll(lambda: len(_web_processes(cluster)) == 1, 30, what="exactly one web process")
    assert _web_processes(cluster)[0].pid == cluster.pod_pid(items[0]["status"]["podIP"])
    r = cluster.kubectl("rollout", "status", "deploy/hello-web", "--timeout=60s")
    assert "successfully rolled out" in r.stdout

    # --- change the template: a new ReplicaSet takes over
    (old_rs,) = _replicasets(cluster)
    old_hash = old_rs["metadata"]["labels"]["pod-template-hash"]
    cluster.kubectl("set", "env", "deploy/hello-web", "FOO=bar")
    r = cluster.kubectl("rollout", "status", "deploy/hello-web", "--timeout=90s", timeout=120)
    assert "successfully rolled out" in r.stdout

    def rolled():
        rs = {x["metadata"]["name"]: x for x in _replicasets(cluster)}
        new = [x for x in rs.values() if x["metadata"]["labels"]["pod-template-hash"] != old_hash]
        if len(new) != 1 or old_rs["metadata"]["name"] not in rs:
            return None
        new = new[0]
        if (new["spec"]["replicas"], (new.get("status") or {}).get("readyReplicas")) != (1, 1):
            return None
        if rs[old_rs["metadata"]["name"]]["spec"]["replicas"] != 0:
            return None
        now = ready_pods(cluster, SEL, 1, PORT)
        if not now or now[0]["metadata"]["labels"]["pod-template-hash"] != new["metadata"]["labels"][
                "pod-template-hash"]:
            return None
        return new, now[0]
    new_rs, pod = poll(rolled, 60, what="the new ReplicaSet to take over")
    assert {"name": "FOO", "value": "bar"} in pod["spec"]["containers"][0]["env"]
    dep = cluster.kubectl_json("get", "deploy", "hello-web")
    assert new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert new_rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    poll(lambda: len(_web_processes(cluster)) == 1, 30, what="exactly one web process after the rollout")
    (proc,) = _web_processes(cluster)
    assert proc.environ().get("FOO") == "bar"
    assert proc.pid == cluster.pod_pid(pod["status"]["podIP"])

    # --- delete the Deployment: ReplicaSets, pods and processes go with it
    cluster.kubectl("delete", "deploy", "hello-web", "--timeout=60s")
    poll(lambda: not _replicasets(cluster), 60, what="ReplicaSets deleted")
    poll(lambda: not pods(cluster, SEL), 60, what="pods deleted")
    poll(lambda: not _web_processes(cluster), 30, what="web processes stopped")
    assert "No resources found" in cluster.kubectl("get", "deploy,rs,pods").stderr


def _revision(cluster: Cluster, name: str) -> str | None:
    dep = cluster.kubectl_json("get", "deploy", name)
    return (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")


def test_rollout_revisions(cluster: Cluster):
    """kubectl rollout status --revision / history / undo read the revision annotations
    the Deployment controller keeps on the Deployment and its ReplicaSets."""
    port = unique_port()
    sel = "app=rev-web"
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("rev-web", port, replicas=1)))
    cluster.kubectl("rollout", "status", "deploy/rev-web", "--timeout=60s")
    first = poll(lambda: ready_pods(cluster, sel, 1, port), 30, what="rev-web ready")[0]
    cluster.kubectl("set", "env", "deploy/rev-web", "GREETING=hi")
    # kubectl compares --revision with the Deployment's own revision annotation
    poll(lambda: _revision(cluster, "rev-web") == "2", 20,
         what="annotation deployment.kubernetes.io/revision=2 on the Deployment")
    r = cluster.kubectl("rollout", "status", "deploy/rev-web", "--revision=2", "--timeout=60s")
    assert "successfully rolled out" in r.stdout
    hist = cluster.kubectl("rollout", "history", "deploy/rev-web").stdout
    assert [l.split()[0] for l in hist.splitlines()[2:] if l.strip()] == ["1", "2"], hist

    # undo: back to the first template, which becomes revision 3
    cluster.kubectl("rollout", "undo", "deploy/rev-web")
    poll(lambda: _revision(cluster, "rev-web") == "3", 20, what="revision 3 after the undo")
    cluster.kubectl("rollout", "status", "deploy/rev-web", "--revision=3", "--timeout=60s")
    pod = poll(lambda: ready_pods(cluster, sel, 1, port), 60, what="rev-web back on the first template")[0]
    assert pod["metadata"]["labels"]["pod-template-hash"] == first["metadata"]["labels"]["pod-template-hash"]
    assert not any(e["name"] == "GREETING" for e in pod["spec"]["containers"][0]["env"])


def test_events_in_describe_and_get_events(cluster: Cluster):
    """What the controllers, the scheduler and the agent did shows in kubectl describe / get events."""
    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("ev-web", port, replicas=1)))
    (pod,) = poll(lambda: ready_pods(cluster, "app=ev-web", 1, port), 60, what="ev-web ready")
    name = pod["metadata"]["name"]

    def described():
        out = cluster.kubectl("describe", "pod", name).stdout
        events = out[out.index("\nEvents:"):]
        assert f"Successfully assigned default/{name} to" in events and "Started container web" in events, events
        return True
    poll(described, 20, what="scheduler and agent events in kubectl describe pod")

    def reasons() -> set[tuple[str, str]]:
        return {(e["involvedObject"]["kind"], e["reason"])
                for e in cluster.kubectl_json("get", "events")["items"]}
    want = {("Deployment", "ScalingReplicaSet"), ("ReplicaSet", "SuccessfulCreate"), ("Pod", "Scheduled"),
            ("Pod", "Started")}
    poll(lambda: want <= reasons(), 20, what=f"events {sorted(want)}")

    cluster.kubectl("delete", "pod", name, "--timeout=60s")
    poll(lambda: any(e["reason"] == "Killing" and "Stopping container web" in e["message"]
                     for e in cluster.kubectl_json("get", "events", "--field-selector",
                                                   f"involvedObject.name={name}")["items"]),
         20, what="a Killing event for the deleted pod")
