"""Ingress through a real `sendo up` and the real kubectl: the built-in controller routes by host
and path to Deployments behind Services, falls back to a default backend, answers 404 for
unknown hosts, and serves TLS by SNI from a Secret made with `kubectl create secret tls`.

Host names like web.example.test are never resolved: requests go to the node's address
(127.0.0.1) with a Host header (and an SNI name). The ingress listens on ports of this
test's own, passed to `sendo up` through SENDO_INGRESS_HTTP_PORT / SENDO_INGRESS_HTTPS_PORT."""
from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import socket
import ssl

import pytest

from .harness import Cluster, poll, ready_pods, to_yaml, unique_port

NODE = "127.0.0.1"

# answers every GET with "<pod name> <path>"; binds its pod IP only
SERVER = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (os.environ["POD_NAME"] + " " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.send_header("X-Seen-Forwarded-Proto", self.headers.get("X-Forwarded-Proto", ""))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[3], int(sys.argv[1])), H).serve_forever()
"""


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """`sendo up` whose ingress listens on ports of this test (the harness passes the environment on)."""
    http_port, https_port = unique_port(), unique_port()
    monkeypatch.setenv("SENDO_INGRESS_HTTP_PORT", str(http_port))
    monkeypatch.setenv("SENDO_INGRESS_HTTPS_PORT", str(https_port))
    c = Cluster(tmp_path)
    c.ingress_ports = (http_port, https_port)
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


def app(name: str, port: int, replicas: int, sport: int) -> list[dict]:
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "web", "image": "python:3.11",
                "command": ["python3", "-c", SERVER, str(port), "--bind", "$(POD_IP)"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"name": "http", "containerPort": port}],
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": sport, "targetPort": "http"}]}}
    return [deployment, service]


def via_ingress(port: int, host: str, path: str = "/") -> tuple[int, str, dict]:
    """GET through the ingress on the node's address, naming the site only in the Host header."""
    assert ipaddress.ip_address(NODE).is_loopback  # network safety: loopback only
    conn = http.client.HTTPConnection(NODE, port, timeout=3)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace"), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def answer(port: int, host: str, path: str = "/") -> str | None:
    try:
        status, body, _ = via_ingress(port, host, path)
    except OSError:
        return None
    return body if status == 200 else None


def via_tls(port: int, sni: str, ca_pem: str, path: str = "/") -> tuple[bytes, str]:
    """GET over TLS with SNI `sni`, trusting only ca_pem; returns (status line, body)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    with socket.create_connection((NODE, port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body.decode(errors="replace")


def self_signed(host: str, directory) -> tuple[str, str]:
    """A certificate for host made here (cryptography); returns the cert and key file paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_ingress_routes_by_host_and_path_with_default_backend_and_tls(cluster: Cluster, tmp_path):
    http_port, https_port = cluster.ingress_ports
    web_port, api_port, web_sport, api_sport = (unique_port() for _ in range(4))
    site = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site"},
            "spec": {"rules": [{"host": "web.example.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": web_sport}}}},
                {"path": "/api", "pathType": "Prefix",
                 "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(*app("web", web_port, 2, web_sport),
                                                      *app("api", api_port, 1, api_sport), site))

    # the controller made its class, the default one; the Ingress (no class) is ours and gets the address
    cls = cluster.kubectl_json("get", "ingressclass", "sendo")
    assert cls["spec"]["controller"] == "sendo.dev/ingress"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    poll(lambda: cluster.kubectl_json("get", "ingress", "site")["status"]["loadBalancer"].get("ingress")
         == [{"ip": NODE}], 15, what="the node's address in the Ingress status")
    row = cluster.kubectl("get", "ing", "site", "--no-headers").stdout.split()
    assert row[:5] == ["site", "<none>", "web.example.test", NODE, "80"], row
    described = cluster.kubectl("describe", "ingress", "site").stdout
    assert "web.example.test" in described and "/api" in described and "api:http" in described, described

    web_pods = poll(lambda: ready_pods(cluster, "app=web", 2), 60, what="2 web pods ready")
    api_pods = poll(lambda: ready_pods(cluster, "app=api", 1), 60, what="the api pod ready")
    web_names = {p["metadata"]["name"] for p in web_pods}
    api_name = api_pods[0]["metadata"]["name"]

    # host + path routing; every request takes a new connection through the service proxy: both replicas answer
    poll(lambda: (answer(http_port, "web.example.test") or "").split(" ")[0] in web_names, 20,
         what="web.example.test answers through the ingress")
    def twenty() -> list:
        return [answer(http_port, "web.example.test", f"/page/{i}") for i in range(20)]

    def both(seen: list) -> bool:  # the node's proxy may see the second pod's endpoint after the API does
        return all(s is not None for s in seen) and {s.split(" ")[0] for s in seen} == web_names
    seen = poll(lambda: (lambda s: s if both(s) else None)(twenty()), 60, what="20 requests answered by both pods")
    assert seen[3].endswith(" /page/3")
    poll(lambda: answer(http_port, "web.example.test", "/api/users?id=7") == f"{api_name} /api/users?id=7", 10,
         what="/api goes to the api service")
    assert answer(http_port, "WEB.example.test:80", "/apiary").split(" ")[0] in web_names  # /api is not /apiary
    status, body, headers = via_ingress(http_port, "web.example.test", "/x")
    assert status == 200 and headers["x-seen-host"] == "web.example.test"
    assert headers["x-seen-forwarded-proto"] == "http"

    # an unknown host: 404 (no default backend yet)
    status, body, _ = via_ingress(http_port, "nobody.example.test")
    assert status == 404, (status, body)

    # a default backend, made by kubectl's own generator: unknown hosts go there now
    cluster.kubectl("create", "ingress", "catchall", "--default-backend=api:http")
    poll(lambda: answer(http_port, "nobody.example.test", "/anything") == f"{api_name} /anything", 10,
         what="the default backend answers unknown hosts")
    assert answer(http_port, "web.example.test", "/").split(" ")[0] in web_names  # rules still win

    # TLS: a certificate from `kubectl create secret tls`, chosen by SNI
    cert, key = self_signed("secure.example.test", tmp_path)
    cluster.kubectl("create", "secret", "tls", "secure-tls", f"--cert={cert}", f"--key={key}")
    secure = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "secure"},
              "spec": {"ingressClassName": "sendo",
                       "tls": [{"hosts": ["secure.example.test"], "secretName": "secure-tls"}],
                       "rules": [{"host": "secure.example.test", "http": {"paths": [
                           {"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(secure))
    ca = open(cert).read()

    def tls_answer():
        try:
            return via_tls(https_port, "secure.example.test", ca, "/tls")
        except (OSError, ssl.SSLError):
            return None
    status_line, body = poll(tls_answer, 15, what="HTTPS with the Secret's certificate")
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
    assert body.split(" ")[0] in web_names and body.endswith(" /tls")
    row = cluster.kubectl("get", "ing", "secure", "--no-headers").stdout.split()
    assert row[1] == "sendo" and "443" in row, row

    # deleting the Ingress takes its routes away within a second or so
    cluster.kubectl("delete", "ingress", "site")
    poll(lambda: answer(http_port, "web.example.test", "/api/x") == f"{api_name} /api/x", 5,
         what="web.example.test falls to the default backend once its Ingress is gone")
