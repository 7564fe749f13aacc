"""A rolling update under traffic drops no request: readiness gates new pods into the
Service, maxUnavailable 0 keeps capacity, and preStop holds old pods until the proxy has
stopped sending them connections. A bounded request loop on loopback counts failures."""
from __future__ import annotations

import threading

from .harness import Cluster, http_get, poll, to_yaml, unique_port

SERVER = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["VERSION"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(sys.argv[1])), H).serve_forever()
"""


def web(port: int, version: str) -> dict:
    labels = {"app": "roll"}
    container = {
        "name": "web", "image": "python:3.11", "command": ["python3", "-c", SERVER, str(port)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "VERSION", "value": version}],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]}}}}


def test_rolling_update_under_load_fails_no_request(cluster: Cluster):
    port = unique_port()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "roll"},
           "spec": {"selector": {"app": "roll"}, "ports": [{"port": port, "targetPort": "http"}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web(port, "v1"), svc))
    cluster.kubectl("rollout", "status", "deploy/roll", "--timeout=60s")
    ip = cluster.kubectl("get", "svc", "roll", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    poll(lambda: http_get(ip, port)[1] == b"v1", timeout=10, what="the service to answer")

    results: list[tuple[int, bytes] | Exception] = []
    stop = threading.Event()

    def load():  # bounded: one request every 20 ms, at most 3,000 requests
        while not stop.is_set() and len(results) < 3000:
            try:
                results.append(http_get(ip, port, timeout=5))
            except Exception as e:  # noqa: BLE001 - every failure counts
                results.append(e)
            stop.wait(0.02)  # pacing of the request loop
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        poll(lambda: len(results) >= 20, timeout=10, what="traffic before the update")
        cluster.kubectl("apply", "-f", "-", input=to_yaml(web(port, "v2")))
        cluster.kubectl("rollout", "status", "deploy/roll", "--timeout=120s")
        poll(lambda: results and results[-1] == (200, b"v2"), timeout=20, what="v2 to answer")
        settled = len(results)
        poll(lambda: len(results) >= settled + 20, timeout=10, what="traffic after the update")
    finally:
        stop.set()
        t.join(10)
    failures = [r for r in results if not (isinstance(r, tuple) and r[0] == 200)]
    bodies = {r[1] for r in results if isinstance(r, tuple)}
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:3]}"
    assert bodies == {b"v1", b"v2"} and len(results) > 100
    assert len(cluster.kubectl_json("get", "rs", "-l", "app=roll")["items"]) == 2
