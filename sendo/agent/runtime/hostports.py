"""hostPort for pods in their own network namespace (the `docker` runtime): the agent
listens on the node (`hostIP`, else the node's address) and relays each TCP connection
to the pod's IP and `containerPort`, as the kubelet's CNI portmap plugin does with DNAT,
but in user space: no iptables, and nothing binds an address the node was not given.
UDP is relayed per client: each client address gets its own socket connected to the pod,
whose replies go back to that client; a flow idle for UDP_IDLE seconds is closed (as
conntrack forgets a UDP flow), and at most UDP_MAX_FLOWS are kept per port.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from .base import PortMapping, SandboxError

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
DIAL_TIMEOUT = 10.0
UDP_IDLE = 30.0
UDP_MAX_FLOWS = 1024


class HostPorts:
    """The listeners of every sandbox, by sandbox id."""

    def __init__(self, default_address: str):
        self.default_address = default_address
        self._servers: dict[str, list[Any]] = {}  # TCP servers and UDP relays: each has close()

    async def open(self, sandbox_id: str, pod_ip: str, ports: list[PortMapping]) -> None:
        """Listen for each mapping; SandboxError (nothing left listening) if one cannot."""
        self.close(sandbox_id)
        servers: list[Any] = []
        loop = asyncio.get_running_loop()
        try:
            for p in ports:
                if not p.host_port:
                    continue
                if p.protocol not in ("TCP", "UDP"):
                    raise SandboxError(f"hostPort {p.host_port}/{p.protocol}: only TCP and UDP host ports are "
                                       "supported")
                address = p.host_ip if p.host_ip and p.host_ip != "0.0.0.0" else self.default_address
                try:
                    if p.protocol == "UDP":
                        _, relay = await loop.create_datagram_endpoint(
                            lambda: UdpRelay(pod_ip, p.container_port), local_addr=(address, p.host_port))
                        servers.append(relay)
                    else:
                        servers.append(await asyncio.start_server(_relay_to(pod_ip, p.container_port), address,
                                                                  p.host_port))
                except OSError as e:
                    raise SandboxError(f"cannot publish hostPort {address}:{p.host_port}/{p.protocol}: "
                                       f"{e.strerror or e}") from e
        except BaseException:
            for s in servers:
                s.close()
            raise
        if servers:
            self._servers[sandbox_id] = servers

    def close(self, sandbox_id: str) -> None:
        for s in self._servers.pop(sandbox_id, []):
            s.close()

    def close_all(self) -> None:
        for sandbox_id in list(self._servers):
            self.close(sandbox_id)


def _relay_to(ip: str, port: int):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(ip, port), DIAL_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            log.info("hostPort: cannot reach %s:%d: %s", ip, port, e)
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            for w in (writer, up_w):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
    return serve


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Bytes from src to dst until src ends; then half-close dst."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.close()


class UdpRelay(asyncio.DatagramProtocol):
    """A UDP hostPort: datagrams from each client go out of a socket of that client's own,
    connected to the pod; what the pod answers there goes back to the client."""

    def __init__(self, ip: str, port: int):
        self.target = (ip, port)
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Any, tuple[socket.socket, float]] = {}  # client address -> (socket, last use)
        self._sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE / 2, self._sweep)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            if len(self.flows) >= UDP_MAX_FLOWS:
                self._forget(min(self.flows, key=lambda a: self.flows[a][1]))
            try:
                sock = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect(self.target)
            except OSError as e:
                log.info("hostPort: cannot reach %s:%d over UDP: %s", *self.target, e)
                return
            asyncio.get_running_loop().add_reader(sock.fileno(), self._reply, addr, sock)
        else:
            sock = flow[0]
        self.flows[addr] = (sock, time.monotonic())
        try:
            sock.send(data)
        except OSError:  # a full buffer or an ICMP error: UDP may drop it
            pass

    def _reply(self, addr: Any, sock: socket.socket) -> None:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        except OSError:  # e.g. nothing listens in the pod (ICMP port unreachable)
            return
        if self.transport is not None and addr in self.flows:
            self.flows[addr] = (sock, time.monotonic())
            self.transport.sendto(data, addr)

    def _forget(self, addr: Any) -> None:
        sock, _ = self.flows.pop(addr)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()

    def _sweep(self) -> None:
        cutoff = time.monotonic() - UDP_IDLE
        for addr in [a for a, (_, last) in self.flows.items() if last < cutoff]:
            self._forget(addr)
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE / 2, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for addr in list(self.flows):
            self._forget(addr)
        if self.transport is not None:
            self.transport.close()
            self.transport = None
