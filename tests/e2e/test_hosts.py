"""An agent on another host joins with the join command `sendo up` prints.

The other host is a network namespace this module creates, tied to the root namespace by
a veth pair on a private /30 (names and addresses chosen here, unique per run). The
server (`sendo up`, node host1) listens on the root side's address, not on loopback; the
second `sendo agent` runs inside the namespace (`ip netns exec`) and reaches the API
only through the veth. Checked with kubectl and the official `kubernetes` client:

* a join with a wrong token fails with one line naming the cause and creates no node;
* the joined node is Ready with a /24 podCIDR of `--cluster-cidr` (node IPAM) and its
  veth address as InternalIP;
* a pod sent there with a nodeSelector runs inside the namespace (`kubectl exec` shows
  its network namespace), its status shows, `kubectl logs` and `kubectl exec` work
  through the server;
* kill -9 of that agent (by PID) makes its node Unknown (NotReady).

Network safety: the routes exist (checked with `ip route get`) before anything is sent;
the namespace has no default route, so nothing sent from it can leave the machine.
Clean-up removes the namespace and the veth by the names made here, and processes by PID.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.e2e.containers import container_cidrs
from tests.e2e.harness import REPO, Cluster, _env, poll, shared_cluster, to_yaml
from tests.e2e.test_nodeloss import LEASE, SecondAgent

GRACE = 5  # seconds: --node-monitor-grace-period
SPACE = ipaddress.ip_network("10.250.0.0/16")  # private; one /30 of it per run
# node IPAM (--cluster-cidr): a loopback /16 outside the default 127.64.0.0/10, a /24 per node
CLUSTER_CIDR = ipaddress.ip_network(f"127.{random.randrange(200, 250)}.0.0/16")


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def route_get(addr: str, netns: str | None = None) -> dict:
    return json.loads(ip(*(["-n", netns] if netns else []), "-j", "route", "get", addr))[0]


def _free_slash30() -> ipaddress.IPv4Network:
    """A /30 of SPACE that no route or address of this machine touches (other tests may use SPACE too)."""
    used = [ipaddress.ip_network(r["dst"], strict=False)
            for r in json.loads(ip("-4", "-j", "route", "show", "table", "all"))
            if r.get("dst") not in (None, "default")]
    for _ in range(50):
        net = ipaddress.ip_network(f"{SPACE.network_address + 4 * random.randrange(SPACE.num_addresses // 4)}/30")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise AssertionError("no free /30 in 10.250.0.0/16 on this machine")


class Host2:
    """The second host: a network namespace with a veth to the root namespace."""

    def __init__(self) -> None:
        suffix = secrets.token_hex(3)
        self.netns = f"sendo-h2-{suffix}"
        self.veth, self.peer = f"vsh{suffix}", f"vsh{suffix}n"  # ≤ 15 characters (IFNAMSIZ)
        net = _free_slash30()
        self.root_ip, self.ip = str(net.network_address + 1), str(net.network_address + 2)
        self.created: list[str] = []

    def create(self) -> None:
        ip("netns", "add", self.netns)
        self.created.append("netns")
        ip("link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        self.created.append("veth")
        ip("link", "set", self.peer, "netns", self.netns)
        ip("addr", "add", f"{self.root_ip}/30", "dev", self.veth)
        ip("link", "set", self.veth, "up")
        ip("-n", self.netns, "addr", "add", f"{self.ip}/30", "dev", self.peer)
        ip("-n", self.netns, "link", "set", self.peer, "up")
        ip("-n", self.netns, "link", "set", "lo", "up")  # pods' loopback IPs, service proxy, DNS
        # before anything is sent: each side's address is reached through the veth, the
        # server's own address is local, and the namespace has no way out of the machine
        assert route_get(self.ip).get("dev") == self.veth, route_get(self.ip)
        assert route_get(self.root_ip).get("type") == "local", route_get(self.root_ip)
        assert route_get(self.root_ip, self.netns).get("dev") == self.peer, route_get(self.root_ip, self.netns)
        assert ip("-n", self.netns, "route", "show", "default").strip() == ""

    def inode(self) -> str:
        """The namespace's identity as /proc/PID/ns/net shows it inside."""
        return subprocess.run(["ip", "netns", "exec", self.netns, "readlink", "/proc/self/ns/net"], check=True,
                              capture_output=True, text=True, timeout=30).stdout.strip()

    def delete(self) -> None:
        if "veth" in self.created:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=30)
        if "netns" in self.created:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)


class JoinedAgent(SecondAgent):
    """The join command, run inside the namespace; its data dir is inside the cluster's, so the
    harness's teardown kills (by PID) any pod process it leaves behind. kill (-9) and stop
    (SIGTERM) by PID are test_nodeloss's."""

    def __init__(self, cluster: Cluster, host: Host2, join: list[str], name: str = "host2"):
        super().__init__(cluster, name)
        self.host = host
        self.args = [a if a != "NAME" else name for a in join]

    def command(self, *extra: str) -> list[str]:
        assert self.args[:2] == ["sendo", "agent"], self.args
        return ["ip", "netns", "exec", self.host.netns, sys.executable, "-m", "sendo.cli.main", "agent",
                *self.args[2:], "--data-dir", str(self.data_dir), "--address", self.host.ip, "--no-ingress",
                *LEASE, *extra]

    def start(self) -> None:
        with open(self.cluster.base / f"{self.name}.log", "ab") as log:
            # `ip netns exec` execs the command: the PID is the agent's own
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=str(REPO), env=_env(HOME=str(self.cluster.home)))


