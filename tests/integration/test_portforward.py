"""pods/portforward through the real API server's WebSocket entry point, relayed by a
stand-in agent to a local echo server. Everything runs on 127.0.0.1."""
from __future__ import annotations

import asyncio
import os
import ssl
import struct

import aiohttp
import pytest
from aiohttp import web

from sendo.agent import portforward as agentpf
from sendo.api import portforward as pf
from sendo.client import kind
from tests.portforward_helpers import EchoServer, SpdyClient, FakeAgent


# ---------------------------------------------------------------------------- the API server's WebSocket
async def _register_node(client, agent_base: str) -> None:
    host, port = agent_base.removeprefix("http://").split(":")
    await client.create(kind("nodes"), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    await client.patch(kind("nodes"), None, "node-a", {"status": {
        "addresses": [{"type": "InternalIP", "address": host}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": int(port)}}}}, sub="status")


def _pod(name: str, node: str | None) -> dict:
    spec = {"containers": [{"name": "c", "image": "x", "command": ["true"]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def test_api_server_websocket_end_to_end(server, client, tmp_path):
    """kubectl's handshake against the real API server, relayed through a stand-in agent."""
    agent = FakeAgent(server.node_token)
    app = web.Application()
    app.router.add_get("/portForward/{ns}/{pod}", agentpf.handler(agent.token, agent.pod_address))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    url = server.cfg.url.replace("https://", "wss://") + "/api/v1/namespaces/default/pods/{}/portforward"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        await _register_node(client, base)
        await client.create(kind("pods"), _pod("web", "node-a"), "default")
        await client.create(kind("pods"), _pod("pending", None), "default")
        async with EchoServer() as echo, aiohttp.ClientSession() as http:
            # refusals are Kubernetes Status objects with the HTTP code kubectl reports
            for name, headers, protocols, code, text in [
                ("web", {}, [pf.TUNNEL_PROTOCOL], 401, "Unauthorized"),
                ("missing", auth, [pf.TUNNEL_PROTOCOL], 404, 'pods "missing" not found'),
                ("pending", auth, [pf.TUNNEL_PROTOCOL], 400, "does not have a host assigned"),
                ("web", auth, ["base64.channel.k8s.io"], 400, "subprotocols"),
            ]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await http.ws_connect(url.format(name), ssl=ctx, headers=headers, protocols=protocols)
                assert e.value.status == code, (name, e.value)
                async with http.get(url.format(name).replace("wss://", "https://"), ssl=ctx,
                                    headers={**headers, "Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ==",
                                             "Sec-WebSocket-Protocol": ",".join(protocols)}) as r:
                    body = await r.json()
                    assert r.status == code and body["kind"] == "Status" and text in body["message"], body
            # the WebSocket URL of another subresource is not found
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(url.format("web").replace("/portforward", "/proxy"), ssl=ctx, headers=auth,
                                      protocols=["v5.channel.k8s.io"])
            assert e.value.status == 404
            # a plain GET (kubectl's SPDY fallback) is told what to do
            async with http.post(url.format("web").replace("wss://", "https://"), ssl=ctx, headers=auth) as r:
                assert r.status == 400 and "WebSocket" in (await r.json())["message"]

            ws = await http.ws_connect(url.format("web"), ssl=ctx, headers=auth,
                                       protocols=["SPDY/3.1+portforward.k8s.io"])
            assert ws.protocol == pf.TUNNEL_PROTOCOL
            c = SpdyClient()

            async def pump():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await c.from_server(msg.data)
            pumper = asyncio.create_task(pump())
            frames, err, data = c.open_pair(echo.port)
            for i in range(0, len(frames), 7):  # cut anywhere, as Go's framer does
                await ws.send_bytes(frames[i:i + 7])
            body = os.urandom(1_500_000)
            for i in range(0, len(body), 32768):
                await ws.send_bytes(c.writer.data(data, body[i:i + 32768]))
            await ws.send_bytes(c.writer.data(data, b"", fin=True))
            await c.wait(lambda: data in c.fin, 20)
            assert bytes(c.data[data]) == body
            await ws.send_bytes(c.writer.rst_stream(data, pf.RST_CANCEL))
            await c.wait(lambda: err in c.fin)
            assert not c.data.get(err)
            await ws.send_bytes(c.writer.ping(3))
            await c.wait(lambda: c.pings == [3])
            await ws.close()
            pumper.cancel()

            # the Python client's protocol: v4.channel.k8s.io with ?ports=; and the same binary
            # channels with no subprotocol at all (kr8s), as the kubelet serves them
            for protocols in (["v4.channel.k8s.io"], []):
                ws = await http.ws_connect(url.format("web") + f"?ports={echo.port}", ssl=ctx, headers=auth,
                                           protocols=protocols)
                assert ws.protocol == (protocols[0] if protocols else None)
                port_le = struct.pack("<H", echo.port)
                assert (await ws.receive_bytes()) == b"\x00" + port_le
                assert (await ws.receive_bytes()) == b"\x01" + port_le
                await ws.send_bytes(b"\x00hi there")
                assert (await ws.receive_bytes()) == b"\x00hi there"
                await ws.close()
    finally:
        await runner.cleanup()
