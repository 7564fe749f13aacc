"""`sendo up` stopped and started again on the same data dir: the same objects and pods
come back, and the pods' processes are neither lost nor duplicated."""
from __future__ import annotations

import psutil

from .harness import Cluster, poll, ready_pods, to_yaml, unique_port, web_deployment

NAME = "restart-web"
SEL = f"app={NAME}"


def _deploy(cluster: Cluster, port: int) -> list[dict]:
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment(NAME, port, replicas=3)))
    return poll(lambda: ready_pods(cluster, SEL, 3, port), 60, what="3 pods Running and answering")


def _ids(items: list[dict]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in items}


def _web(cluster: Cluster, port: int) -> list[psutil.Process]:
    return cluster.pod_processes(cmdline_contains=f"http.server {port}")


def _pid_by_ip(cluster: Cluster, items: list[dict]) -> dict[str, int]:
    return {p["status"]["podIP"]: cluster.pod_pid(p["status"]["podIP"]) for p in items}


def test_sigterm_then_start_resumes_the_same_pods(cluster: Cluster):
    port = unique_port()
    items = _deploy(cluster, port)
    before = _ids(items)
    dep_uid = cluster.kubectl_json("get", "deploy", NAME)["metadata"]["uid"]
    rs_uid = cluster.kubectl_json("get", "rs", "-l", SEL)["items"][0]["metadata"]["uid"]
    assert len(_web(cluster, port)) == 3

    rc = cluster.stop()
    assert rc == 0, cluster.log_tail()
    assert cluster.pod_processes() == [], "SIGTERM of sendo up must stop the pods' processes"
    assert cluster.control_processes() == [], "SIGTERM of sendo up must stop its children"

    cluster.start()

    def resumed():
        now = ready_pods(cluster, SEL, 3, port)
        return now if now and _ids(now) == before else None
    items = poll(resumed, 60, what="the same 3 pods (names and uids) Running again")
    assert cluster.kubectl_json("get", "deploy", NAME)["metadata"]["uid"] == dep_uid
    (rs,) = cluster.kubectl_json("get", "rs", "-l", SEL)["items"]
    assert rs["metadata"]["uid"] == rs_uid
    r = cluster.kubectl("rollout", "status", f"deploy/{NAME}", "--timeout=60s")
    assert "successfully rolled out" in r.stdout

    # exactly one process per pod: none lost, none duplicated
    procs = _web(cluster, port)
    assert len(procs) == 3, [(p.pid, p.cmdline()) for p in procs]
    assert set(_pid_by_ip(cluster, items).values()) == {p.pid for p in procs}
    assert _ids(ready_pods(cluster, SEL, 3, port) or []) == before

    # once more, with processes the previous instance started
    cluster.restart()
    items = poll(resumed, 60, what="the same 3 pods Running after a second restart")
    procs = _web(cluster, port)
    assert len(procs) == 3, [(p.pid, p.cmdline()) for p in procs]
    assert set(_pid_by_ip(cluster, items).values()) == {p.pid for p in procs}


def test_crash_then_start_adopts_running_pods(cluster: Cluster):
    port = unique_port()
    items = _deploy(cluster, port)
    before = _ids(items)
    pids = _pid_by_ip(cluster, items)
    created = {pid: psutil.Process(pid).create_time() for pid in pids.values()}
    restarts = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in items}

    cluster.crash()
    # kill -9 of sendo up leaves the pods running, but no other process of it
    assert {p.pid for p in _web(cluster, port)} == set(pids.values())
    poll(lambda: cluster.control_processes() == [], 15,
         what="no child of the killed sendo up (e.g. `sendo controllers`) left running")

    cluster.start()

    def adopted():
        now = ready_pods(cluster, SEL, 3, port)
        return now if now and _ids(now) == before else None
    items = poll(adopted, 60, what="the same 3 pods Running after the crash")
    cluster.kubectl("rollout", "status", f"deploy/{NAME}", "--timeout=60s")

    # the processes were adopted, not restarted: same PIDs (same processes), no duplicates
    assert _pid_by_ip(cluster, items) == pids
    procs = _web(cluster, port)
    assert sorted(p.pid for p in procs) == sorted(pids.values())
    for p in procs:
        assert p.create_time() == created[p.pid]
    items = ready_pods(cluster, SEL, 3, port)
    assert items and _ids(items) == before
    assert {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in items} == restarts

    controllers = [p for p in cluster.control_processes() if "controllers" in p.cmdline()]
    assert len(controllers) <= 1, [p.cmdline() for p in controllers]

    # an adopted process is still managed: SIGTERM of sendo up stops it too
    assert cluster.stop() == 0
    poll(lambda: cluster.pod_processes() == [], 10, what="adopted pod processes stopped with sendo up")
    assert cluster.control_processes() == []


def test_crash_then_start_restarts_only_the_pod_whose_process_died(cluster: Cluster):
    port = unique_port()
    items = _deploy(cluster, port)
    before = _ids(items)
    pids = _pid_by_ip(cluster, items)

    cluster.crash()
    dead_ip = items[0]["status"]["podIP"]
    dead = psutil.Process(pids[dead_ip])
    dead.kill()  # dies while nobody watches it
    psutil.wait_procs([dead], timeout=5)

    cluster.start()

    def recovered():
        now = ready_pods(cluster, SEL, 3, port)
        if not now or _ids(now) != before:
            return None
        by_ip = {p["status"]["podIP"]: p for p in now}
        if by_ip.get(dead_ip, {}).get("status", {}).get("containerStatuses", [{}])[0].get("restartCount") != 1:
            return None
        return now
    items = poll(recovered, 60, what="the pod whose process died restarted, the others untouched")
    now = _pid_by_ip(cluster, items)
    assert now[dead_ip] != pids[dead_ip]
    assert {ip: pid for ip, pid in now.items() if ip != dead_ip} == \
        {ip: pid for ip, pid in pids.items() if ip != dead_ip}
    assert len(_web(cluster, port)) == 3
    for p in items:
        cs = p["status"]["containerStatuses"][0]
        assert cs["restartCount"] == (1 if p["status"]["podIP"] == dead_ip else 0), cs
    (dead_pod,) = [p for p in items if p["status"]["podIP"] == dead_ip]
    last = dead_pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "ContainerStatusUnknown", last
