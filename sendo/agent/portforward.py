"""The agent's half of pods/portforward: `GET /portForward/<ns>/<pod>?port=<p>` upgrades to
a WebSocket that carries one TCP connection to `<podIP>:<p>`.

The API server opens one such WebSocket per forwarded connection (it speaks kubectl's
SPDY, see `sendo/api/portforward.py`); here there is no multiplexing, only bytes:

* binary messages are the connection's bytes, in both directions;
* the text message ``{"eof": true}`` half-closes: the sender writes nothing more
  (the agent then shuts down the pod socket's write side, or the API server ends
  the data stream towards kubectl);
* the text message ``{"error": "..."}`` (agent → API server) says why the pod could
  not be reached; the API server hands it to kubectl on the stream's error channel;
* a close ends the connection. The agent closes once both directions are done.

Pods have loopback IPs (127.x), so the dial never leaves the machine.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from aiohttp import WSMsgType, web

from ..wire import EOF_MESSAGE, dial_error, error_message

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
DIAL_TIMEOUT = 10.0
PodAddress = Callable[[str, str], str]
"""(namespace, pod name) -> the IP of that pod on this node; raises LookupError with a
message for kubectl when the pod does not run here or has no IP yet."""


def handler(token: str, pod_address: PodAddress):
    """The aiohttp handler of `/portForward/{ns}/{pod}`: only the API server (which holds
    the node token) may call it; `pod_address` is all it needs to know of the node."""
    async def port_forward(request: web.Request) -> web.StreamResponse:
        return await handle(token, pod_address, request)
    return port_forward


async def handle(token: str, pod_address: PodAddress, request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization", "") != f"Bearer {token}":
        return web.Response(status=401, text="Unauthorized")
    ns, name = request.match_info["ns"], request.match_info["pod"]
    raw = request.query.get("port", "")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        return web.Response(status=400, text=f"invalid port {raw!r}: must be a number from 1 to 65535")
    port = int(raw)
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    try:
        ip = pod_address(ns, name)
    except LookupError as e:
        await ws.send_str(error_message(str(e.args[0] if e.args else e)))
        await ws.close()
        return ws
    await relay_to(ws, ip, port)
    return ws


async def relay_to(ws: web.WebSocketResponse, ip: str, port: int, connected: str | None = None) -> None:
    """Dial ip:port and relay between it and the WebSocket until both sides are done;
    `connected`, a text message sent once the dial succeeded (the pod tunnel's)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), DIAL_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as e:
        await ws.send_str(error_message(dial_error(ip, port, e)))
        await ws.close()
        return
    try:
        if connected is not None:
            await ws.send_str(connected)
        await relay(ws, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        if not ws.closed:
            await ws.close()


async def relay(ws, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes both ways between a WebSocket (aiohttp, either end) and a TCP stream. Returns
    when both directions have ended, or when the WebSocket closes."""

    async def tcp_to_ws() -> None:
        try:
            while data := await reader.read(CHUNK):
                await ws.send_bytes(data)
            if not ws.closed:
                await ws.send_str(EOF_MESSAGE)
        except (ConnectionError, OSError) as e:  # a reset (pod or peer): the stream just ends
            log.debug("port-forward: relay from the pod ended: %s", e)

    async def ws_to_tcp() -> bool:
        """True when the peer half-closed (eof), False when the WebSocket ended."""
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.TEXT and msg.data == EOF_MESSAGE:
                if writer.can_write_eof():
                    writer.write_eof()
                return True
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
        return False

    down = asyncio.create_task(tcp_to_ws())
    up = asyncio.create_task(ws_to_tcp())
    try:
        done, _ = await asyncio.wait({up}, return_when=asyncio.FIRST_COMPLETED)
        half_closed = False
        with contextlib.suppress(ConnectionError, OSError):
            half_closed = up.result()
        if half_closed:
            # the peer sends no more; keep the other direction going, and notice a close
            closer = asyncio.create_task(_until_closed(ws))
            await asyncio.wait({down, closer}, return_when=asyncio.FIRST_COMPLETED)
            closer.cancel()
    finally:
        for t in (down, up):
            t.cancel()
        await asyncio.gather(down, up, return_exceptions=True)


async def _until_closed(ws) -> None:
    async for _ in ws:  # nothing is expected after eof but the close
        pass
