"""The ingress controller (sendo.network.ingress) against a real API server: the reverse proxy
in front of fake HTTP backends, TLS by SNI, the default IngressClass.

The backends are small aiohttp servers bound directly on a Service's cluster IP (no service
proxy runs here), the controller listens on a node address of the test's own, and every
byte goes to 127.x addresses only."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import random
import socket
import ssl

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from sendo.client import ApiError, kind
from sendo.network.ingress import CLASS_NAME, CONTROLLER, IngressController
from sendo.server import free_port
from conftest import wait_until
from tests.ingress_helpers import NS, svc_backend, path, ingress

ING = kind("ingresses", "networking.k8s.io")
CLASSES = kind("ingressclasses", "networking.k8s.io")
SVCS, SECRETS, EVENTS = kind("services"), kind("secrets"), kind("events")


# ============================================================================ the controller

def rand_ip(net: str) -> str:
    n = ipaddress.ip_network(net)
    while True:
        ip = n.network_address + random.randrange(2, n.num_addresses - 1)
        if ip.packed[-1] not in (0, 1, 255):
            return str(ip)


def local(ip: str) -> str:
    assert ipaddress.ip_address(ip).is_loopback, ip  # network safety: loopback only
    return ip


class FakeBackend:
    """An HTTP server on one address that says who it is and what it got."""

    def __init__(self, name: str, ip: str, port: int):
        self.name, self.ip, self.port = name, local(ip), port
        self.runner: web.AppRunner | None = None
        self.requests = 0

    async def start(self) -> "FakeBackend":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/slow", self.slow)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/big", self.big)
        app.router.add_get("/gzip", self.gzip)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.ip, self.port).start()
        return self

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        return web.json_response({
            "name": self.name, "method": request.method, "path": request.raw_path,
            "headers": {k: v for k, v in request.headers.items()},
            "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", "")},
            headers={"X-Backend": self.name, "Set-Cookie": "seen=1"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part {i}\n".encode())
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (5 * 1024 * 1024), content_type="application/octet-stream")

    async def gzip(self, request: web.Request) -> web.Response:
        import gzip
        return web.Response(body=gzip.compress(b"hello " * 100), headers={"Content-Encoding": "gzip"})

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()


@pytest.fixture
def node_ip():
    return rand_ip("127.200.0.0/16")


@pytest.fixture
async def controller(client, node_ip):
    c = IngressController(client, "node-1", node_ip, http_port=0, https_port=0, read_timeout=1.0)
    await c.start()
    assert set(c.bound) == {"http", "https"}
    yield c
    await c.stop()


@pytest.fixture
async def services(client):
    """make(name, names=("http",)) -> (Service, FakeBackend bound on its cluster IP)."""
    made: list[FakeBackend] = []

    async def make(name: str, port_name: str = "http", listen: bool = True):
        port = free_port("0.0.0.0")
        svc = await client.create(SVCS, {"metadata": {"name": name}, "spec": {
            "clusterIP": rand_ip("127.32.128.0/17"), "selector": {"app": name},
            "ports": [{"name": port_name, "port": port, "targetPort": port}]}}, NS)
        fb = FakeBackend(name, svc["spec"]["clusterIP"], port)
        if listen:
            await fb.start()
            made.append(fb)
        return svc, fb
    yield make
    for fb in made:
        await fb.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


async def get(http: aiohttp.ClientSession, ip: str, port: int, p: str = "/", host: str | None = None,
              method: str = "GET", **kw) -> tuple[int, dict | str, aiohttp.typedefs.LooseHeaders]:
    headers = {"Host": host} if host else {}
    url = URL(f"http://{local(ip)}:{port}{p}", encoded=True)  # sent exactly as written
    async with http.request(method, url, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=10), **kw) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text), r.headers
        except ValueError:
            return r.status, text, r.headers


def svc_port(svc: dict) -> int:
    return svc["spec"]["ports"][0]["port"]


async def apply_ingress(client, body: dict) -> dict:
    cur = await client.get_or_none(ING, NS, body["metadata"]["name"])
    if cur is None:
        return await client.create(ING, body, NS)
    body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
    return await client.update(ING, body)


def routes_to(c: IngressController, host: str, p: str, service: str | None):
    def check():
        b = c.snapshot.table.route(host, p)
        return (b.service if b else None) == service
    return check


async def test_creates_the_default_class_and_routes_by_host_and_path(client, controller, services, http, node_ip):
    cls = await client.get(CLASSES, None, CLASS_NAME)
    assert cls["spec"]["controller"] == CONTROLLER
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    web_svc, _ = await services("web")
    api_svc, _ = await services("api", "api")
    await client.create(ING, ingress("site", rules=[{"host": "web.example.test", "http": {"paths": [
        path("/", "Prefix", svc_backend("web", svc_port(web_svc))),
        path("/api", "Prefix", svc_backend("api", "api"))]}}]), NS)  # no class: sendo is the default
    port = controller.bound["http"]
    await wait_until(routes_to(controller, "web.example.test", "/api", "api"), what="routes")
    status, body, headers = await get(http, node_ip, port, "/api/v1/items?x=1&y=%2F", "web.example.test:80")
    assert status == 200 and body["name"] == "api" and body["path"] == "/api/v1/items?x=1&y=%2F"
    assert headers["X-Backend"] == "api" and headers["Set-Cookie"] == "seen=1"
    h = body["headers"]
    assert h["Host"] == "web.example.test:80"  # the original Host goes upstream
    assert h["X-Forwarded-Host"] == "web.example.test:80" and h["X-Forwarded-Proto"] == "http"
    assert h["X-Forwarded-For"] == "127.0.0.1" and h["X-Forwarded-Port"] == str(port)
    status, body, _ = await get(http, node_ip, port, "/apiary", "web.example.test")
    assert status == 200 and body["name"] == "web"  # /api does not match /apiary
    status, body, _ = await get(http, node_ip, port, "/", "other.example.test")
    assert status == 404 and "404" in body
    # the address goes into the status
    await wait_until(lambda: _lb_ips(client, "site"), what="status.loadBalancer")
    assert await _lb_ips(client, "site") == [node_ip]


async def _lb_ips(client, name: str) -> list[str]:
    got = await client.get(ING, NS, name)
    return [i.get("ip") for i in ((got.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


async def test_changes_apply_within_a_second_and_other_classes_are_ignored(client, controller, services, http,
                                                                             node_ip):
    a, _ = await services("alpha")
    b, _ = await services("beta")
    port = controller.bound["http"]
    body = ingress("switch", rules=[{"host": "s.test", "http": {"paths": [
        path("/", "Prefix", svc_backend("alpha", "http"))]}}], ingressClassName="sendo")
    await apply_ingress(client, body)
    await wait_until(routes_to(controller, "s.test", "/", "alpha"), what="alpha")
    assert (await get(http, node_ip, port, "/", "s.test"))[1]["name"] == "alpha"
    body["spec"]["rules"][0]["http"]["paths"][0]["backend"] = svc_backend("beta", "http")
    await apply_ingress(client, body)
    await wait_until(routes_to(controller, "s.test", "/", "beta"), timeout=1.0, what="beta within a second")
    assert (await get(http, node_ip, port, "/", "s.test"))[1]["name"] == "beta"
    # an Ingress of another class is not ours: not routed, no address in its status
    await client.create(ING, ingress("theirs", rules=[{"host": "t.test", "http": {"paths": [
        path("/", "Prefix", svc_backend("alpha", "http"))]}}], ingressClassName="nginx"), NS)
    await client.create(ING, ingress("legacy", rules=[{"host": "l.test", "http": {"paths": [
        path("/", "Prefix", svc_backend("alpha", "http"))]}}]) | {
        "metadata": {"name": "legacy", "namespace": NS, "annotations": {"kubernetes.io/ingress.class": "nginx"}}}, NS)
    # a fence: one watch delivers Ingresses in revision order, so once this later one is
    # routed, the controller has seen (and passed over) the two above
    await client.create(ING, ingress("fence", rules=[{"host": "f.test", "http": {"paths": [
        path("/", "Prefix", svc_backend("alpha", "http"))]}}], ingressClassName="sendo"), NS)
    await wait_until(routes_to(controller, "f.test", "/", "alpha"), what="the fence Ingress routed")
    await wait_until(lambda: _lb_ips(client, "fence"), what="the fence's status written")
    assert (await get(http, node_ip, port, "/", "t.test"))[0] == 404
    assert (await get(http, node_ip, port, "/", "l.test"))[0] == 404
    assert await _lb_ips(client, "theirs") == []
    # switching the class to ours takes it in; the delete takes it out
    theirs = await client.get(ING, NS, "theirs")
    theirs["spec"]["ingressClassName"] = "sendo"
    await client.update(ING, theirs)
    await wait_until(routes_to(controller, "t.test", "/", "alpha"), timeout=1.0, what="class switch")
    await client.delete(ING, NS, "switch")
    await wait_until(routes_to(controller, "s.test", "/", None), timeout=1.0, what="delete")
    assert (await get(http, node_ip, port, "/", "s.test"))[0] == 404


async def test_default_backend_and_errors(client, controller, services, http, node_ip):
    fallback, _ = await services("fallback")
    _, _ = await services("down", listen=False)  # nothing listens on its cluster IP
    await services("slow")
    port = controller.bound["http"]
    await client.create(ING, ingress("errs", rules=[{"host": "e.test", "http": {"paths": [
        path("/down", "Prefix", svc_backend("down", "http")),
        path("/missing", "Prefix", svc_backend("missing", 80)),
        path("/badport", "Prefix", svc_backend("fallback", "nope")),
        path("/slow", "Exact", svc_backend("slow", "http"))]}}],
        defaultBackend=svc_backend("fallback", svc_port(fallback))), NS)
    await wait_until(routes_to(controller, "e.test", "/down", "down"), what="routes")
    status, body, _ = await get(http, node_ip, port, "/anything", "e.test")
    assert status == 200 and body["name"] == "fallback"
    status, body, _ = await get(http, node_ip, port, "/", "unknown.test")
    assert status == 200 and body["name"] == "fallback"  # the default backend takes unknown hosts too
    assert (await get(http, node_ip, port, "/down", "e.test"))[0] == 502
    status, text, _ = await get(http, node_ip, port, "/missing", "e.test")
    assert status == 503 and "service default/missing not found" in text
    status, text, _ = await get(http, node_ip, port, "/badport", "e.test")
    assert status == 503 and "has no port 'nope'" in text
    status, _, _ = await get(http, node_ip, port, "/slow", "e.test")
    assert status == 504  # read_timeout is 1 s here; the backend takes 3


async def test_bodies_stream_both_ways_and_connections_are_kept_alive(client, controller, services, http, node_ip):
    svc, fb = await services("echo")
    port = controller.bound["http"]
    await client.create(ING, ingress("bodies", rules=[{"http": {"paths": [
        path("/", "Prefix", svc_backend("echo", "http"))]}}]), NS)
    await wait_until(routes_to(controller, "any.test", "/", "echo"), what="route")
    payload = random.randbytes(3 * 1024 * 1024)
    status, body, _ = await get(http, node_ip, port, "/upload", method="POST", data=payload)
    assert status == 200 and body["length"] == len(payload)
    assert body["sha256"] == hashlib.sha256(payload).hexdigest() and not body["chunked"]

    async def chunks():
        for i in range(20):
            yield bytes([i]) * 10_000
            await asyncio.sleep(0)
    status, body, _ = await get(http, node_ip, port, "/chunked", method="PUT", data=chunks())
    expected = b"".join(bytes([i]) * 10_000 for i in range(20))
    assert status == 200 and body["length"] == len(expected) and body["chunked"]
    assert body["sha256"] == hashlib.sha256(expected).hexdigest()
    # a streamed (chunked) answer arrives piece by piece
    async with http.get(f"http://{node_ip}:{port}/stream") as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        first = await r.content.readline()
        assert first == b"part 0\n"
        rest = await r.read()
    assert rest == b"".join(f"part {i}\n".encode() for i in range(1, 5))
    async with http.get(f"http://{node_ip}:{port}/big") as r:
        assert r.headers["Content-Length"] == str(5 * 1024 * 1024)
        assert len(await r.read()) == 5 * 1024 * 1024
    async with http.get(f"http://{node_ip}:{port}/gzip") as r:  # encoded bodies pass untouched
        assert r.headers["Content-Encoding"] == "gzip"
        import gzip
        assert gzip.decompress(await r.read()) == b"hello " * 100
    status, _, headers = await get(http, node_ip, port, "/", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) > 0
    # keep-alive: three requests, one client connection (raw socket, so nothing pools for us)
    reader, writer = await asyncio.open_connection(local(node_ip), port)
    try:
        for i in range(3):
            writer.write(f"GET /k{i} HTTP/1.1\r\nHost: k.test\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                          if ln.lower().startswith(b"content-length")][0])
            answer = json.loads(await reader.readexactly(length))
            assert answer["path"] == f"/k{i}"
    finally:
        writer.close()


def make_cert(host: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for host (and only host), made here with cryptography."""
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
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def tls_secret(name: str, cert: bytes, key: bytes) -> dict:
    return {"metadata": {"name": name}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


async def test_tls_picks_the_certificate_by_sni(client, controller, services, node_ip):
    await services("secure")
    cert_a, key_a = make_cert("a.example.test")
    cert_b, key_b = make_cert("b.example.test")
    await client.create(SECRETS, tls_secret("a-tls", cert_a, key_a), NS)
    await client.create(SECRETS, tls_secret("b-tls", cert_b, key_b), NS)
    await client.create(ING, ingress("tls", rules=[
        {"host": h, "http": {"paths": [path("/", "Prefix", svc_backend("secure", "http"))]}}
        for h in ("a.example.test", "b.example.test")],
        tls=[{"hosts": ["a.example.test"], "secretName": "a-tls"}, {"hosts": ["b.example.test"], "secretName": "b-tls"},
             {"hosts": ["c.example.test"], "secretName": "missing-tls"}]), NS)
    port = controller.bound["https"]
    await wait_until(lambda: controller.tls.lookup("b.example.test") is not controller.tls.default,
                     what="certificates loaded")

    async def fetch(host: str, cert: bytes) -> dict:
        ctx = ssl.create_default_context(cadata=cert.decode())
        async with aiohttp.ClientSession() as s:
            async with s.get(f"https://{local(node_ip)}:{port}/secure/path", headers={"Host": host},
                             ssl=ctx, server_hostname=host, timeout=aiohttp.ClientTimeout(total=10)) as r:
                assert r.status == 200
                return await r.json()
    for host, cert in (("a.example.test", cert_a), ("b.example.test", cert_b)):
        body = await fetch(host, cert)
        assert body["name"] == "secure" and body["headers"]["X-Forwarded-Proto"] == "https"
        assert body["headers"]["Host"] == host and body["path"] == "/secure/path"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch("a.example.test", cert_b)  # b's certificate does not vouch for a
    # no SNI (or an unknown name): the self-signed fallback certificate
    pem = await asyncio.to_thread(ssl.get_server_certificate, (local(node_ip), port))
    assert "a.example.test" not in pem and pem.strip() not in (cert_a.decode().strip(), cert_b.decode().strip())
    # the missing secret is reported on the Ingress
    await wait_until(lambda: _event_reasons(client), what="a TLSSecretInvalid event")
    assert "missing-tls not found" in (await _event_reasons(client))["TLSSecretInvalid"]
    # a renewed certificate is picked up
    cert_a2, key_a2 = make_cert("a.example.test")
    sec = await client.get(SECRETS, NS, "a-tls")
    sec["data"] = tls_secret("a-tls", cert_a2, key_a2)["data"]
    await client.update(SECRETS, sec)
    old = controller.tls.lookup("a.example.test")
    await wait_until(lambda: controller.tls.lookup("a.example.test") is not old, timeout=1.0, what="new cert")
    assert (await fetch("a.example.test", cert_a2))["name"] == "secure"


async def _event_reasons(client) -> dict[str, str]:
    evs = (await client.list(EVENTS, NS))["items"]
    return {e["reason"]: e["message"] for e in evs if e["involvedObject"].get("kind") == "Ingress"}


async def test_a_port_in_use_is_tolerated_and_taken_when_free(client, node_ip, monkeypatch):
    from sendo.network import ingress as ingmod
    monkeypatch.setattr(ingmod, "BIND_RETRY", 0.2)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((local(node_ip), 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    c = IngressController(client, "node-1", node_ip, http_port=port, https_port=0)
    try:
        await c.start()
        assert "http" not in c.bound and "https" in c.bound
        blocker.close()
        await wait_until(lambda: c.bound.get("http") == port, timeout=5, what="the freed port is taken")
    finally:
        blocker.close()
        await c.stop()


async def test_an_existing_default_class_is_respected(client, node_ip):
    await client.create(CLASSES, {"metadata": {"name": "other", "annotations": {
        "ingressclass.kubernetes.io/is-default-class": "true"}}, "spec": {"controller": "example.com/other"}})
    c = IngressController(client, "node-1", node_ip, http_port=0, https_port=0)
    await c.start()
    try:
        cls = await client.get(CLASSES, None, CLASS_NAME)
        assert "ingressclass.kubernetes.io/is-default-class" not in (cls["metadata"].get("annotations") or {})
        assert not c.serves(ingress("x", defaultBackend=svc_backend()))  # no class: the other default's
        assert c.serves(ingress("x", defaultBackend=svc_backend(), ingressClassName="sendo"))
        with pytest.raises(ApiError) as e:  # the controller of a class cannot change
            await client.patch(CLASSES, None, CLASS_NAME, {"spec": {"controller": "x.io/y"}})
        assert e.value.status == 422
    finally:
        await c.stop()
