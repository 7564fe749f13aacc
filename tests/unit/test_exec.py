"""Pure pieces of exec/attach and of the container pods' network: the Status the error
channel carries, the ClusterIP twins of the container service range, and hostPort
listeners relaying to a server of the test's own on loopback."""
from __future__ import annotations

import asyncio
import socket

import pytest

from sendo.agent.podexec import exit_status, failure
from sendo.agent.runtime.base import PortMapping, SandboxError
from sendo.agent.runtime.hostports import HostPorts
from sendo.network.mirror import ServiceMirror, parse_cidr
from tests.portforward_helpers import EchoServer


def test_the_error_channel_carries_the_exit_code_as_a_kubelet_writes_it():
    assert exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    st = exit_status(["sh", "-c", "exit 3"], 3)
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert st["message"] == "command terminated with non-zero exit code: error executing command [sh -c exit 3], " \
                            "exit code 3"
    assert failure("nope", "NotFound", 404)["code"] == 404


def test_a_cluster_ip_has_a_twin_at_the_same_offset_once_the_range_is_enabled():
    m = ServiceMirror()
    changed = []
    m.on_change(lambda: changed.append(m.cidr))
    assert m.twin("127.32.3.7") is None  # not enabled yet: no twins
    m.enable("10.150.0.0/16")
    m.enable("10.150.0.0/16")  # the same range again changes nothing
    assert len(changed) == 1
    assert m.twin("127.32.3.7") == "10.150.3.7"
    assert m.twin("127.32.0.10") == "10.150.0.10"
    assert m.twins("127.64.0.5") == [] and m.twin("not-an-ip") is None  # a pod IP, garbage
    for bad in ("10.1.0.0/17", "127.33.0.0/16", "fd00::/112", "banana"):
        with pytest.raises(ValueError):
            parse_cidr(bad)
    assert str(parse_cidr("")) == "10.96.0.0/16"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_host_ports_relay_tcp_and_refuse_what_they_cannot_publish():
    hp = HostPorts("127.0.0.1")
    async with EchoServer() as echo:
        port = _free_port()
        await hp.open("sb1", "127.0.0.1", [PortMapping(echo.port, host_port=port), PortMapping(9)])
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"ping")
        w.write_eof()  # the half-close travels through
        assert await asyncio.wait_for(r.read(), 10) == b"ping"
        w.close()
        # the same host port for another sandbox: refused, and nothing of it is left listening
        other = _free_port()
        with pytest.raises(SandboxError, match=f"hostPort 127.0.0.1:{port}"):
            await hp.open("sb2", "127.0.0.1", [PortMapping(80, host_port=other), PortMapping(80, host_port=port)])
        probe = socket.socket()
        probe.bind(("127.0.0.1", other))  # free again
        probe.close()
        with pytest.raises(SandboxError, match="only TCP and UDP"):
            await hp.open("sb3", "127.0.0.1", [PortMapping(53, "SCTP", host_port=_free_port())])
        hp.close("sb1")
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    hp.close_all()
