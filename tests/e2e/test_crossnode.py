"""Pod-to-pod and Service traffic across hosts: host-gateway routes between nodes' container
pod blocks (agent/noderoutes.py), with the docker runtime (Podman) on both hosts.

Two "hosts": the root network namespace (`sendo up --runtime docker`, node xa) and a
network namespace this module creates (the joined `sendo agent`, node xb), tied by a veth
pair on a private /30 of 10.250.0.0/16 (test_hosts.Host2). The container pod CIDR and the
service twin range are two free /16s of 10.100-250.x.x (containers.container_cidrs). Node
IPAM gives each node a /24 of the pod CIDR; each agent routes the other's /24 via the other's
InternalIP. Checked with kubectl and the official `kubernetes` client:

* every node has its own /24 (annotation sendo.dev/container-pod-cidr), the unreachable
  guards for the whole pod and service ranges exist on both hosts, and each host routes the
  other's block over the veth (`ip route get`) before any pod starts;
* a pod on xb answers HTTP on its pod IP from the host xa and from a pod on xa;
* a ClusterIP Service whose only endpoint is on xb answers on node xa, through its ClusterIP
  (from the host) and its twin (from the pod on xa);
* node xb gone → xa's route to its block goes, and the block is unreachable again.

Network safety: every address is checked with `ip route get` (on the host, in the pod)
before anything is sent to it; traffic goes only to loopback, the registry on loopback, and
pod IPs on the bridges the two agents created in this test's namespaces. Neither host has a
route out of the machine for these ranges (the unreachable guards). Clean-up: the pods are
deleted through the API, then containers, networks and routes by the names and IDs made
here, the namespace and veth by name, and processes by PID.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import urllib.request

import pytest

from . import containers as ct
from .harness import _env, poll, shared_cluster, to_yaml
from .test_hosts import Host2, JoinedAgent, ip, node_ready
from .test_nodeloss import LEASE

ANNOTATION = "sendo.dev/container-pod-cidr"
PROTO = "211"  # sendo's route protocol and the pods' routing table (agent/noderoutes.py)


class ContainerAgent(JoinedAgent):
    """The joined agent with the docker runtime, on the test's service twin range."""

    def __init__(self, cluster, host, join, svc_cidr: str):
        super().__init__(cluster, host, join, name="xb")
        self.svc_cidr = svc_cidr

    def command(self, *extra: str) -> list[str]:
        argv = super().command("--runtime", "docker", "--container-service-cidr", self.svc_cidr, *extra)
        assert argv[:4] == ["ip", "netns", "exec", self.host.netns], argv
        return in_netns(self.host.netns, *argv[4:])

    def start(self) -> None:
        with open(self.cluster.base / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=_env(HOME=str(self.cluster.home)))


def in_netns(netns: str, *argv: str) -> list[str]:
    """`argv` in the namespace's network only: `ip netns exec` would also mount a sysfs of its
    own over /sys, hiding the cgroup mounts the engine's runc needs. nsenter execs: the PID is
    the program's own."""
    return ["nsenter", f"--net=/run/netns/{netns}", *argv]


