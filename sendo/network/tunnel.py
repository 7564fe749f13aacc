"""The service proxy's end of the pod tunnel (`wire.TUNNEL_PATH`, served by every agent,
`agent/tunnel.py`): one accepted connection relayed to a process pod of another node
through that node's agent, over a WebSocket.

`open_tunnel` upgrades `GET /podTunnel?ip=&port=` with the node token and waits for the
agent's `CONNECTED_MESSAGE`; a refusal (401/403/400), a dial error the agent reports, or
no answer raises `OSError`, so the proxy tries another endpoint as it does after a
failed dial. The `TunnelPeer` it returns plays the part a dialled upstream plays for the
proxy's client side (`write`, `half_close`, `pause_reading`, `resume_reading`,
`close`):

* client → pod: bytes are queued and sent by one task, which awaits each send (aiohttp
  waits for its socket to drain); past HIGH_WATER queued bytes the client is paused
  until the queue is below LOW_WATER again;
* pod → client: one task receives messages and writes them to the client; while the
  client's socket is full (the client side calls `pause_reading`) it stops receiving, so
  aiohttp stops reading the agent's socket and the agent stops reading the pod's;
* a half-close travels as `EOF_MESSAGE` both ways; the WebSocket's close ends the
  client connection (a reset if it ended with no EOF and no clean close).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

import aiohttp

from ..wire import CONNECTED_MESSAGE, EOF_MESSAGE, TUNNEL_PATH
from .endpointroute import Via

log = logging.getLogger(__name__)
HIGH_WATER = 256 * 1024  # client bytes queued for the tunnel before the client is paused
LOW_WATER = 64 * 1024
MAX_MESSAGE = 256 * 1024  # queued chunks are sent together up to this size
_EOF, _CLOSE = object(), object()  # queue markers: half-close, then close once what is queued is sent
_closing: set[asyncio.Task] = set()  # WebSocket closes still under way (kept referenced)


class TunnelRefused(OSError):
    """The agent answered, but did not open the tunnel (its status says why)."""


class ClientSide(Protocol):
    """What the tunnel needs of the proxy's accepted connection."""

    transport: Any  # the accepted connection's asyncio.Transport
    closed: bool

    def half_close(self) -> None: ...


def tunnel_url(via: Via) -> str:
    host = f"[{via[0]}]" if ":" in via[0] else via[0]
    return f"http://{host}:{via[1]}{TUNNEL_PATH}"


async def open_tunnel(session: aiohttp.ClientSession, via: Via, token: str, ip: str, port: int,
                      client: ClientSide) -> "TunnelPeer":
    """A tunnel to ip:port through the agent at `via`, connected to the pod; OSError if not."""
    where = f"{ip}:{port} through the agent at {via[0]}:{via[1]}"
    try:
        ws = await session.ws_connect(tunnel_url(via), params={"ip": ip, "port": str(port)},
                                      headers={"Authorization": f"Bearer {token}"},
                                      heartbeat=None, max_msg_size=0, autoping=True)
    except aiohttp.WSServerHandshakeError as e:
        raise TunnelRefused(f"{where}: refused ({e.status} {e.message})") from e
    except aiohttp.ClientError as e:
        raise OSError(f"{where}: {e}") from e
    try:
        try:
            msg = await ws.receive()
        except aiohttp.ClientError as e:
            raise OSError(f"{where}: {e}") from e
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data == CONNECTED_MESSAGE:
            peer = TunnelPeer(ws, client)
            ws = None
            return peer
        detail = msg.data if msg.type == aiohttp.WSMsgType.TEXT else f"closed ({msg.type.name})"
        raise OSError(f"{where}: {detail}")
    finally:
        if ws is not None:  # refused, failed, or cancelled (the proxy's deadline): nothing is relayed
            _close_later(ws)


def _close_later(ws: aiohttp.ClientWebSocketResponse) -> None:
    t = asyncio.get_running_loop().create_task(ws.close(), name="pod-tunnel-close")
    _closing.add(t)
    t.add_done_callback(_closing.discard)


class TunnelPeer:
    """An open tunnel, relaying for one client connection (module docstring)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client: ClientSide):
        self.ws, self.client = ws, client
        self.eof = False  # the pod finished sending
        self.closed = False
        self._out: deque = deque()  # bytes, _EOF or _CLOSE
        self._queued = 0
        self._out_ready = asyncio.Event()
        self._client_paused = False
        self._can_receive = asyncio.Event()
        self._can_receive.set()
        loop = asyncio.get_running_loop()
        self._sender = loop.create_task(self._send_loop(), name="pod-tunnel-send")
        self._receiver = loop.create_task(self._receive_loop(), name="pod-tunnel-receive")

    # ------------------------------------------------------------ what the client side calls
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._put(data)
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._client_paused:
            self._client_paused = True
            self.client.transport.pause_reading()

    def half_close(self) -> None:
        self._put(_EOF)

    def pause_reading(self) -> None:
        self._can_receive.clear()

    def resume_reading(self) -> None:
        self._can_receive.set()

    def close(self, abort: bool = False) -> None:
        """The client connection is gone: with abort, now; else once what it sent is sent."""
        if self.closed:
            return
        self.closed = True
        if abort:
            self._sender.cancel()
            self._receiver.cancel()
            _close_later(self.ws)
        else:
            self._out.append(_CLOSE)
            self._out_ready.set()

    # ------------------------------------------------------------ relaying
    def _put(self, item: object) -> None:
        self._out.append(item)
        self._out_ready.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                while not self._out:
                    self._out_ready.clear()
                    await self._out_ready.wait()
                item = self._out.popleft()
                if item is _CLOSE:
                    self._receiver.cancel()
                    await self.ws.close()
                    return
                if item is _EOF:
                    await self.ws.send_str(EOF_MESSAGE)
                    continue
                chunks = [item]
                size = len(item)
                while self._out and isinstance(self._out[0], bytes) and size < MAX_MESSAGE:
                    chunks.append(self._out.popleft())
                    size += len(chunks[-1])
                await self.ws.send_bytes(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                self._queued -= size
                if self._client_paused and self._queued < LOW_WATER:
                    self._client_paused = False
                    if not self.client.closed:
                        self.client.transport.resume_reading()
        except (ConnectionError, aiohttp.ClientError) as e:
            log.debug("pod tunnel: sending ended: %s", e)
            self._end_client(clean=False)

    async def _receive_loop(self) -> None:
        clean = False
        try:
            while True:
                await self._can_receive.wait()
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if not self.client.closed:
                        self.client.transport.write(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT and msg.data == EOF_MESSAGE:
                    self.eof = True
                    if not self.client.closed:
                        self.client.half_close()
                elif msg.type == aiohttp.WSMsgType.TEXT:  # the agent's error after connecting
                    log.debug("pod tunnel: %s", msg.data)
                    break
                else:  # the close (clean when the pod's side had ended), or the connection's end
                    clean = self.eof or msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING)
                    break
        except (ConnectionError, aiohttp.ClientError) as e:
            log.debug("pod tunnel: receiving ended: %s", e)
        self._end_client(clean)

    def _end_client(self, clean: bool) -> None:
        if not self.client.closed:
            (self.client.transport.close if clean else self.client.transport.abort)()
