"""kubectl port-forward to a pod and to a service, as kubectl 1.37 does it by default
(SPDY/3.1 tunnelled in a WebSocket), with concurrent connections and megabyte bodies
both ways; a refused port reported the way kubectl reports it; the official Python
client's port-forward (the v4.channel.k8s.io protocol)."""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

from sendo.server import free_port

from .harness import KUBECTL, REPO, Cluster, LineReader, poll, ready_pods, to_yaml, unique_port

# A small web server bound to the pod IP: GET / names the pod, GET /big is 2 MiB,
# POST /echo answers with the request body.
SERVER = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = bytes(range(256)) * 8192

class Handler(BaseHTTPRequestHandler):
    def reply(self, body, ctype="application/octet-stream"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/big":
            return self.reply(BIG)
        self.reply(("hello from " + os.environ["HOSTNAME"] + " " + self.path).encode(), "text/plain")

    def do_POST(self):
        self.reply(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def log_message(self, *args):
        pass

ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
BIG_SHA = hashlib.sha256(bytes(range(256)) * 8192).hexdigest()


def _objects(port: int) -> tuple[dict, dict]:
    labels = {"app": "pfweb"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pfweb", "labels": labels},
           "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
               "name": "web", "image": "python:3.11",
               "command": ["python3", "-c", SERVER, "$(POD_IP)", str(port)],
               "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
               "ports": [{"name": "http", "containerPort": port}]}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pfweb"},
           "spec": {"selector": labels, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    return pod, svc


def _start_pod(cluster: Cluster) -> int:
    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(*_objects(port)))
    poll(lambda: ready_pods(cluster, "app=pfweb", 1, port), 40, what="pfweb Ready and answering")
    return port


def _port_forward(cluster: Cluster, *args: str) -> tuple[subprocess.Popen, LineReader, LineReader]:
    """`kubectl port-forward` with kubectl's defaults (the WebSocket tunnel: the opt-out
    variable is removed from its environment); terminated by PID by the test, and at
    teardown at the latest."""
    env = {k: v for k, v in cluster.env().items() if k != "KUBECTL_PORT_FORWARD_WEBSOCKETS"}
    p = subprocess.Popen([str(KUBECTL), "port-forward", *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    cluster._helpers.append(p)
    return p, LineReader(p.stdout), LineReader(p.stderr)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
    p.wait(10)


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """HTTP through the local end of the forward (127.0.0.1 only)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _exercise(local: int, pod_name: str = "pfweb") -> None:
    """Five concurrent requests, a 2 MiB download and a 1.5 MB upload through one forward."""
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: _request(local, "GET", f"/r{i}"), range(5)))
    assert results == [(200, f"hello from {pod_name} /r{i}".encode()) for i in range(5)], results

    status, body = _request(local, "GET", "/big")
    assert status == 200 and len(body) == 2 * 1024 * 1024
    assert hashlib.sha256(body).hexdigest() == BIG_SHA

    upload = os.urandom(1_500_000)
    status, body = _request(local, "POST", "/echo", upload)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(upload).digest()


def test_port_forward_pod_and_service(cluster: Cluster):
    port = _start_pod(cluster)

    # ---- pod/<name>
    local = free_port()
    p, out, err = _port_forward(cluster, "pod/pfweb", f"{local}:{port}")
    try:
        line = out.wait_for("Forwarding from 127.0.0.1:", 30)
        assert line == f"Forwarding from 127.0.0.1:{local} -> {port}", line
        _exercise(local)
        assert p.poll() is None, f"kubectl port-forward exited: {err.lines}"
        out.wait_for("Handling connection for", 5)
    finally:
        _stop(p)
    assert not [l for l in err.lines if "error" in l.lower()], err.lines

    # ---- svc/<name>: kubectl picks a pod of the service and maps port 80 to targetPort "http"
    local = free_port()
    p, out, err = _port_forward(cluster, "svc/pfweb", f"{local}:80")
    try:
        line = out.wait_for("Forwarding from 127.0.0.1:", 30)
        assert line == f"Forwarding from 127.0.0.1:{local} -> {port}", line
        _exercise(local)
        assert p.poll() is None, f"kubectl port-forward exited: {err.lines}"
    finally:
        _stop(p)
    assert not [l for l in err.lines if "error" in l.lower()], err.lines


def test_port_forward_errors_and_python_client(cluster: Cluster):
    port = _start_pod(cluster)
    closed = unique_port()  # nothing listens there in the pod

    # a refused port: kubectl prints the reason from the error stream and stops
    local = free_port()
    p, out, err = _port_forward(cluster, "pod/pfweb", f"{local}:{closed}")
    try:
        out.wait_for("Forwarding from 127.0.0.1:", 30)
        try:
            _request(local, "GET", "/")
        except (OSError, http.client.HTTPException):
            pass  # the local connection is closed without an answer
        line = err.wait_for("error forwarding port", 20)
        assert re.search(rf"error forwarding port {closed} to pod default/pfweb: dial tcp "
                         rf"127\.[0-9.]+:{closed}: connect: connection refused", line), line
        err.wait_for("lost connection to pod", 20)
        assert p.wait(20) == 1
    finally:
        _stop(p)

    # a pod that does not exist: kubectl's own lookup fails
    r = cluster.kubectl("port-forward", "pod/nope", f"{free_port()}:80", check=False, timeout=30)
    assert r.returncode == 1 and 'pods "nope" not found' in r.stderr, r.stderr

    # the official Python client speaks the v4.channel.k8s.io protocol
    from kubernetes import client
    from kubernetes.stream import portforward
    api = client.CoreV1Api(cluster.api())
    fwd = portforward(api.connect_get_namespaced_pod_portforward, "pfweb", "default", ports=str(port))
    try:
        sock = fwd.socket(port)
        sock.setblocking(True)
        sock.settimeout(20)
        sock.sendall(b"GET /py HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"hello from pfweb /py"), data[-200:]
        assert fwd.error(port) is None
        sock.close()
    finally:
        fwd.close()
