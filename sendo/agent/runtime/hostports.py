"""hostPort for pods in their own network namespace (the `docker` runtime): the agent
listens on the node (`hostIP`, else the node's address) and relays each TCP connection
to the pod's IP and `containerPort`, as the kubelet's CNI portmap plugin does with DNAT,
but in user space: no iptables, and nothing binds an address the node was not given.
Only TCP is published; a UDP hostPort is refused with a message on the pod.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from .base import PortMapping, SandboxError

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
DIAL_TIMEOUT = 10.0


class HostPorts:
    """The listeners of every sandbox, by sandbox id."""

    def __init__(self, default_address: str):
        self.default_address = default_address
        self._servers: dict[str, list[asyncio.AbstractServer]] = {}

    async def open(self, sandbox_id: str, pod_ip: str, ports: list[PortMapping]) -> None:
        """Listen for each mapping; SandboxError (nothing left listening) if one cannot."""
        self.close(sandbox_id)
        servers: list[asyncio.AbstractServer] = []
        try:
            for p in ports:
                if not p.host_port:
                    continue
                if p.protocol != "TCP":
                    raise SandboxError(f"hostPort {p.host_port}/{p.protocol}: only TCP host ports are supported")
                address = p.host_ip if p.host_ip and p.host_ip != "0.0.0.0" else self.default_address
                try:
                    servers.append(await asyncio.start_server(_relay_to(pod_ip, p.container_port), address,
                                                              p.host_port))
                except OSError as e:
                    raise SandboxError(f"cannot publish hostPort {address}:{p.host_port}: {e.strerror or e}") from e
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
