"""pods/portforward: `kubectl port-forward` (pods and services) through the API server.

What kubectl 1.37 sends (client-go `tools/portforward`, KEP-4006): a WebSocket upgrade
of `GET /api/v1/namespaces/<ns>/pods/<pod>/portforward` asking for the subprotocol
``SPDY/3.1+portforward.k8s.io``. The WebSocket then carries a SPDY/3.1 session, cut
into binary messages at arbitrary places. For every local connection kubectl opens two
SPDY streams with headers ``streamtype: error|data``, ``port: <remote port>`` and a
shared ``requestid``; it waits for a SYN_REPLY to each, half-closes the error stream at
once, and sends and receives the connection's bytes as DATA frames on the data stream.
Whatever the server writes on the error stream before closing it is printed by kubectl
as the reason the forward failed (and kubectl then stops). When the data stream ends
from our side, kubectl resets it and waits for the error stream to close. kubectl's
SPDY (moby/spdystream) has no flow control: WINDOW_UPDATE and SETTINGS are ignored both
ways; it pings every 10 s and expects the PING echoed.

The API server terminates SPDY here and, per kubectl connection, opens a WebSocket to
the agent of the pod's node (`/portForward/<ns>/<pod>?port=<p>`, node token; see
`sendo/agent/portforward.py`), which dials `<podIP>:<p>` and relays bytes.

The plain WebSocket channel protocol (``v4.channel.k8s.io`` / ``portforward.k8s.io``, or
no subprotocol at all: the kubelet serves that as the same binary channels, and kr8s offers
none; `?ports=` in the URL, one connection per port, channel 2i = data and 2i+1 = error for
the i-th port, the first message on each channel carrying the port as two bytes little
endian) is served too: the official Python client uses it.

kubectl falls back to a raw `Upgrade: SPDY/3.1` request when the WebSocket upgrade is
refused; an ASGI app cannot take over the raw socket, so that request gets the same
Status error the WebSocket request would have got (or a 400 asking for a WebSocket).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import aiohttp
import orjson

from ..wire import EOF_MESSAGE, dial_error
from . import errors
from .agentlink import AgentLink, node_agent, upgrade
from .errors import APIError
from .http import Request
from .options import RequestOptions
from .paths import Target, parse_path

log = logging.getLogger(__name__)

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # kubectl 1.30+
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")  # the Python client
STREAM_PAIR_TIMEOUT = 30.0  # kubelet's streamCreationTimeout
INBOUND_QUEUE = 64  # client → pod chunks buffered per connection before the reader waits

# ============================================================================ SPDY/3.1
SPDY_VERSION = 3
DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 0, 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED_STREAM, RST_CANCEL, RST_INTERNAL_ERROR = 1, 2, 3, 5, 6
MAX_FRAME_LENGTH = (1 << 24) - 1

# The zlib dictionary of SPDY/3 header blocks (SPDY protocol draft 3, section 2.6.10.1):
# length-prefixed header names and values, then a run of common text.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status 200_OK version HTTP/1.1 url "
    "public set-cookie keep-alive origin")
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _dictionary() -> bytes:
    words = [w.replace("_", " ") for w in _DICTIONARY_WORDS.split()]
    return b"".join(len(w).to_bytes(4, "big") + w.encode() for w in words) + _DICTIONARY_TAIL.encode()


HEADER_DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class SpdyError(Exception):
    """The peer sent something that is not SPDY/3.1: the session cannot go on."""


@dataclass
class Frame:
    type: int  # DATA or a control frame type
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""  # DATA payload
    headers: Headers | None = None  # SYN_STREAM, SYN_REPLY, HEADERS
    value: int = 0  # RST_STREAM / GOAWAY status, PING id, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: counts and lengths are 32-bit, names are lower
    case, several values of one name are joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\x00".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,), pos = struct.unpack_from(">I", block, 0), 4
        headers: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n].decode().lower()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            if pos > len(block):
                raise SpdyError("truncated header block")
            headers.setdefault(name, []).extend(value.split("\x00"))
        return headers
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"invalid header block: {e}") from None


class FrameWriter:
    """Encodes frames. Header blocks share one zlib stream per direction, so control
    frames with headers must be sent in the order they were encoded."""

    def __init__(self):
        self._z = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=HEADER_DICTIONARY)

    def _headers(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def control(type_: int, flags: int, payload: bytes) -> bytes:
        if len(payload) > MAX_FRAME_LENGTH:
            raise ValueError("control frame too long")
        return struct.pack(">HHI", 0x8000 | SPDY_VERSION, type_, flags << 24 | len(payload)) + payload

    def syn_stream(self, stream_id: int, headers: Headers, fin: bool = False, priority: int = 0) -> bytes:
        payload = struct.pack(">IIBB", stream_id, 0, priority << 5, 0) + self._headers(headers)
        return self.control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def syn_reply(self, stream_id: int, headers: Headers | None = None, fin: bool = False) -> bytes:
        return self.control(SYN_REPLY, FLAG_FIN if fin else 0,
                            struct.pack(">I", stream_id) + self._headers(headers or {}))

    @staticmethod
    def data(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
        if len(data) > MAX_FRAME_LENGTH:
            raise ValueError("data frame too long")
        return struct.pack(">II", stream_id & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data

    @classmethod
    def rst_stream(cls, stream_id: int, status: int) -> bytes:
        return cls.control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @classmethod
    def ping(cls, ping_id: int) -> bytes:
        return cls.control(PING, 0, struct.pack(">I", ping_id))

    @classmethod
    def goaway(cls, last_stream_id: int, status: int = 0) -> bytes:
        return cls.control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


class FrameReader:
    """Decodes a SPDY byte stream fed in pieces of any size."""

    def __init__(self):
        self._buf = bytearray()
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, payload = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frames.append(self._frame(head, payload))
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            return decode_header_block(self._z.decompress(block))
        except zlib.error as e:
            raise SpdyError(f"cannot decompress a header block: {e}") from None

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        first, flags = int.from_bytes(head[:4], "big"), head[4]
        if not first & 0x80000000:
            return Frame(DATA, first & 0x7FFFFFFF, flags, data=payload)
        version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != SPDY_VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            if type_ == SYN_STREAM:
                stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                return Frame(type_, stream_id, flags, headers=self._headers(payload[10:]))
            if type_ in (SYN_REPLY, HEADERS):
                stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                return Frame(type_, stream_id, flags, headers=self._headers(payload[4:]))
            if type_ in (RST_STREAM, WINDOW_UPDATE):
                stream_id, value = struct.unpack_from(">II", payload)
                return Frame(type_, stream_id & 0x7FFFFFFF, flags, value=value & 0x7FFFFFFF)
            if type_ == GOAWAY:
                last, status = struct.unpack_from(">II", payload) if len(payload) >= 8 else (
                    struct.unpack_from(">I", payload)[0], 0)
                return Frame(type_, last & 0x7FFFFFFF, flags, value=status)
            if type_ == PING:
                return Frame(type_, 0, flags, value=struct.unpack_from(">I", payload)[0])
        except struct.error:
            raise SpdyError(f"control frame {type_} is too short") from None
        return Frame(type_, 0, flags, data=payload)  # SETTINGS and anything newer: ignored


# ============================================================================ tunnels
class TunnelError(Exception):
    """The pod's port cannot be reached; the message is for the user."""