def netns_run(netns: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
    return ct.run(in_netns(netns, *argv), check=check)


@pytest.fixture(scope="module")
def xhosts(tmp_path_factory, container_image):
    image, registry = container_image
    # both engines share this machine's image store: pulled here once (from loopback), the pod
    # on the namespace host finds it present (its engine cannot reach the root's loopback)
    ct.run(["podman", "pull", "-q", "--tls-verify=false", image])
    pod_cidr, svc_cidr, net_args = ct.container_cidrs()
    h2 = Host2()
    agent = None
    try:
        h2.create()
        flags = ("--host", h2.root_ip, "--node-name", "xa", "--no-ingress", "--runtime", "docker", *LEASE, *net_args)
        with shared_cluster(tmp_path_factory.mktemp("xnet"), flags) as c:
            try:
                join = next((line for line in c.stdout_lines if line.startswith("sendo agent ")), None)
                assert join and f"--container-cidr {pod_cidr}" in join, (join, c.stdout_lines)
                agent = ContainerAgent(c, h2, join.split(), svc_cidr)
                agent.start()
                yield c, h2, agent, image, pod_cidr, svc_cidr
            finally:
                c.kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s", check=False)
                if agent is not None:
                    agent.stop()
                    state = str((agent.data_dir / "agent" / "xb" / "docker").resolve())
                    ids = netns_run(h2.netns, "podman", "ps", "-aq", "--filter",
                                    f"label=io.sendo.owner={state}").stdout.split()
                    if ids:
                        netns_run(h2.netns, "podman", "rm", "-f", "-t", "0", *ids)
                    net = ct.network_name_of(state)
                    netns_run(h2.netns, "podman", "network", "rm", "-f", net)
                try:
                    bridge = ct.bridge_of(c)
                except AssertionError:  # xa never made its pod network
                    bridge = ""
                c.stop()
                if bridge:  # the guard of xa's bridge (agent/noderoutes.py)
                    ct.run(["ip", "rule", "del", "pref", "2110", "iif", bridge, "lookup", PROTO], check=False)
                    ct.run(["ip", "rule", "del", "pref", "2111", "iif", bridge, "unreachable"], check=False)
                ct.cleanup_engine(c, pod_cidr, svc_cidr)
                for table in ("main", PROTO):
                    ct.run(["ip", "route", "flush", "root", pod_cidr, "table", table, "proto", PROTO], check=False)
    finally:
        h2.delete()


def blocks(c) -> dict[str, ipaddress.IPv4Network]:
    from kubernetes import client as k8s
    nodes = k8s.CoreV1Api(c.api()).list_node().items
    return {n.metadata.name: ipaddress.ip_network((n.metadata.annotations or {}).get(ANNOTATION, "0.0.0.0/32"))
            for n in nodes}


def route(addr: str, netns: str | None = None) -> dict:
    r = subprocess.run(["ip", *(["-n", netns] if netns else []), "-j", "route", "get", addr],
                       capture_output=True, text=True, timeout=30)
    return json.loads(r.stdout)[0] if r.returncode == 0 else {"error": r.stderr.strip()}


def unreachable(addr: str, netns: str | None = None) -> bool:
    r = route(addr, netns)
    return "No route to host" in r.get("error", "") or r.get("type") == "unreachable"


def http_get(addr: str, port: int, want_dev: str) -> str:
    """GET from the host, only once the kernel sends `addr` out through `want_dev`
    (the test's veth) or delivers it locally (a ClusterIP on loopback)."""
    r = route(addr)
    assert r.get("dev") == want_dev or r.get("type") == "local", f"refusing to send to {addr}: routes {r}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{addr}:{port}/", timeout=5) as resp:
        return resp.read().decode()


SERVE = "mkdir -p /www && echo hello-from-xb > /www/index.html && exec httpd -f -p 0.0.0.0:8080 -h /www"


