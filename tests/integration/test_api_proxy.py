"""pods/proxy, services/proxy and nodes/proxy through the real API server: requests are
relayed by a stand-in agent (the agent's own /portForward handler) to a small HTTP
server playing the pod. Everything runs on 127.0.0.1."""
from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from aiohttp import web

from sendo.agent import portforward as agentpf
from sendo.client import kind
from sendo.pki import ensure_tls

NS = "default"


class Agent:
    """The node as the proxy sees it: pods by name, at 127.0.0.1; /healthz like an agent's."""

    def __init__(self, token: str):
        self.token = token
        self.pods = {"web": "127.0.0.1", "web-2": "127.0.0.1"}
        self.seen_auth: list[str] = []

    def pod_address(self, ns, name):
        if ns != NS or name not in self.pods:
            raise LookupError(f'pod "{name}" is not running on node node-a')
        return self.pods[name]

    async def healthz(self, request: web.Request) -> web.Response:
        self.seen_auth.append(request.headers.get("Authorization", ""))
        return web.Response(text=f"ok {request.query_string}")


async def _pod_app() -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.json_response({"method": request.method, "path": request.path, "query": request.rel_url.raw_query_string,
                                  "body": body.decode(), "headers": dict(request.headers)})
        resp.headers.add("Set-Cookie", "a=1")
        resp.headers.add("Set-Cookie", "b=2")
        return resp

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(int(request.query.get("n", "3"))):
            await resp.write(f"line {i}\n".encode())
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/stream", stream)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def _serve(app: web.Application, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def _pod(name: str, port: int, node: str | None = "node-a") -> dict:
    spec = {"containers": [{"name": "c", "image": "x", "command": ["true"],
                            "ports": [{"name": "http", "containerPort": port}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}


@pytest.fixture
async def world(server, client, tmp_path):
    agent = Agent(server.node_token)
    agent_app = web.Application()
    agent_app.router.add_get("/portForward/{ns}/{pod}", agentpf.handler(agent.token, agent.pod_address))
    agent_app.router.add_get("/healthz", agent.healthz)
    agent_runner, agent_port = await _serve(agent_app)
    pod_runner, pod_port = await _serve(await _pod_app())
    files = ensure_tls(str(tmp_path / "pod-tls"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(files.cert, files.key)
    tls_runner, tls_port = await _serve(await _pod_app(), tls)
    await client.create(kind("nodes"), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    await client.patch(kind("nodes"), None, "node-a", {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}}}}, sub="status")
    for name in ("web", "web-2"):
        await client.create(kind("pods"), _pod(name, pod_port), NS)
        await client.patch(kind("pods"), NS, name, {"status": {"phase": "Running", "podIP": "127.0.0.1"}},
                           sub="status")
    await client.create(kind("pods"), _pod("pending", pod_port, node=None), NS)
    await client.create(kind("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                           "spec": {"selector": {"app": "web"}, "ports": [
                                               {"name": "http", "port": 80, "targetPort": pod_port}]}}, NS)
    await client.create(kind("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"},
                                           "spec": {"ports": [{"port": 80}]}}, NS)
    addresses = [{"ip": "127.0.0.1", "nodeName": "node-a",
                  "targetRef": {"kind": "Pod", "namespace": NS, "name": n}} for n in ("web", "web-2")]
    await client.create(kind("endpoints"), {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
                                            "subsets": [{"addresses": addresses,
                                                         "ports": [{"name": "http", "port": pod_port}]}]}, NS)
    await client.create(kind("endpoints"), {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "empty"},
                                            "subsets": []}, NS)
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        yield {"http": http, "ssl": ctx, "base": server.cfg.url + f"/api/v1/namespaces/{NS}", "agent": agent,
               "url": server.cfg.url, "pod_port": pod_port, "tls_port": tls_port}
    await tls_runner.cleanup()
    await pod_runner.cleanup()
    await agent_runner.cleanup()