class Tunnel(Protocol):
    """One TCP connection to a pod port, however it is carried."""

    async def send(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...
    async def recv(self) -> bytes | None: ...  # None: no more bytes; TunnelError: never connected
    async def close(self) -> None: ...


OpenTunnel = Callable[[int], Awaitable[Tunnel]]


class AgentTunnel:
    """A WebSocket to the agent's /portForward endpoint (protocol in sendo/agent/portforward.py)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._session, self._ws = session, ws

    @classmethod
    async def open(cls, base_url: str, token: str | None, ns: str, pod: str, port: int,
                   node: str = "") -> "AgentTunnel":
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        try:
            ws = await session.ws_connect(f"{base_url}/portForward/{ns}/{pod}", params={"port": str(port)},
                                          headers={"Authorization": f"Bearer {token}"}, heartbeat=None,
                                          max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            await session.close()
            raise TunnelError(f"the agent of node {node} refused the port-forward: {e.status} {e.message}")
        except (aiohttp.ClientError, OSError) as e:
            await session.close()
            raise TunnelError(f"cannot reach the agent of node {node}: {e}")
        return cls(session, ws)

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def send_eof(self) -> None:
        await self._ws.send_str(EOF_MESSAGE)

    async def recv(self) -> bytes | None:
        msg = await self._ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return msg.data
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                body = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                body = {"error": msg.data}
            if body.get("error"):
                raise TunnelError(body["error"])
        return None  # eof, close or error: no more bytes

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        await self._session.close()


class TCPTunnel:
    """A direct TCP connection (tests, and anything that runs next to the pod)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._r, self._w = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "TCPTunnel":
        try:
            return cls(*await asyncio.wait_for(asyncio.open_connection(host, port), 10))
        except (OSError, asyncio.TimeoutError) as e:
            raise TunnelError(dial_error(host, port, e))

    async def send(self, data: bytes) -> None:
        self._w.write(data)
        await self._w.drain()

    async def send_eof(self) -> None:
        if self._w.can_write_eof():
            self._w.write_eof()

    async def recv(self) -> bytes | None:
        try:
            return await self._r.read(64 * 1024) or None
        except (ConnectionError, OSError):
            return None

    async def close(self) -> None:
        self._w.close()
        with contextlib.suppress(Exception):
            await self._w.wait_closed()


def forward_error(port: int, ns: str, pod: str, why: str) -> str:
    return f"error forwarding port {port} to pod {ns}/{pod}: {why}"


# ============================================================================ the SPDY session
@dataclass
class _Pair:
    """One forwarded connection: kubectl's error stream and data stream."""

    request_id: str
    port_header: str = ""
    error_id: int = 0
    data_id: int = 0
    inbound: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(INBOUND_QUEUE))
    reset: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    timer: asyncio.TimerHandle | None = None