def test_pods_and_services_answer_across_hosts(xhosts):
    c, h2, agent, image, pod_cidr, svc_cidr = xhosts
    poll(lambda: node_ready(c, "xb") == "True", 90, what="node xb Ready")
    b = blocks(c)
    assert set(b) == {"xa", "xb"} and b["xa"] != b["xb"], b
    assert all(n.prefixlen == 24 and n.subnet_of(ipaddress.ip_network(pod_cidr)) for n in b.values()), b
    a_probe, b_probe = str(b["xa"].network_address + 200), str(b["xb"].network_address + 200)
    spare = str(next(n for n in ipaddress.ip_network(pod_cidr).subnets(new_prefix=24)
                     if n not in b.values()).network_address + 9)

    # the guards and the routes, before any pod: each host sends the other's block over the
    # veth, and any other address of the pod or service range is refused on both hosts
    poll(lambda: route(b_probe).get("gateway") == h2.ip and route(b_probe).get("dev") == h2.veth, 60,
         what=f"xa routes {b['xb']} via {h2.ip}")
    poll(lambda: route(a_probe, h2.netns).get("gateway") == h2.root_ip, 60,
         what=f"xb routes {b['xa']} via {h2.root_ip}")
    svc_probe = str(ipaddress.ip_network(svc_cidr).network_address + 77)
    for ns in (None, h2.netns):
        assert unreachable(spare, ns), route(spare, ns)
        # the twins: refused, or held by the node once its pod network is up
        assert unreachable(svc_probe, ns) or route(svc_probe, ns).get("type") == "local", route(svc_probe, ns)
    assert ip("-n", h2.netns, "route", "show", "default").strip() == ""

    def pod(name: str, node: str, command: str, labels: dict | None = None) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", command]}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "xweb"},
           "spec": {"selector": {"app": "xweb"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    c.kubectl("apply", "-f", "-", input="\n---\n".join(to_yaml(o) for o in (
        pod("client", "xa", "exec sleep 3600"), pod("web", "xb", SERVE, {"app": "xweb"}), svc)))

    from kubernetes import client as k8s
    core = k8s.CoreV1Api(c.api())

    def running(name: str):
        def check():
            p = core.read_namespaced_pod(name, "default")
            return p if p.status.phase == "Running" and p.status.pod_ip else None
        try:
            return poll(check, 120, what=f"pod {name} Running")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{c.kubectl('describe', 'pod', name, check=False).stdout}") from None
    web = running("web")
    client = running("client")
    assert web.spec.node_name == "xb" and ipaddress.ip_address(web.status.pod_ip) in b["xb"]
    assert client.spec.node_name == "xa" and ipaddress.ip_address(client.status.pod_ip) in b["xa"]
    web_ip, gw_a = web.status.pod_ip, str(b["xa"].network_address + 1)
    # on xb, the pod's address is on its bridge (in the namespace), not routed anywhere else
    assert route(web_ip, h2.netns).get("dev", "").startswith("podman") or \
        route(web_ip, h2.netns).get("prefsrc") == str(b["xb"].network_address + 1), route(web_ip, h2.netns)

    # from host xa: over the veth, from xa's bridge address (what xb's pods can answer)
    poll(lambda: route(web_ip).get("prefsrc") == gw_a, 60, what="xa's route to xb leaves from its bridge address")
    assert route(web_ip).get("dev") == h2.veth and route(web_ip).get("gateway") == h2.ip
    assert poll(lambda: _try(lambda: http_get(web_ip, 8080, h2.veth)), 60,
                what="xb's pod from host xa").strip() == "hello-from-xb"

    # what a pod on xa sends is forwarded to other nodes' pods and nowhere else (asked of the
    # kernel, nothing sent): TEST-NET-1 and xb's veth address are refused from the bridge
    bridge = ct.bridge_of(c)
    for elsewhere in ("192.0.2.1", h2.ip):
        r = ct.run(["ip", "route", "get", elsewhere, "from", client.status.pod_ip, "iif", bridge], check=False)
        assert r.returncode != 0 and "unreachable" in (r.stdout + r.stderr).lower() or \
            "No route to host" in r.stderr, (elsewhere, r.stdout, r.stderr)
    got = ct.run(["ip", "route", "get", web_ip, "from", client.status.pod_ip, "iif", bridge]).stdout
    assert f"via {h2.ip} dev {h2.veth}" in got, got

    # from the pod on xa: its route to the pod CIDR goes to its node (checked in the pod first)
    got = c.kubectl("exec", "client", "--", "ip", "route", "get", web_ip).stdout
    assert f"via {gw_a}" in got, got
    request = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {} {}'
    out = poll(lambda: _ok(c.kubectl("exec", "client", "--", "sh", "-c", request.format(web_ip, 8080),
                                     check=False)), 60, what="xb's pod from xa's pod")
    assert "hello-from-xb" in out, out

    # the Service's only endpoint is on xb: node xa's proxy forwards to it over the route
    cluster_ip = core.read_namespaced_service("xweb", "default").spec.cluster_ip
    poll(lambda: web_ip in c.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=xweb",
                                     "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}").stdout, 60,
         what="the Service's endpoint")
    assert poll(lambda: _try(lambda: http_get(cluster_ip, 80, "lo")), 60,
                what="the ClusterIP from host xa").strip() == "hello-from-xb"
    twin = str(ipaddress.ip_network(svc_cidr).network_address
               + (int(ipaddress.ip_address(cluster_ip)) - int(ipaddress.ip_address("127.32.0.0"))))
    got = c.kubectl("exec", "client", "--", "ip", "route", "get", twin).stdout
    assert f"via {gw_a}" in got, got
    out = poll(lambda: _ok(c.kubectl("exec", "client", "--", "sh", "-c", request.format(twin, 80), check=False)),
               60, what="the Service's twin from xa's pod")
    assert "hello-from-xb" in out, out

    # node xb goes: xa's route to its block goes with it, the guard refuses the block again
    c.kubectl("delete", "pod", "web", "--wait=true", "--timeout=60s")
    agent.stop()
    c.kubectl("delete", "node", "xb")
    poll(lambda: unreachable(b_probe), 60, what=f"xa's route to {b['xb']} removed")
    assert str(b["xb"]) not in ip("-4", "route", "show", "proto", PROTO)


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def _ok(r: subprocess.CompletedProcess) -> str | None:
    return r.stdout if r.returncode == 0 and "hello" in r.stdout else None
