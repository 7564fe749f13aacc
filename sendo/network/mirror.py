"""Service addresses as pods in their own network namespace (the `docker` runtime) see
them.

ClusterIPs come from a loopback range (127.32.0.0/16), which every process on the node
reaches and no container can: a container's loopback is its own. So the docker runtime
gets a second, non-loopback service range of the same size (`--container-service-cidr`,
default 10.96.0.0/16) and each ClusterIP has a twin in it at the same offset
(127.32.3.7 ↔ 10.96.3.7). The node holds the whole twin range as local addresses (a
`local` route, installed after an `unreachable` route for it, so no address of it can
ever leave the machine); every sandbox routes it to the node over the pod bridge; the
service proxy listens on the twins next to the ClusterIPs, and a second cluster DNS on
the twin of 127.32.0.10, port 53, answers with twins. Process-runtime pods keep using
the ClusterIPs themselves: nothing changes for them.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

CLUSTER_IPS = ipaddress.ip_network("127.32.0.0/16")  # the API server's service range (api/admission.py)
DNS_CLUSTER_IP = "127.32.0.10"
DEFAULT_CIDR = "10.96.0.0/16"


def parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A twin range: IPv4, exactly the size of the ClusterIP range; ValueError otherwise."""
    try:
        net = ipaddress.ip_network(cidr or DEFAULT_CIDR)
    except ValueError as e:
        raise ValueError(f"bad container service CIDR {cidr!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen != CLUSTER_IPS.prefixlen \
            or net.overlaps(ipaddress.ip_network("127.0.0.0/8")):
        raise ValueError(f"the container service CIDR must be a non-loopback IPv4 /{CLUSTER_IPS.prefixlen}, "
                         f"not {net}")
    return net


class ServiceMirror:
    """The twin range, once a runtime has made it reachable (`enable`); until then no
    address has a twin."""

    def __init__(self) -> None:
        self.cidr: ipaddress.IPv4Network | None = None
        self._changed: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self._changed.append(callback)

    def enable(self, cidr: str) -> None:
        net = parse_cidr(cidr)
        if net != self.cidr:
            self.cidr = net
            for cb in self._changed:
                cb()

    def twin(self, ip: str) -> str | None:
        """The twin of a ClusterIP, or None (not a ClusterIP, or no twin range yet)."""
        if self.cidr is None:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr not in CLUSTER_IPS:
            return None
        return str(self.cidr.network_address + (int(addr) - int(CLUSTER_IPS.network_address)))

    def twins(self, ip: str) -> list[str]:
        t = self.twin(ip)
        return [t] if t else []
