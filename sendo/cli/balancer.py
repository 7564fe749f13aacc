"""A TCP load balancer on loopback in front of several API servers (`sendo up --servers N`).

kubectl, helm and the official clients take one server URL from a kubeconfig; an HA
cluster on one machine gives them this balancer's address. It forwards each TCP
connection, unopened (TLS runs end to end between the client and an API server: every
server of the cluster serves the same certificate), to a server that answered its last
`/readyz` check, taking them in turn. A server that refuses a connection is marked down
at once and the next one is tried, so a client never sees a dead server's refusal while
another can take it; connections open to a server that dies end with it (the client
reconnects, to a live server). Checks run every `interval` seconds, so a server that
comes back gets traffic again.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

from ..pki import client_context

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.0  # seconds to open a connection to one server before trying the next
CHECK_TIMEOUT = 2.0  # seconds a /readyz check may take
CHUNK = 65536


@dataclass
class Backend:
    host: str
    port: int
    healthy: bool = True  # optimistic until the first check: a fresh cluster is usable at once
    connections: int = 0  # open now (a figure for logs and tests)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class TCPBalancer:
    def __init__(self, backends: list[tuple[str, int]], ca_pem: bytes | None = None, interval: float = 1.0):
        self.backends = [Backend(h, p) for h, p in backends]
        self.interval = interval
        self.ssl: ssl.SSLContext | None = client_context(ca_pem) if ca_pem is not None else None
        self._next = 0
        self._server: asyncio.AbstractServer | None = None
        self._checker: asyncio.Task | None = None
        self._pipes: set[asyncio.Task] = set()

    async def start(self, sock: socket.socket) -> None:
        """Serve on a bound socket (serving.listen_socket), and start the health checks."""
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self._checker = asyncio.create_task(self._check_forever(), name="balancer-checks")

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in (self._checker, *self._pipes) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------ choosing a server
    def order(self) -> list[Backend]:
        """Servers to try for the next connection: the healthy ones in turn (round robin),
        then the others (when every check failed, trying beats refusing)."""
        n = len(self.backends)
        start = self._next % n
        self._next += 1
        turn = self.backends[start:] + self.backends[:start]
        return [b for b in turn if b.healthy] + [b for b in turn if not b.healthy]

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for b in self.order():
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(b.host, b.port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                if b.healthy:
                    log.warning("API server %s refused a connection (%s): marked down", b.name, e)
                b.healthy = False
                continue
            return b, r, w
        return None

    # ------------------------------------------------------------ forwarding
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
        try:
            chosen = await self._connect()
            if chosen is None:
                return
            b, up_r, up_w = chosen
            b.connections += 1
            try:
                await _splice(reader, writer, up_r, up_w)
            finally:
                b.connections -= 1
                _close(up_w)
        finally:
            _close(writer)
            if task is not None:
                self._pipes.discard(task)

    # ------------------------------------------------------------ health checks
    async def check(self, b: Backend) -> bool:
        """One /readyz check of `b` over HTTPS (HTTP/1.0, no keep-alive): True on 200."""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(b.host, b.port, ssl=self.ssl,
                                                                  server_hostname=b.host if self.ssl else None),
                                          CHECK_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            return False
        try:
            w.write(f"GET /readyz HTTP/1.0\r\nHost: {b.name}\r\n\r\n".encode())
            line = await asyncio.wait_for(r.readline(), CHECK_TIMEOUT)
            return line.split(b" ")[1:2] == [b"200"]
        except (OSError, asyncio.TimeoutError, ssl.SSLError, IndexError):
            return False
        finally:
            _close(w)

    async def check_all(self) -> None:
        results = await asyncio.gather(*(self.check(b) for b in self.backends))
        for b, ok in zip(self.backends, results):
            if ok != b.healthy:
                log.warning("API server %s is %s", b.name, "ready again" if ok else "not ready: marked down")
            b.healthy = ok

    async def _check_forever(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)  # the check period


async def _splice(a_r: asyncio.StreamReader, a_w: asyncio.StreamWriter,
                  b_r: asyncio.StreamReader, b_w: asyncio.StreamWriter) -> None:
    """Copy both ways until either side ends; then both are done."""
    one = asyncio.create_task(_copy(a_r, b_w))
    two = asyncio.create_task(_copy(b_r, a_w))
    try:
        await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (one, two):
            t.cancel()
        await asyncio.gather(one, two, return_exceptions=True)


async def _copy(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(CHUNK):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass


def _close(w: asyncio.StreamWriter) -> None:
    try:
        w.close()
    except (ConnectionError, OSError, RuntimeError):
        pass
