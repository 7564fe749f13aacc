"""Service traffic to process-runtime pods on another host: the service proxy reaches a
loopback pod IP of another machine through that node's agent (the pod tunnel:
network/tunnel.py, agent/tunnel.py).

Two "hosts", as in test_hosts: the root network namespace (`sendo up --host <veth
address>`, node pa) and a network namespace this module creates (the joined `sendo
agent`, node pb), tied by a veth pair on a private /30 of 10.250.0.0/16. Each node's
podCIDR is a loopback /24 of a `--cluster-cidr` of this run's own: pb's pods listen on
addresses of the namespace's loopback, which the root namespace cannot reach. Checked with
kubectl and the official `kubernetes` client:

* a process-runtime Deployment whose pods all run on pb, behind a ClusterIP Service: from
  host pa, the ClusterIP answers from both pods (pa's proxy tunnels through pb's agent),
  and each pod logged the request;
* pb's agent refuses a tunnel without the node token (401) and one to an address outside
  its podCIDR, its own host address or a pod address of pa (403), before any upgrade.

Network safety: the veth routes are checked by Host2.create (`ip route get`) before
anything is sent, the namespace has no default route, and the only non-loopback address
contacted is pb's agent on its veth address. The container ranges are this run's own
(unreachable guards removed at the end), as in test_hosts. Clean-up: the namespace and
veth by name, processes by PID.
"""
from __future__ import annotations

import ipaddress
import random
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.e2e.containers import container_cidrs
from tests.e2e.harness import http_get, poll, shared_cluster, to_yaml, unique_port, web_deployment
from tests.e2e.test_hosts import Host2, JoinedAgent, _kill_in, node_ready, route_get
from tests.e2e.test_nodeloss import LEASE

CLUSTER_CIDR = ipaddress.ip_network(f"127.{random.randrange(200, 250)}.0.0/16")  # a /24 per node


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    h2 = Host2()
    pod_cidr = svc_cidr = ""
    try:
        h2.create()
        inode = h2.inode()
        pod_cidr, svc_cidr, net_args = container_cidrs()
        flags = ("--host", h2.root_ip, "--node-name", "pa", "--no-ingress", *LEASE,
                 "--cluster-cidr", str(CLUSTER_CIDR), "--node-cidr-mask-size", "24", *net_args)
        with shared_cluster(tmp_path_factory.mktemp("xproc"), flags) as c:
            join = next((line for line in c.stdout_lines if line.startswith("sendo agent ")), None)
            assert join, f"`sendo up` printed no join command: {c.stdout_lines}"
            agent = JoinedAgent(c, h2, join.split(), name="pb")
            try:
                agent.start()
                poll(lambda: node_ready(c, "pb") == "True", 90, what="pb Ready")
                yield c, h2
            finally:
                c.kubectl("delete", "deployment", "--all", "--wait=true", "--timeout=60s", check=False)
                agent.stop()
                _kill_in(inode, c.data_dir)
    finally:
        h2.delete()
        for cidr in filter(None, (pod_cidr, svc_cidr)):
            subprocess.run(["ip", "route", "del", "unreachable", cidr], capture_output=True, timeout=30)


