"""Node loss end to end: `sendo up` (node-a) plus a second `sendo agent` process (node-b)
on this machine, each with its own podCIDR of loopback pod IPs. kill -9 of node-b's agent
→ node-b Unknown with the unreachable NoExecute taint → its pods evicted once their
(short) toleration is up → replaced on node-a; the agent started again stops the stale
pod processes it left behind and node-b is Ready again. Checked with kubectl and the
official `kubernetes` client."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.e2e.harness import REPO, Cluster, _env, answers, is_ready, poll, shared_cluster, to_yaml, unique_port, \
    web_deployment

GRACE, TOLERATION = 5, 2  # seconds: --node-monitor-grace-period, --default-unreachable-toleration-seconds
LEASE = ("--node-lease-duration-seconds", "2")  # renewed every 0.5 s: well within the grace period
FLAGS = ("--node-name", "node-a", "--no-ingress", *LEASE, "--node-monitor-grace-period", f"{GRACE}s",
         "--default-unreachable-toleration-seconds", str(TOLERATION),
         "--default-not-ready-toleration-seconds", str(TOLERATION))


class SecondAgent:
    """`sendo agent` for node-b, a subprocess with its own data dir (inside the cluster's, so
    the harness's teardown also finds what it leaves behind) and no service proxy (node-a's
    serves the ClusterIPs of this machine)."""

    def __init__(self, cluster: Cluster, name: str = "node-b"):
        self.cluster, self.name = cluster, name
        self.data_dir = cluster.data_dir / f"agent-{name}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        server = self.cluster.data_dir / "server"
        token = (server / "node-token").read_text().strip()
        with open(self.cluster.base / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sendo.cli.main", "agent", "--server", f"https://127.0.0.1:{self.cluster.port}",
                 "--ca-cert", str(server / "tls" / "ca.crt"), "--node-name", self.name,
                 "--data-dir", str(self.data_dir), "--no-ingress", "--no-service-proxy", *LEASE],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(REPO),
                env=_env(SENDO_TOKEN=token, HOME=str(self.cluster.home)))

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("nodeloss"), FLAGS) as c:
        b = SecondAgent(c)
        b.start()
        try:
            poll(lambda: node_ready(c, "node-b"), 60, what="node-b Ready")
            yield c, b
        finally:
            b.stop()


def node_ready(c: Cluster, name: str) -> bool:
    r = c.kubectl("get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                  check=False)
    return r.returncode == 0 and r.stdout == "True"


def web_pods(c: Cluster) -> list[dict]:
    return c.kubectl_json("get", "pods", "-l", "app=web")["items"]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pods_of_a_killed_agent_come_back_on_the_other_node_and_stale_copies_stop_when_it_returns(two_nodes):
    c, b = two_nodes
    port = unique_port()
    c.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("web", port, replicas=4)))

    def spread():
        items = web_pods(c)
        ok = (len(items) == 4 and all(is_ready(p) for p in items)
              and {p["spec"]["nodeName"] for p in items} == {"node-a", "node-b"}
              and all(answers(p["status"]["podIP"], port) for p in items))
        return items if ok else None
    items = poll(spread, 90, what="4 web replicas Ready, on both nodes, answering")
    on_b = {p["metadata"]["name"]: p for p in items if p["spec"]["nodeName"] == "node-b"}
    stale = {name: psutil.Process(c.pod_pid(p["status"]["podIP"])) for name, p in on_b.items()}

    b.kill()  # kill -9 the agent by PID; its pods' processes keep running, as containers outlive an agent
    t0 = time.monotonic()

    def replaced():
        items = web_pods(c)
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ok = (len(live) == 4 and all(is_ready(p) and p["spec"]["nodeName"] == "node-a" for p in live)
              and all(answers(p["status"]["podIP"], port) for p in live))
        return items if ok else None
    items = poll(replaced, 120, what="4 web replicas Ready on node-a after node-b's agent was killed")
    print(f"kill -9 → all replicas Running on node-a: {time.monotonic() - t0:.1f}s "
          f"(grace {GRACE}s + toleration {TOLERATION}s)")
    # the evicted pods wait, Terminating, for their agent: it may be behind a partition still running them
    evicted = {p["metadata"]["name"]: p for p in items if p["metadata"].get("deletionTimestamp")}
    assert set(evicted) == set(on_b)
    assert all(_alive(p) for p in stale.values())

    # the official client sees the lost node as Kubernetes shows one
    from kubernetes import client as k8s
    core = k8s.CoreV1Api(c.api())
    node = core.read_node("node-b")
    ready = next(x for x in node.status.conditions if x.type == "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    taints = {(t.key, t.effect) for t in node.spec.taints or []}
    assert {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")} <= taints
    pod = core.read_namespaced_pod(next(iter(evicted)), "default")
    assert any(x.type == "DisruptionTarget" and x.reason == "DeletionByTaintManager" for x in pod.status.conditions)
    assert [(t.key, t.toleration_seconds) for t in pod.spec.tolerations if t.effect == "NoExecute"] == [
        ("node.kubernetes.io/not-ready", TOLERATION), ("node.kubernetes.io/unreachable", TOLERATION)]

    # while node-b is away an operator force-deletes one of its pods: gone from the API at once
    forced = sorted(evicted)[0]
    c.kubectl("delete", "pod", forced, "--force", "--grace-period=0")

    b.start()  # the agent comes back: it stops the stale copies (the one deleted for good first)
    poll(lambda: not any(_alive(p) for p in stale.values()), 60, what="stale pod processes of node-b stopped")
    poll(lambda: node_ready(c, "node-b"), 60, what="node-b Ready again")

    def clean():
        names = {p["metadata"]["name"] for p in web_pods(c)}
        node = c.kubectl_json("get", "node", "node-b")
        return not (names & set(on_b)) and not [t for t in node["spec"].get("taints") or []
                                                 if t["key"].startswith("node.kubernetes.io/")]
    poll(clean, 60, what="evicted pod objects gone and node-b untainted")
    live = web_pods(c)
    assert len(live) == 4 and all(is_ready(p) for p in live)
