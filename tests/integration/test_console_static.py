"""The web console's static files (sendo/api/console.py) on a real API server: served
without a token with their media types and security headers, nothing else under
/console/, and the API itself still refusing a request without a token."""
from __future__ import annotations

import ssl

import aiohttp
import pytest
from yarl import URL


@pytest.fixture
async def http(server):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), trust_env=False) as s:
        yield s


async def test_console_files_are_public_with_their_media_types(server, http):
    base = server.cfg.url
    expected = {"/console/": "text/html", "/console/index.html": "text/html",
                "/console/console.js": "text/javascript", "/console/console.css": "text/css"}
    for path, media in expected.items():
        async with http.get(base + path) as r:  # no Authorization header at all
            body = await r.read()
            assert r.status == 200, (path, r.status, body[:200])
            assert r.headers["content-type"].split(";")[0] == media, (path, r.headers["content-type"])
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "connect-src 'self'" in r.headers["content-security-policy"]
            assert int(r.headers["content-length"]) == len(body) > 0
    async with http.get(base + "/console/") as r:
        page = await r.text()
    assert '<script type="module" src="console.js"></script>' in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    # a token the server does not know changes nothing for the static files
    async with http.get(base + "/console/console.js", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 200 and "listWatch" in await r.text()
    async with http.get(base + "/console", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["location"] == "/console/"
    async with http.head(base + "/console/console.css") as r:
        assert r.status == 200 and await r.read() == b""


async def test_only_the_console_files_and_only_reads(server, http):
    base = server.cfg.url
    for path in ("/console/secret", "/console/../api/v1/namespaces", "/console/%2e%2e/api/v1/namespaces",
                 "/console/consolefiles/index.html", "/console/console.py"):
        async with http.get(URL(base + path, encoded=True)) as r:
            status = await r.json()
            assert r.status == 404 and status["kind"] == "Status" and status["reason"] == "NotFound", (path, status)
    async with http.post(base + "/console/", data=b"{}") as r:
        assert r.status == 405 and (await r.json())["reason"] == "MethodNotAllowed"


async def test_the_api_still_needs_a_token(server, http):
    base = server.cfg.url
    for path in ("/api/v1/namespaces", "/api/v1/namespaces/default/pods", "/apis/apps/v1/deployments", "/metrics",
                 "/apis/metrics.k8s.io/v1beta1/pods"):
        async with http.get(base + path) as r:
            assert r.status == 401, path
        async with http.get(base + path, headers={"Authorization": "Bearer not-a-token"}) as r:
            assert r.status == 401, path
    async with http.get(base + "/api/v1/namespaces", headers={"Authorization": f"Bearer {server.admin_token}"}) as r:
        assert r.status == 200