async def test_pod_and_service_proxy_relay_everything(world):
    http, ctx, base, port = world["http"], world["ssl"], world["base"], world["pod_port"]
    for url in (f"{base}/pods/web:{port}/proxy/some/where/", f"{base}/pods/web/proxy/some/where/",
                f"{base}/pods/http:web:http/proxy/some/where/", f"{base}/services/web:http/proxy/some/where/",
                f"{base}/services/web:80/proxy/some/where/", f"{base}/services/http:web:80/proxy/some/where/"):
        async with http.post(url + "?a=1&b=x%20y", ssl=ctx, data=b"payload",
                             headers={"X-Test": "yes", "Connection": "keep-alive, X-Drop", "X-Drop": "1",
                                      "Impersonate-User": "someone"}) as r:
            assert r.status == 200, (url, await r.text())
            got = await r.json()
            assert got["method"] == "POST" and got["path"] == "/some/where/", got
            assert got["query"] == "a=1&b=x%20y" and got["body"] == "payload"
            sent = {k.lower(): v for k, v in got["headers"].items()}
            assert sent["x-test"] == "yes" and "x-drop" not in sent
            assert "authorization" not in sent and "impersonate-user" not in sent  # credentials stay here
            assert r.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    # the https scheme: TLS inside the tunnel (the pod's certificate is not verified, as in Kubernetes)
    async with http.put(f"{base}/pods/https:web:{world['tls_port']}/proxy/secure?q=1", ssl=ctx, data=b"sealed") as r:
        got = await r.json()
        assert r.status == 200 and got["path"] == "/secure" and got["body"] == "sealed" and got["query"] == "q=1"
    # every method; a chunked request body
    for method in ("PUT", "PATCH", "DELETE", "GET"):
        async with http.request(method, f"{base}/pods/web:{port}/proxy/m", ssl=ctx) as r:
            assert r.status == 200 and (await r.json())["method"] == method

    async def chunks():
        for i in range(3):
            yield f"part{i};".encode()
    async with http.post(f"{base}/pods/web:{port}/proxy/c", ssl=ctx, data=chunks()) as r:
        assert (await r.json())["body"] == "part0;part1;part2;"
    async with http.head(f"{base}/pods/web:{port}/proxy/h", ssl=ctx) as r:
        assert r.status == 200 and await r.read() == b""
    # a streamed answer arrives whole
    async with http.get(f"{base}/services/web:http/proxy/stream?n=200", ssl=ctx) as r:
        text = await r.text()
        assert r.status == 200 and text.count("\n") == 200 and text.endswith("line 199\n")
    # .../proxy without a slash is redirected to .../proxy/
    async with http.get(f"{base}/pods/web:{port}/proxy?x=1", ssl=ctx, allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"].endswith(f"/pods/web:{port}/proxy/?x=1")


ERRORS = """
pods/missing:{port}/proxy/ 404 pods "missing" not found
services/missing/proxy/ 404 services "missing" not found
services/empty/proxy/ 503 no endpoints available for service "empty"
services/web:81/proxy/ 503 no service port 81 found for service "web"
services/web:nope/proxy/ 503 no endpoints available
pods/web:99999/proxy/ 400 invalid port
pods/web:nope/proxy/ 400 invalid port
pods/ftp:web:80/proxy/ 400 invalid request
pods/a:b:c:d/proxy/ 400 invalid request
pods/https:web:{port}/proxy/ 503 TLS handshake failed
pods/pending:{port}/proxy/ 400 has no address
pods/web:1/proxy/ 503 error trying to reach service: dial tcp 127.0.0.1:1
configmaps/x/proxy/ 404 -
/api/v1/nodes/missing/proxy/healthz 404 nodes "missing" not found
"""


async def test_proxy_errors_are_statuses(world):
    http, ctx, base, port = world["http"], world["ssl"], world["base"], world["pod_port"]
    for line in ERRORS.strip().splitlines():  # <URL under the namespace, or /api/...> <code> <message part>
        where, code, text = line.split(" ", 2)
        url = (world["url"] if where.startswith("/") else base + "/") + where.format(port=port)
        async with http.get(url, ssl=ctx) as r:
            body = await r.json()
            assert r.status == int(code) and body["kind"] == "Status" and text.strip("-") in body["message"], \
                (url, body)
    async with aiohttp.ClientSession() as anonymous:  # no token: 401 before anything is relayed
        async with anonymous.get(f"{base}/pods/web:{port}/proxy/", ssl=ctx) as r:
            assert r.status == 401


async def test_node_proxy_reaches_the_agent_with_the_node_token(world, server):
    http, ctx = world["http"], world["ssl"]
    async with http.get(world["url"] + "/api/v1/nodes/node-a/proxy/healthz?verbose=1", ssl=ctx) as r:
        assert r.status == 200 and await r.text() == "ok verbose=1"
    assert world["agent"].seen_auth == [f"Bearer {server.node_token}"]


async def test_discovery_lists_the_proxy_subresources(world):
    http, ctx = world["http"], world["ssl"]
    async with http.get(world["url"] + "/api/v1", ssl=ctx) as r:
        resources = {e["name"]: e for e in (await r.json())["resources"]}
    for name, kind_ in (("pods/proxy", "PodProxyOptions"), ("services/proxy", "ServiceProxyOptions"),
                        ("nodes/proxy", "NodeProxyOptions")):
        assert resources[name]["kind"] == kind_ and "get" in resources[name]["verbs"]
