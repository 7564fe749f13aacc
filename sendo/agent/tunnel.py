"""The agent's half of the pod tunnel (`wire.TUNNEL_PATH`): how the service proxy of
another node reaches a process pod of this node, whose loopback pod IP exists on this
machine only.

`GET /podTunnel?ip=<pod IP>&port=<port>` with the node token upgrades to a WebSocket;
the agent dials the pod, says `wire.CONNECTED_MESSAGE` (or `wire.error_message` and
closes), then relays bytes as the port-forward tunnel does (`portforward.relay`:
back-pressure both ways, half-close passed on). Refused before the upgrade, with nothing
dialled:

* 401 without the node token (which every agent and the API server hold);
* 400 for an `ip` that is not an IPv4 address, a `port` outside 1-65535, or a request
  that is not a WebSocket upgrade;
* 403 for an address outside this node's podCIDR: the tunnel reaches this node's pods,
  never the host's own addresses or anything else it could route to.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

from aiohttp import web

from ..wire import CONNECTED_MESSAGE
from .portforward import relay_to

PodCIDRs = Callable[[], list[ipaddress.IPv4Network]]
"""The node's podCIDRs now (empty before the node is registered)."""


def handler(token: str, pod_cidrs: PodCIDRs):
    async def pod_tunnel(request: web.Request) -> web.StreamResponse:
        return await handle(token, pod_cidrs, request)
    return pod_tunnel


def check(token: str, pod_cidrs: PodCIDRs, request: web.Request) -> tuple[str, int] | web.Response:
    """(ip, port) to dial, or the answer that refuses the request."""
    if request.headers.get("Authorization", "") != f"Bearer {token}":
        return web.Response(status=401, text="Unauthorized: the pod tunnel needs the node token")
    raw_ip, raw_port = request.query.get("ip", ""), request.query.get("port", "")
    try:
        addr = ipaddress.IPv4Address(raw_ip)
    except ValueError:
        return web.Response(status=400, text=f"invalid ip {raw_ip!r}: must be an IPv4 pod address")
    if not (raw_port.isascii() and raw_port.isdigit()) or not 0 < int(raw_port) < 65536:
        return web.Response(status=400, text=f"invalid port {raw_port!r}: must be a number from 1 to 65535")
    cidrs = pod_cidrs()
    if not any(addr in net for net in cidrs):
        return web.Response(status=403, text=f"forbidden: {addr} is not in this node's podCIDR "
                                             f"({', '.join(map(str, cidrs)) or 'none yet'})")
    return str(addr), int(raw_port)


async def handle(token: str, pod_cidrs: PodCIDRs, request: web.Request) -> web.StreamResponse:
    target = check(token, pod_cidrs, request)
    if isinstance(target, web.Response):
        return target
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0, autoping=True)
    if not ws.can_prepare(request).ok:
        return web.Response(status=400, text="the pod tunnel is a WebSocket: send an upgrade request")
    await ws.prepare(request)
    await relay_to(ws, *target, connected=CONNECTED_MESSAGE)
    return ws
