"""pods/exec and pods/attach refusals through the real API server: what a client gets
back (a Kubernetes Status with the HTTP code, before any agent is asked) when the request
or the pod is not fit for it, on the WebSocket upgrade and on a plain request (kubectl's
SPDY fallback). The streams themselves are tested end to end in tests/e2e/test_exec.py."""
from __future__ import annotations

import ssl

import aiohttp

from sendo.client import kind
from tests.integration.test_portforward import _pod


async def test_exec_and_attach_refusals_are_statuses_naming_the_problem(server, client):
    two = _pod("two", "node-a")
    two["spec"]["containers"].append({"name": "d", "image": "x", "command": ["true"]})
    for pod in (_pod("web", "node-a"), _pod("pending", None), two):
        await client.create(kind("pods"), pod, "default")
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    base = server.cfg.url + "/api/v1/namespaces/default/pods/"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    v5 = ["v5.channel.k8s.io"]
    cases = [
        ("web/exec?command=true&stdout=1", {}, v5, 401, "Unauthorized"),
        ("missing/exec?command=true&stdout=1", auth, v5, 404, 'pods "missing" not found'),
        ("web/exec?stdout=1", auth, v5, 400, "you must specify at least 1 command"),
        ("web/exec?command=true", auth, v5, 400, "at least 1 of stdin, stdout, stderr"),
        ("web/exec?command=true&stdout=maybe", auth, v5, 400, 'query parameter "stdout"'),
        ("web/exec?command=true&stdout=1&container=nope", auth, v5, 400, "container nope is not valid for pod web"),
        ("two/exec?command=true&stdout=1", auth, v5, 400,
         "a container name must be specified for pod two, choose one of: [c d]"),
        ("pending/attach?stdout=1", auth, v5, 400, "pod pending does not have a host assigned"),
        ("web/attach?stdout=1", auth, ["base64.channel.k8s.io"], 400, "subprotocols"),
        ("web/attach?stdout=1", auth, v5, 404, 'nodes "node-a" not found'),  # no node: no agent to reach
    ]
    async with aiohttp.ClientSession() as http:
        for path, headers, protocols, code, text in cases:
            url = base + path
            try:
                await http.ws_connect(url.replace("https://", "wss://"), ssl=ctx, headers=headers,
                                      protocols=protocols)
                raise AssertionError(f"{path}: the upgrade was accepted")
            except aiohttp.WSServerHandshakeError as e:
                assert e.status == code, (path, e)
            # the same request without a WebSocket gets the same Status (else: use a WebSocket)
            async with http.post(url, ssl=ctx, headers=headers) as r:
                body = await r.json()
            if protocols == v5:
                assert (r.status, body["kind"]) == (code, "Status") and text in body["message"], (path, body)
        # discovery lists the subresources kubectl looks for
        async with http.get(server.cfg.url + "/api/v1", ssl=ctx, headers=auth) as r:
            names = {x["name"] for x in (await r.json())["resources"]}
        assert {"pods/exec", "pods/attach"} <= names