def _kill_in(netns_inode: str, root: Path) -> None:
    """Pod processes left in the namespace (after kill -9 of their agent), by PID."""
    for p in psutil.process_iter(["pid"]):
        try:
            if os.readlink(f"/proc/{p.pid}/ns/net") == netns_inode and p.cwd().startswith(str(root)):
                p.kill()
        except (OSError, psutil.Error):
            continue


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    h2 = Host2()
    pod_cidr = svc_cidr = ""
    try:
        h2.create()
        inode = h2.inode()
        # container ranges of this test's own: agents off loopback guard them with unreachable
        # routes (agent/noderoutes.py), removed below
        pod_cidr, svc_cidr, net_args = container_cidrs()
        flags = ("--host", h2.root_ip, "--node-name", "host1", "--no-ingress", *LEASE,
                 "--node-monitor-grace-period", f"{GRACE}s",
                 "--cluster-cidr", str(CLUSTER_CIDR), "--node-cidr-mask-size", "24", *net_args)
        with shared_cluster(tmp_path_factory.mktemp("hosts"), flags) as c:
            join = next((line for line in c.stdout_lines if line.startswith("sendo agent ")), None)
            assert join, f"`sendo up` printed no join command: {c.stdout_lines}"
            agent = JoinedAgent(c, h2, join.split())
            try:
                yield c, h2, agent, inode
            finally:
                agent.stop()
                _kill_in(inode, c.data_dir)
    finally:
        h2.delete()
        for cidr in filter(None, (pod_cidr, svc_cidr)):
            subprocess.run(["ip", "route", "del", "unreachable", cidr], capture_output=True, timeout=30)


def node_ready(c: Cluster, name: str) -> str:
    r = c.kubectl("get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                  check=False)
    return r.stdout if r.returncode == 0 else ""


def test_an_agent_in_another_network_namespace_joins_runs_pods_and_is_lost(hosts):
    c, h2, agent, inode = hosts
    assert f"--server https://{h2.root_ip}:{c.port} " in " ".join(agent.args) + " "
    assert c.kubeconfig_data()["clusters"][0]["cluster"]["server"] == f"https://{h2.root_ip}:{c.port}"

    # a wrong token: one line naming the cause, exit 1, no node
    bad = [("not-the-token" if prev == "--token" else a) for prev, a in zip([""] + agent.args, agent.args)]
    wrong = JoinedAgent(c, h2, bad, name="host2-wrong")
    r = subprocess.run(wrong.command(), capture_output=True, text=True, timeout=120, cwd=str(REPO),
                       env=_env(HOME=str(c.home), COLUMNS="80"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "refused the node token (401 Unauthorized)" in lines[0], r.stderr
    assert c.kubectl("get", "node", "host2-wrong", check=False).returncode != 0

    agent.start()
    poll(lambda: node_ready(c, "host2") == "True", 90, what="host2 Ready")
    from kubernetes import client as k8s
    core = k8s.CoreV1Api(c.api())
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"host1", "host2"}
    cidrs = {name: ipaddress.ip_network(n.spec.pod_cidr) for name, n in nodes.items()}
    assert not cidrs["host1"].overlaps(cidrs["host2"])
    assert all(c.prefixlen == 24 and c.subnet_of(CLUSTER_CIDR) for c in cidrs.values()), cidrs
    assert {a.type: a.address for a in nodes["host2"].status.addresses}["InternalIP"] == h2.ip

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-host2"},
           "spec": {"nodeSelector": {"kubernetes.io/hostname": "host2"},
                    "containers": [{"name": "main", "image": "busybox",
                                    "command": ["sh", "-c", "echo hello-from-host2; exec sleep 3600"]}]}}
    c.kubectl("apply", "-f", "-", input=to_yaml(pod))

    def running():
        p = core.read_namespaced_pod("on-host2", "default")
        return p if p.status.phase == "Running" and p.status.pod_ip else None
    p = poll(running, 90, what="pod on-host2 Running")
    assert p.spec.node_name == "host2" and p.status.host_ip == h2.ip
    assert ipaddress.ip_address(p.status.pod_ip) in cidrs["host2"]
    assert poll(lambda: "hello-from-host2" in c.kubectl("logs", "on-host2", check=False).stdout, 60,
                what="kubectl logs through the server")
    # exec runs in the pod on host2: inside the other network namespace, not the server's
    out = c.kubectl("exec", "on-host2", "--", "readlink", "/proc/self/ns/net").stdout.strip()
    assert out == inode and out != os.readlink("/proc/self/ns/net")

    agent.kill()  # kill -9 by PID: host2 is lost
    poll(lambda: node_ready(c, "host2") == "Unknown", GRACE + 60, what="host2 Unknown after its agent was killed")
    assert node_ready(c, "host1") == "True"