def tunnel_status(h2: Host2, port: int, ip: str, pod_port: int, token: str | None) -> tuple[int, str]:
    """A pod-tunnel request to pb's agent (on its veth address, routed there: Host2.create checked)."""
    assert route_get(h2.ip).get("dev") == h2.veth, route_get(h2.ip)
    query = urllib.parse.urlencode({"ip": ip, "port": pod_port})
    req = urllib.request.Request(f"http://{h2.ip}:{port}/podTunnel?{query}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_service_reaches_process_pods_on_another_host(two_hosts):
    c, h2 = two_hosts
    from kubernetes import client as k8s
    core = k8s.CoreV1Api(c.api())
    nodes = {n.metadata.name: n for n in core.list_node().items}
    blocks = {name: ipaddress.ip_network(n.spec.pod_cidr) for name, n in nodes.items()}
    assert set(blocks) == {"pa", "pb"} and not blocks["pa"].overlaps(blocks["pb"]), blocks

    port = unique_port()
    web = web_deployment("far", port, replicas=2)
    spec = web["spec"]["template"]["spec"]
    spec["nodeSelector"] = {"kubernetes.io/hostname": "pb"}
    spec["containers"][0]["command"] = [
        "sh", "-c", f"mkdir -p www && echo $HOSTNAME > www/index.html && "
                    f"exec python3 -m http.server {port} --bind $POD_IP --directory www"]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "far"},
           "spec": {"selector": {"app": "far"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    c.kubectl("apply", "-f", "-", input=to_yaml(web, svc))

    def ready_on_pb():
        items = core.list_namespaced_pod("default", label_selector="app=far").items
        ok = [p for p in items if p.status.phase == "Running" and p.status.pod_ip
              and any(cd.type == "Ready" and cd.status == "True" for cd in p.status.conditions or [])]
        return ok if len(ok) == 2 and len(items) == 2 else None
    try:
        pods = poll(ready_on_pb, 120, what="2 pods Ready on pb")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{c.kubectl('describe', 'pods', '-l', 'app=far', check=False).stdout}") from None
    assert all(p.spec.node_name == "pb" and ipaddress.ip_address(p.status.pod_ip) in blocks["pb"] for p in pods)
    names = {p.metadata.name for p in pods}
    # pb's pod addresses are the namespace's loopback: not this host's
    assert route_get(pods[0].status.pod_ip).get("type") == "local"  # 127/8 here, where nothing listens on it
    assert poll(lambda: _answers_not(pods[0].status.pod_ip, port), 10, what="pb's pod IP is not served here")

    poll(lambda: sorted(c.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=far", "-o",
                                  "jsonpath={.items[*].endpoints[*].nodeName}").stdout.split()) == ["pb", "pb"],
         60, what="the Service's two endpoints on pb")
    cluster_ip = core.read_namespaced_service("far", "default").spec.cluster_ip
    seen: set[str] = set()

    def both_answer():
        body = _get(cluster_ip, 80)
        if body:
            seen.add(body.strip())
        return seen >= names
    poll(both_answer, 90, what=f"both pods through the ClusterIP from host pa (seen {seen})")
    assert seen == names, seen
    # the requests reached the pods on pb (each logged its GET)
    for name in names:
        assert poll(lambda n=name: "GET / HTTP" in c.kubectl("logs", n, check=False).stderr
                    + c.kubectl("logs", n, check=False).stdout, 30, what=f"{name} logged the request")

    # pb's agent: no tunnel without the node token, none outside its podCIDR (nothing dialled)
    agent_port = nodes["pb"].status.daemon_endpoints.kubelet_endpoint.port
    token = (c.data_dir / "server" / "node-token").read_text().strip()
    code, text = tunnel_status(h2, agent_port, pods[0].status.pod_ip, port, None)
    assert code == 401 and "node token" in text, (code, text)
    for outside in (h2.ip, str(blocks["pa"].network_address + 5)):  # its own host; a pod address of pa
        code, text = tunnel_status(h2, agent_port, outside, agent_port, token)
        assert code == 403 and f"{outside} is not in this node's podCIDR ({blocks['pb']})" in text, (code, text)
    code, text = tunnel_status(h2, agent_port, pods[0].status.pod_ip, port, token)
    assert code == 400 and "WebSocket" in text, (code, text)  # allowed, but a plain GET is no tunnel


def _get(ip: str, port: int) -> str | None:
    try:
        status, body = http_get(ip, port, timeout=10)
    except OSError:
        return None
    return body.decode() if status == 200 else None


def _answers_not(ip: str, port: int) -> bool:
    return _get(ip, port) is None
