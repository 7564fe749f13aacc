"""hostPort relays on loopback: UDP datagrams of each client reach the "pod" (a UDP echo
on loopback here) and its answers come back to that client only; closing frees the port."""
from __future__ import annotations

import asyncio
import socket

import pytest

from sendo.agent.runtime.base import PortMapping, SandboxError
from sendo.agent.runtime.hostports import HostPorts
from tests.waiting import wait_until


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(b"echo:" + data + f" from {addr[1]}".encode(), addr)


async def ask(port: int, data: bytes) -> tuple[bytes, int]:
    """Send from a socket of its own; the answer and this client's port."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, d, addr):
            if not got.done():
                got.set_result(d)
    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        for _ in range(20):  # UDP may drop: ask again (bounded)
            transport.sendto(data)
            try:
                return await asyncio.wait_for(asyncio.shield(got), 0.5), transport.get_extra_info("sockname")[1]
            except asyncio.TimeoutError:
                continue
        raise AssertionError(f"no answer to {data!r} through the UDP hostPort")
    finally:
        transport.close()


async def test_a_udp_host_port_relays_each_client_to_the_pod_and_back():
    pod_port, host_port = free_udp_port(), free_udp_port()
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", pod_port))
    ports = HostPorts("127.0.0.1")
    try:
        await ports.open("sb", "127.0.0.1", [PortMapping(pod_port, "UDP", "dns", host_port)])
        (a, _), (b, _) = await asyncio.gather(ask(host_port, b"one"), ask(host_port, b"two"))
        assert a.startswith(b"echo:one from ") and b.startswith(b"echo:two from ")
        assert a.split()[-1] != b.split()[-1]  # each client through a socket of its own
    finally:
        ports.close("sb")
        echo.close()

    def released() -> bool:  # the transport's socket closes on the loop's next turn
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", host_port))
            except OSError:
                return False
            return True
    await wait_until(released, 10, what=f"UDP port {host_port} released")


async def test_a_protocol_other_than_tcp_or_udp_is_refused_and_nothing_stays_open():
    tcp = free_tcp_port()  # free for TCP: a port free for UDP may be another process's TCP port
    ports = HostPorts("127.0.0.1")
    with pytest.raises(SandboxError, match="SCTP: only TCP and UDP"):
        await ports.open("sb", "127.0.0.2", [PortMapping(80, "TCP", "", tcp), PortMapping(81, "SCTP", "", 9)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", tcp))