class SpdySession:
    """The server side of kubectl's port-forward SPDY session. `feed` takes the bytes
    kubectl sent (in any pieces); frames for kubectl go out through `send`."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], open_tunnel: OpenTunnel,
                 ns: str = "", pod: str = ""):
        self._send = send
        self._open = open_tunnel
        self.ns, self.pod = ns, pod
        self._reader = FrameReader()
        self._writer = FrameWriter()
        self._lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}
        self._finished: set[int] = set()  # live streams we have half-closed (FIN), or the client reset
        self._background: set[asyncio.Future] = set()
        self.closed = False

    # ---- output
    async def _write(self, frame: bytes | Callable[[], bytes]) -> None:
        if self.closed:
            return
        async with self._lock:  # header blocks share a zlib stream: encode and send in one order
            try:
                await self._send(frame() if callable(frame) else frame)
            except Exception as e:  # the client is gone
                log.debug("port-forward: cannot write to the client: %s", e)
                self.closed = True

    async def _fin(self, stream_id: int) -> None:
        if stream_id and stream_id not in self._finished:
            self._finished.add(stream_id)
            await self._write(FrameWriter.data(stream_id, b"", fin=True))

    # ---- input
    async def feed(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            await self._handle(frame)

    async def _handle(self, f: Frame) -> None:
        if f.type == DATA:
            p = self._by_stream.get(f.stream_id)
            if p is not None and f.stream_id == p.data_id:
                if f.data:
                    await self._deliver(p, f.data)
                if f.fin:
                    await self._deliver(p, None)
        elif f.type == SYN_STREAM:
            await self._new_stream(f)
        elif f.type == RST_STREAM:
            p = self._by_stream.get(f.stream_id)
            if p is not None:
                self._finished.add(f.stream_id)
                p.reset.set()
                if p.task is None:
                    self._drop(p)
        elif f.type == PING:
            await self._write(FrameWriter.ping(f.value))
        elif f.type == GOAWAY:
            await self.close()
        # SYN_REPLY, HEADERS, SETTINGS, WINDOW_UPDATE: nothing to do (no flow control in kubectl's SPDY)

    @staticmethod
    async def _deliver(p: _Pair, item: bytes | None) -> None:
        """Queue bytes for the pod; wait while the queue is full (backpressure), unless
        the connection ends meanwhile."""
        if p.ended.is_set():
            return
        if not p.inbound.full():
            p.inbound.put_nowait(item)
            return
        putter, ender = asyncio.create_task(p.inbound.put(item)), asyncio.create_task(p.ended.wait())
        await asyncio.wait({putter, ender}, return_when=asyncio.FIRST_COMPLETED)
        for t in (putter, ender):
            t.cancel()

    async def _new_stream(self, f: Frame) -> None:
        h = f.headers or {}
        kind = (h.get("streamtype") or [""])[0]
        if kind not in ("data", "error") or f.stream_id in self._by_stream:
            await self._write(FrameWriter.rst_stream(f.stream_id, RST_PROTOCOL_ERROR))
            return
        request_id = (h.get("requestid") or [""])[0]
        if not request_id:  # clients before requestID: the error stream comes right before its data stream
            request_id = str(f.stream_id + 2 if kind == "error" else f.stream_id)
        p = self._pairs.get(request_id)
        if p is None:
            p = self._pairs[request_id] = _Pair(request_id)
            p.timer = asyncio.get_running_loop().call_later(STREAM_PAIR_TIMEOUT, self._expire, p)
        if (p.error_id if kind == "error" else p.data_id):
            await self._write(FrameWriter.rst_stream(f.stream_id, RST_PROTOCOL_ERROR))
            return
        if kind == "error":
            p.error_id = f.stream_id
        else:
            p.data_id = f.stream_id
        p.port_header = p.port_header or (h.get("port") or [""])[0]
        self._by_stream[f.stream_id] = p
        await self._write(lambda: self._writer.syn_reply(f.stream_id))
        if p.error_id and p.data_id:
            if p.timer:
                p.timer.cancel()
            p.task = asyncio.create_task(self._run(p), name=f"port-forward {self.ns}/{self.pod} #{request_id}")

    def _expire(self, p: _Pair) -> None:
        if p.task is None and self._pairs.get(p.request_id) is p:
            for sid in (p.error_id, p.data_id):
                if sid:
                    t = asyncio.ensure_future(self._write(FrameWriter.rst_stream(sid, RST_CANCEL)))
                    self._background.add(t)
                    t.add_done_callback(self._background.discard)
            self._drop(p)

    def _drop(self, p: _Pair) -> None:
        if self._pairs.get(p.request_id) is p:
            del self._pairs[p.request_id]
        for sid in (p.error_id, p.data_id):
            if self._by_stream.get(sid) is p:
                del self._by_stream[sid]
            self._finished.discard(sid)
        if p.timer:
            p.timer.cancel()

    # ---- one forwarded connection
    async def _run(self, p: _Pair) -> None:
        tunnel: Tunnel | None = None
        tasks: list[asyncio.Task] = []
        error = ""
        try:
            port = int(p.port_header) if p.port_header.isdigit() else 0
            if not 0 < port < 65536:
                error = f"invalid port {p.port_header!r}: must be a number from 1 to 65535"
                return
            try:
                tunnel = await self._open(port)
            except TunnelError as e:
                error = forward_error(port, self.ns, self.pod, str(e))
                return

            async def down() -> str:  # pod → kubectl
                try:
                    while (data := await tunnel.recv()) is not None:
                        for i in range(0, len(data), MAX_FRAME_LENGTH):
                            await self._write(FrameWriter.data(p.data_id, data[i:i + MAX_FRAME_LENGTH]))
                except TunnelError as e:
                    return forward_error(port, self.ns, self.pod, str(e))
                return ""

            async def up() -> None:  # kubectl → pod
                while (data := await p.inbound.get()) is not None:
                    await tunnel.send(data)
                await tunnel.send_eof()

            down_t, up_t, reset_t = tasks = [asyncio.create_task(down()), asyncio.create_task(up()),
                                             asyncio.create_task(p.reset.wait())]
            done, _ = await asyncio.wait({down_t, reset_t}, return_when=asyncio.FIRST_COMPLETED)
            if reset_t not in done:
                error = down_t.result()
                if not error:
                    # the pod's side ended: kubectl resets the data stream once it has read the
                    # end; a client that half-closed instead is done when both sides are
                    await self._fin(p.data_id)
                    await asyncio.wait({reset_t, up_t}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("port-forward %s/%s: connection failed", self.ns, self.pod)
            error = error or "internal error in the API server"
        finally:
            p.ended.set()
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if tunnel is not None:
                await tunnel.close()
            if error and not self.closed:
                log.info("port-forward %s/%s: %s", self.ns, self.pod, error)
                await self._write(FrameWriter.data(p.error_id, error.encode()))
            await self._fin(p.error_id)
            if not p.reset.is_set():
                await self._fin(p.data_id)
            self._drop(p)

    async def close(self) -> None:
        """The client is gone (or said GOAWAY): end every forwarded connection."""
        self.closed = True
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        for p in list(self._pairs.values()):
            if p.task is None:
                self._drop(p)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# ============================================================================ the channel protocol
class ChannelSession:
    """`v4.channel.k8s.io` port forwarding (the Python client): one connection per port
    in `?ports=`; each WebSocket message is one channel byte and a payload."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]], open_tunnel: OpenTunnel,
                 ports: list[int], ns: str = "", pod: str = ""):
        self._send, self._open, self.ports, self.ns, self.pod = send, open_tunnel, ports, ns, pod
        self._tunnels: dict[int, Tunnel] = {}
        self._opened = [asyncio.Event() for _ in ports]  # set once the port's tunnel is open, or failed
        self._tasks: list[asyncio.Task] = []
        self._closer: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def _write(self, channel: int, payload: bytes) -> None:
        async with self._lock:
            await self._send({"type": "websocket.send", "bytes": bytes([channel]) + payload})

    async def start(self) -> None:
        for i, port in enumerate(self.ports):
            prefix = struct.pack("<H", port)
            await self._write(2 * i, prefix)
            await self._write(2 * i + 1, prefix)
        for i, port in enumerate(self.ports):
            self._tasks.append(asyncio.create_task(self._down(i, port)))
        self._closer = asyncio.create_task(self._close_when_done())

    async def _close_when_done(self) -> None:
        """The protocol has no half-close: as the kubelet does, the WebSocket closes once
        every port's connection has ended (the client then sees the end of its sockets)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": 1000})

    async def _down(self, i: int, port: int) -> None:
        try:
            try:
                tunnel = self._tunnels[i] = await self._open(port)
            finally:
                self._opened[i].set()
            while (data := await tunnel.recv()) is not None:
                await self._write(2 * i, data)
        except TunnelError as e:
            await self._write(2 * i + 1, forward_error(port, self.ns, self.pod, str(e)).encode())
        except Exception as e:  # the client is gone
            log.debug("port-forward (channels): %s", e)

    async def feed(self, message: bytes) -> None:
        if not message:
            return
        channel, payload = message[0], message[1:]
        if channel % 2 or channel // 2 >= len(self.ports):
            return
        i = channel // 2
        await self._opened[i].wait()  # the client may write before the tunnel to the pod is open
        tunnel = self._tunnels.get(i)
        if tunnel is not None and payload:
            await tunnel.send(payload)

    async def close(self) -> None:
        for t in [*self._tasks, self._closer]:
            if t is not None:
                t.cancel()
        await asyncio.gather(*self._tasks, *([self._closer] if self._closer else []), return_exceptions=True)
        for tunnel in self._tunnels.values():
            await tunnel.close()


# ============================================================================ the API server side
async def _target(server: AgentLink, ns: str, name: str) -> tuple[str, str]:
    """(agent URL, node name) of a pod that can be forwarded to, else an APIError."""
    pods = server.registry.get("", "v1", "pods")
    pod = await server.api.get(pods, ns, name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot port-forward to a completed pod; current phase is {phase}")
    return await node_agent(server, node_name), node_name


async def serve_http(server: AgentLink, request: Request, ns: str, name: str) -> Any:
    """A portforward request that is not a WebSocket: kubectl's SPDY fallback, or a
    hand-made request. Report why the pod cannot be forwarded to, else what to send."""
    if request.method not in ("GET", "POST"):
        raise APIError(405, "portforward supports GET and POST (with a WebSocket upgrade)", "MethodNotAllowed")
    await _target(server, ns, name)
    raise errors.bad_request("port forwarding needs a WebSocket upgrade with the subprotocol "
                             f"{TUNNEL_PROTOCOL} (kubectl 1.30+) or v4.channel.k8s.io; this server "
                             "does not serve plain SPDY upgrades (do not set KUBECTL_PORT_FORWARD_WEBSOCKETS=false)")


async def websocket(server: AgentLink, scope, receive, send) -> None:
    """ASGI `websocket` scope: pods/<name>/portforward (kubectl port-forward)."""
    offered = [p.strip() for p in scope.get("subprotocols") or []]

    async def prepare(request: Request, user: Any) -> tuple[Target, str, list[int], str, str]:
        t = parse_path(scope["path"].rstrip("/"))
        if t is None or (t.group, t.version, t.plural, t.sub) != ("", "v1", "pods", "portforward") \
                or not t.namespace or not t.name:
            raise APIError(404, f"the server could not find the requested resource ({scope['path']})",
                           "NotFound")
        await server.authorize(RequestOptions(user), "create", t)  # as for the SPDY POST
        if TUNNEL_PROTOCOL in offered:
            protocol, ports = TUNNEL_PROTOCOL, []
        elif chosen := next((p for p in offered if p in CHANNEL_PROTOCOLS), None):
            protocol, ports = chosen, _ports(request)
        elif not offered:  # no subprotocol: the binary channel protocol, as the kubelet serves it (kr8s)
            protocol, ports = "", _ports(request)
        else:
            raise errors.bad_request(f"none of the offered WebSocket subprotocols {offered} is supported; "
                                     f"use {TUNNEL_PROTOCOL} or v4.channel.k8s.io")
        return (t, protocol, ports, *await _target(server, t.namespace, t.name))

    prepared = await upgrade(server, scope, receive, send, prepare)
    if prepared is None:
        return
    t, protocol, ports, base_url, node_name = prepared
    assert t.namespace and t.name
    ns, name = t.namespace, t.name

    async def open_tunnel(port: int) -> Tunnel:
        return await AgentTunnel.open(base_url, server.node_token, ns, name, port, node_name)

    await send({"type": "websocket.accept", "subprotocol": protocol or None})
    if protocol == TUNNEL_PROTOCOL:
        async def send_bytes(data: bytes) -> None:
            await send({"type": "websocket.send", "bytes": data})
        session: SpdySession | ChannelSession = SpdySession(send_bytes, open_tunnel, ns, name)
    else:
        session = ChannelSession(send, open_tunnel, ports, ns, name)
        await session.start()
    try:
        while True:
            msg = await receive()
            if msg["type"] != "websocket.receive":
                break
            data = msg.get("bytes")
            if data is None:
                data = (msg.get("text") or "").encode()
            try:
                await session.feed(data)
            except SpdyError as e:
                log.info("port-forward %s/%s: %s", ns, name, e)
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1002, "reason": str(e)[:100]})
                break
            if isinstance(session, SpdySession) and session.closed:
                break
    except Exception as e:  # the client went away mid-write
        log.debug("port-forward %s/%s ended: %s", ns, name, e)
    finally:
        await session.close()


def _ports(request: Request) -> list[int]:
    raw = [p for v in request.query_params.getlist("ports") for p in v.split(",") if p.strip()]
    ports = []
    for p in raw:
        if not p.strip().isdigit() or not 0 < int(p) < 65536:
            raise errors.bad_request(f"invalid port {p!r}: ports must be numbers from 1 to 65535")
        ports.append(int(p))
    if not ports:
        raise errors.bad_request("at least one port must be given in ?ports=")
    return ports
