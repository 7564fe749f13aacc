"""Port-forward stand-ins shared by tests/unit/test_portforward.py and
tests/integration/test_portforward.py: an echo server, kubectl's side of SPDY, a node."""
from __future__ import annotations

import asyncio

from sendo.api.portforward import DATA, PING, RST_STREAM, SYN_REPLY, FrameReader, FrameWriter
from tests.waiting import wait_until


class EchoServer:
    """Echoes every byte back; after the client's EOF it half-closes too. Counts connections."""

    def __init__(self):
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> "EchoServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


class SpdyClient:
    """What kubectl does, in miniature: opens error+data stream pairs and reads frames."""

    def __init__(self):
        self.writer = FrameWriter()
        self.reader = FrameReader()
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.next_id = 1
        self.request_id = 0
        self.frames: list = []
        self.data: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.replied: set[int] = set()
        self.reset: set[int] = set()
        self.pings: list[int] = []
        self.changed = asyncio.Event()

    async def from_server(self, raw: bytes) -> None:  # the session's send()
        for f in self.reader.feed(raw):
            self.frames.append(f)
            if f.type == DATA:
                self.data.setdefault(f.stream_id, bytearray()).extend(f.data)
                if f.fin:
                    self.fin.add(f.stream_id)
            elif f.type == SYN_REPLY:
                self.replied.add(f.stream_id)
            elif f.type == RST_STREAM:
                self.reset.add(f.stream_id)
            elif f.type == PING:
                self.pings.append(f.value)
        self.changed.set()

    def open_pair(self, port: int | str) -> tuple[bytes, int, int]:
        """SYN_STREAM frames for an error stream then a data stream (one request id)."""
        rid, self.request_id = self.request_id, self.request_id + 1
        err, data = self.next_id, self.next_id + 2
        self.next_id += 4
        h = {"port": [str(port)], "requestid": [str(rid)]}
        frames = (self.writer.syn_stream(err, {"streamtype": ["error"], **h}) +
                  self.writer.data(err, b"", fin=True) +  # kubectl half-closes the error stream at once
                  self.writer.syn_stream(data, {"streamtype": ["data"], **h}))
        return frames, err, data

    async def wait(self, cond, timeout: float = 10.0) -> None:
        await wait_until(cond, timeout, 0.01)


class FakeAgent:
    """The node as port-forward sees it: one pod, default/web, at pod_ip."""

    def __init__(self, token: str, pod_ip: str | None = "127.0.0.1"):
        self.token = token
        self.pod_ip = pod_ip

    def pod_address(self, ns, name):
        if (ns, name) != ("default", "web"):
            raise LookupError(f'pod "{name}" is not running on node node-a')
        if not self.pod_ip:
            raise LookupError(f'pod "{name}" has no IP yet')
        return self.pod_ip
