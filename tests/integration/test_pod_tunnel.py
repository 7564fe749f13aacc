"""The pod tunnel (agent/tunnel.py, network/tunnel.py) on one machine: the agent's handler
in an aiohttp app on loopback, echo servers on loopback pod addresses, and the real
service proxy against a real API server. The proxy is told that node-2's agent is on
another machine (its `_is_local` answers False): this machine has one host, so that is
the one fact the test supplies; tests/e2e/test_crossnode_process.py runs it across two.
Every byte goes to 127.x addresses only."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random

import aiohttp
import pytest
from aiohttp import web

from sendo.agent import tunnel
from sendo.client import kind
from sendo.network.proxy import ServiceProxy
from sendo.server import free_port
from sendo.wire import TUNNEL_PATH
from conftest import wait_until
from tests.integration.test_proxy import SLICES, TcpEcho, local, make_service, set_endpoints, slice_body, who

TOKEN = "node-token-of-this-test"
NODES = kind("nodes")


@contextlib.asynccontextmanager
async def agent_app(token: str, cidrs: list[ipaddress.IPv4Network]):
    """The tunnel handler of an agent with `token` whose podCIDRs are `cidrs` (the list, as it is then)."""
    app = web.Application()
    app.router.add_get(TUNNEL_PATH, tunnel.handler(token, lambda: list(cidrs)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def pod_address(cidr: ipaddress.IPv4Network) -> str:
    return local(str(cidr.network_address + random.randrange(2, cidr.num_addresses - 1)))


async def handshake_status(port: int, ip: str, pport: int | str, token: str | None = TOKEN) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(f"http://127.0.0.1:{port}{TUNNEL_PATH}", params={"ip": ip, "port": str(pport)},
                                    headers=headers)
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        await ws.close()
        return 101


async def test_the_tunnel_refuses_strangers_and_addresses_outside_the_podcidr():
    cidrs = [ipaddress.ip_network(f"127.{random.randrange(120, 127)}.{random.randrange(256)}.0/24")]
    inside = await TcpEcho("pod", pod_address(cidrs[0]), free_port("0.0.0.0")).start()
    outside = await TcpEcho("host", "127.0.0.1", free_port("0.0.0.0")).start()  # the agent's own host
    async with contextlib.AsyncExitStack() as stack:
        port = await stack.enter_async_context(agent_app(TOKEN, cidrs))
        stack.callback(inside.close)
        stack.callback(outside.close)
        assert await handshake_status(port, inside.ip, inside.port, token=None) == 401
        assert await handshake_status(port, inside.ip, inside.port, token="not-the-token") == 401
        assert await handshake_status(port, outside.ip, outside.port) == 403
        assert await handshake_status(port, "10.0.0.1", 80) == 403
        assert await handshake_status(port, "pod-a", 80) == 400
        assert await handshake_status(port, inside.ip, 0) == 400
        assert await handshake_status(port, inside.ip, "http") == 400
        assert await handshake_status(port, inside.ip, "\u00b2") == 400  # a digit to str.isdigit, not a port
        async with aiohttp.ClientSession() as s:  # not a WebSocket: a plain GET is refused too
            async with s.get(f"http://127.0.0.1:{port}{TUNNEL_PATH}", params={"ip": inside.ip, "port": inside.port},
                             headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 400 and "WebSocket" in await r.text()
            async with s.get(f"http://127.0.0.1:{port}{TUNNEL_PATH}", params={"ip": outside.ip, "port": outside.port},
                             headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 403 and "not in this node's podCIDR" in await r.text()
        assert inside.conns == 0 and outside.conns == 0  # nothing was dialled
        assert await handshake_status(port, inside.ip, inside.port) == 101
        await wait_until(lambda: inside.conns == 1, what="the authorized tunnel dialled the pod")


@pytest.fixture
async def remote_node(client):
    """node-2: a Node (its podCIDR from node IPAM) whose agent is a tunnel handler on loopback,
    holding the token the proxy's client presents (in an agent, both are the node token)."""
    node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}})
    cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
    async with agent_app(client.token, [cidr]) as port:
        await client.patch(NODES, None, "node-2", {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}, sub="status")
        yield cidr, port


@pytest.fixture
async def proxy(client, remote_node):
    p = ServiceProxy(client, "node-1", local(f"127.{random.randrange(112, 120)}.{random.randrange(256)}.9"))
    p._is_local = lambda host: False  # type: ignore[method-assign]  # node-2's agent: "another machine"
    await p.start()
    yield p
    await p.stop()


async def test_a_service_endpoint_of_another_machine_is_reached_through_its_agent(client, proxy, remote_node):
    cidr, agent_port = remote_node
    bport = free_port("0.0.0.0")
    alive = await TcpEcho("b0", pod_address(cidr), bport).start()
    dead = pod_address(cidr)  # in node-2's block, nothing listens: the agent reports the dial error
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "far", sport)
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "far", bport, [alive.ip, dead], node="node-2")
    try:
        key = "default/far:p/TCP:cluster"
        await wait_until(lambda: key in proxy.backends and len(proxy.backends[key].via) == 2,
                         what="both endpoints routed through node-2's agent")
        assert set(proxy.backends[key].via.values()) == {("127.0.0.1", agent_port)}
        # the dead one is skipped (its error travels back through the tunnel): every connection lands
        assert [await who(cip, sport, timeout=15) for _ in range(4)] == ["b0"] * 4

        # a large transfer both ways at once (back-pressure through the tunnel), then a half-close:
        # the echo's answer still comes back in full, then the end
        r, w = await asyncio.open_connection(local(cip), sport)
        assert await asyncio.wait_for(r.readline(), 15) == b"b0\n"
        blob = random.randbytes(4 * 1024 * 1024)

        async def send() -> None:
            for i in range(0, len(blob), 65536):
                w.write(blob[i:i + 65536])
                await w.drain()
            w.write_eof()
        sender = asyncio.create_task(send())
        got = await asyncio.wait_for(r.read(-1), 120)  # until the echo's EOF, passed back through the tunnel
        await sender
        w.close()
        assert len(got) == len(blob) and got == blob

        # UDP is not tunnelled: a UDP port keeps to the endpoints this node reaches (its own, here)
        near = local(f"127.{random.randrange(112, 120)}.{random.randrange(256)}.{random.randrange(2, 250)}")
        await make_service(client, "farudp", sport, protocol="UDP")
        body = slice_body("farudp", bport, [alive.ip, near], protocol="UDP", node="node-2")
        body["endpoints"][1]["nodeName"] = "node-1"
        await client.create(SLICES, body, "default")
        udp = "default/farudp:p/UDP:cluster"
        await wait_until(lambda: udp in proxy.backends and proxy.backends[udp].endpoints, what="the UDP backends")
        assert proxy.backends[udp].endpoints == [(near, bport)] and not proxy.backends[udp].via
    finally:
        alive.close()
