"""How the service proxy reaches an endpoint: by dialling its address, or through the
agent of the endpoint's node (the pod tunnel, `network/tunnel.py`).

Process pods have loopback pod IPs from their node's podCIDR (127.64.0.0/10 blocks):
such an address exists on its own machine only. An endpoint whose EndpointSlice entry
names another node, whose address is inside that node's podCIDR and whose node's agent
is on another machine (its address is not one of this host's) is reached through that
agent. Everything else is dialled: endpoints of this node, container pods (their
addresses are routed between hosts, `agent/noderoutes.py`), host-network pods, nodes
that share this machine (their loopback blocks are local here too), and nodes whose
agent has not posted its address yet.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any, Callable

from ..wire import agent_address

Via = tuple[str, int]  # (host, port) of the agent to open the tunnel with


def pod_cidrs(node: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    """The IPv4 podCIDRs of a Node (spec.podCIDRs, else spec.podCIDR)."""
    spec = node.get("spec") or {}
    return [net for cidr in spec.get("podCIDRs") or [spec.get("podCIDR")]
            if isinstance(cidr, str) and (net := _ipv4_network(cidr)) is not None]


@functools.lru_cache(maxsize=4096)  # the proxy asks for every endpoint of every sync: a few nodes' blocks
def _ipv4_network(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def tunnel_via(address: str, node_name: str | None, me: str, node: dict[str, Any] | None,
               is_local: Callable[[str], bool]) -> Via | None:
    """The agent to tunnel through to reach `address` (an endpoint on `node_name`, whose
    Node is `node`), or None to dial it from here."""
    if not node_name or node_name == me or node is None:
        return None
    where = agent_address(node)
    if where is None or is_local(where[0]):  # first: nodes of this machine need no more look
        return None
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    return where if any(ip in net for net in pod_cidrs(node)) else None


def is_local_address(host: str) -> bool:
    """Whether `host` is an address of this machine: loopback, or one a socket can bind
    (no packet is sent). A host name is taken as another machine's."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, 0))
        except OSError:  # EADDRNOTAVAIL: not ours (a tunnel to a local agent would work too, only slower)
            return False
    return True
