"""Services through a real `sendo up` and the real kubectl: cluster IP load balancing
over a Deployment's pods, Endpoints that follow scaling, a NodePort, a LoadBalancer.

All traffic goes to loopback: cluster IPs are 127.32.x, pod IPs 127.64.0.0/10, and the
node's address is 127.0.0.1 (harness.http_get refuses anything else)."""
from __future__ import annotations

import random
import socket

import dns.message
import dns.query

from .harness import Cluster, http_get, poll, ready_pods, to_yaml, unique_port


def cluster_dns_address(cluster: Cluster) -> tuple[str, int]:
    """The DNS address `sendo up` reported (its last start), a loopback address."""
    found = None
    for line in cluster.log_path.read_text(errors="replace").splitlines():
        if "Cluster DNS at" in line:
            found = line.split("Cluster DNS at", 1)[1].split()[0]
    assert found, "sendo up did not print its DNS address"
    host, port = found.rsplit(":", 1)
    assert host.startswith("127."), host
    return host, int(port)

# answers GET with its pod name; binds its pod IP only
SERVER = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["POD_NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[3], int(sys.argv[1])), H).serve_forever()
"""


def whoami_deployment(name: str, port: int, replicas: int = 3) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "web", "image": "python:3.11",
                    "command": ["python3", "-c", SERVER, str(port), "--bind", "$(POD_IP)"],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "ports": [{"name": "http", "containerPort": port}],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                }]},
            },
        },
    }


def service(name: str, port: int, selector: str, type_: str = "ClusterIP", node_port: int | None = None) -> dict:
    p = {"name": "http", "port": port, "targetPort": "http"}
    if node_port:
        p["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": selector}, "ports": [p]}}


def free_node_port() -> int:
    """A node port nothing on this machine listens on (parallel clusters allocate node ports too)."""
    for _ in range(200):
        port = random.randrange(30000, 32768)
        try:
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))
            return port
        except OSError:
            continue
    raise AssertionError("no free node port")


def get(ip: str, port: int) -> str | None:
    try:
        status, body = http_get(ip, port, timeout=2.0)
    except OSError:
        return None
    return body.decode() if status == 200 else None


def endpoint_ips(cluster: Cluster, name: str) -> tuple[set[str], set[str]]:
    ep = cluster.kubectl_json("get", "endpoints", name)
    ready, not_ready = set(), set()
    for ss in ep.get("subsets") or []:
        ready |= {a["ip"] for a in ss.get("addresses") or []}
        not_ready |= {a["ip"] for a in ss.get("notReadyAddresses") or []}
    return ready, not_ready


def test_cluster_ip_balances_and_follows_scaling(cluster: Cluster):
    port, sport = unique_port(), unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(whoami_deployment("whoami", port),
                                                      service("whoami", sport, "whoami")))
    pods = poll(lambda: ready_pods(cluster, "app=whoami", 3, port), 60, what="3 whoami pods answering")
    names = {p["metadata"]["name"] for p in pods}
    ips = {p["status"]["podIP"] for p in pods}

    svc = cluster.kubectl_json("get", "svc", "whoami")
    cip = svc["spec"]["clusterIP"]
    assert cip.startswith("127.32."), cip
    poll(lambda: endpoint_ips(cluster, "whoami") == (ips, set()), 10, what="Endpoints list the 3 pods")
    slices = cluster.kubectl_json("get", "endpointslices", "-l", "kubernetes.io/service-name=whoami")["items"]
    assert {e["addresses"][0] for s in slices for e in s["endpoints"]} == ips
    assert all(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
               == "endpointslice-controller.k8s.io" for s in slices)
    assert all(s["ports"] == [{"name": "http", "port": port, "protocol": "TCP"}] for s in slices)

    # HTTP to the cluster IP reaches every pod
    poll(lambda: get(cip, sport) in names, 10, what="the cluster IP answers")
    seen = [get(cip, sport) for _ in range(30)]
    assert None not in seen, seen
    assert set(seen) == names, seen

    # by name: sendo's DNS answers the Service name (dnspython), and the answer answers through the proxy
    dns_host, dns_port = cluster_dns_address(cluster)
    query = dns.message.make_query("whoami.default.svc.cluster.local", "A")
    resolved = [r.address for rrset in dns.query.udp(query, dns_host, port=dns_port, timeout=2).answer for r in rrset]
    assert resolved == [cip]
    assert get(resolved[0], sport) in names

    # scale down: the Endpoints follow `kubectl scale` (polled with the official client)
    from kubernetes import client as k8s
    core = k8s.CoreV1Api(cluster.api())
    cluster.kubectl("scale", "deployment/whoami", "--replicas=1")

    def ready_ips():
        ep = core.read_namespaced_endpoints("whoami", "default")
        ready = {a.ip for ss in ep.subsets or [] for a in ss.addresses or []}
        return ready if len(ready) == 1 else None
    (left,) = poll(ready_ips, 10, interval=0.02, what="Endpoints following the scale-down")
    survivor = next(p["metadata"]["name"] for p in pods if p["status"]["podIP"] == left)
    assert {get(cip, sport) for _ in range(10)} == {survivor}
    # scale up again: the new pods join the Endpoints and answer through the service
    cluster.kubectl("scale", "deployment/whoami", "--replicas=3")
    pods = poll(lambda: ready_pods(cluster, "app=whoami", 3, port), 60, what="3 pods again")
    names = {p["metadata"]["name"] for p in pods}
    poll(lambda: endpoint_ips(cluster, "whoami")[0] == {p["status"]["podIP"] for p in pods}, 10,
         what="Endpoints list the new pods")
    seen = {get(cip, sport) for _ in range(30)}
    assert seen == names, seen

    out = cluster.kubectl("get", "endpoints", "whoami").stdout
    assert f":{port}" in out
    described = cluster.kubectl("describe", "service", "whoami").stdout
    endpoints_line = next(l for l in described.splitlines() if l.startswith("Endpoints:"))
    assert all(f"{p['status']['podIP']}:{port}" in endpoints_line for p in pods), described


def test_node_port_and_load_balancer(cluster: Cluster):
    port = unique_port()
    np_port, lb_port = free_node_port(), unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(
        whoami_deployment("edge", port, replicas=2),
        service("edge-np", unique_port(), "edge", "NodePort", node_port=np_port),
        service("edge-lb", lb_port, "edge", "LoadBalancer")))
    pods = poll(lambda: ready_pods(cluster, "app=edge", 2, port), 60, what="2 edge pods answering")
    names = {p["metadata"]["name"] for p in pods}

    np_svc = cluster.kubectl_json("get", "svc", "edge-np")
    assert np_svc["spec"]["ports"][0]["nodePort"] == np_port
    poll(lambda: get("127.0.0.1", np_port) in names, 15, what="the node port answers on 127.0.0.1")
    assert {get("127.0.0.1", np_port) for _ in range(10)} == names

    def ingress():
        s = cluster.kubectl_json("get", "svc", "edge-lb")
        return ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    assert poll(ingress, 15, what="the load balancer's ingress IP") == [{"ip": "127.0.0.1"}]
    row = cluster.kubectl("get", "svc", "edge-lb", "--no-headers").stdout.split()
    assert row[1] == "LoadBalancer" and row[3] == "127.0.0.1", row
    lb = cluster.kubectl_json("get", "svc", "edge-lb")
    # the load balancer's address and port, and the cluster IP, reach the pods
    poll(lambda: get("127.0.0.1", lb_port) in names, 15, what="the load balancer answers")
    assert get(lb["spec"]["clusterIP"], lb_port) in names
