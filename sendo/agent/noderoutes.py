"""Host-gateway routes between nodes: how a container pod on one host reaches a container
pod (or a Service endpoint) on another, with no overlay, for nodes on one L2 segment.

Node IPAM gives every node a /24 of the cluster's container pod CIDR (the Node's
`sendo.dev/container-pod-cidr` annotation); the docker runtime puts the node's pods on a
bridge with that block. This loop watches the Nodes and keeps, in the host's main table,
one route per *other* node:

    <its block> via <its InternalIP> [src <this node's bridge gateway>] proto 211

`src` makes what the host itself sends there (the service proxy, a health check) leave
from an address the remote pods can answer: pods route only the pod CIDR and the service
twins to their node, never the node network. It is added once this node's bridge is up
(the engine brings it up with the node's first container pod); until then this node's
host (its service proxy too) cannot reach other nodes' pods: their answers would have no
way back.

Forwarding: the engine makes the pod bridge *internal*, with forwarding off on it. This
loop turns it on only behind a guard: a rule sends whatever arrives on the bridge to a
table of its own (211) holding the node's block, the other nodes' blocks and an
`unreachable` default, so a pod's packet is forwarded to another node's pods and to
nothing else (the local table, consulted first, still delivers what is for the node).

Safety: before any route, `unreachable` routes cover the whole pod CIDR and the service
twin range (the same guards the runtime installs before its first pod), so an address
of them that no node holds is refused here and never leaves the machine; the per-node
/24s are more specific and win. A node that is gone, or lost its annotation or address,
loses its route (its block falls back to `unreachable`). Nodes whose InternalIP is an
address of this host (agents sharing a machine) need no route: their bridges are local.
Routes are marked with their own protocol number, so a restarted agent finds and
reconciles those it made earlier.

Process-runtime pods keep loopback IPs (spec.podCIDR, 127.x): those never leave their
host, so by pod IP they are reachable from their own node only (Services reach them
through their node's agent: network/tunnel.py).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
from typing import Any

from ..client import Informer, kind
from ..client.factory import InformerFactory
from ..kinds.cluster import CONTAINER_CIDR_ANNOTATION as ANNOTATION  # set by the server's node IPAM
from ..network.resync import resync_loop
from .runtime.docker import DockerRuntime, ensure_unreachable_route
from .runtime.base import SandboxError

log = logging.getLogger(__name__)
PROTO = "211"  # the rtnetlink protocol of sendo's routes (ip route … proto 211)
RETRY_SECONDS = 10.0  # a route the kernel refused (its gateway not on a link yet) is tried again
BRIDGE_WAIT_SECONDS = 1.0  # the pod network is made but its bridge (the `src`) not up yet: look again
FORWARD = "/proc/sys/net/ipv4/ip_forward"

POD_TABLE = "211"  # the routing table of what the pods on this node's bridge send
RULE_PREF = "2110"  # the priority of the rule that sends them there (after the local table's 0)
STOP_PREF = "2111"  # and of the rule that refuses what that table does not route
Route = tuple[str, ...]  # what follows the destination in `ip route replace`: ("via", gw[, "src", addr])


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def block_of(node: dict[str, Any]) -> str | None:
    value = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    return value if isinstance(value, str) and value else None


def internal_ip(node: dict[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if isinstance(a, dict) and a.get("type") == "InternalIP" and a.get("address"):
            return str(a["address"])
    return None


def desired_routes(nodes: list[dict[str, Any]], me: str, pod_cidr: ipaddress.IPv4Network, src: str,
                   is_local: Any) -> dict[str, Route]:
    """block -> ("via", gateway[, "src", src]) for every other node with a block of `pod_cidr` and an IPv4
    InternalIP that is not an address of this host (`is_local(addr)`). A block claimed by two
    nodes (never given out so; a hand-edited annotation) is routed to neither."""
    out: dict[str, Route] = {}
    claimed: dict[str, int] = {}
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        block, addr = block_of(node), internal_ip(node)
        if block is None:
            continue
        try:
            net = ipaddress.ip_network(block)
        except ValueError:
            continue
        claimed[str(net)] = claimed.get(str(net), 0) + 1
        if name == me or addr is None or not net.subnet_of(pod_cidr):  # type: ignore[arg-type]
            continue
        try:
            gw = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if gw.version != 4 or gw.is_loopback or gw.is_unspecified or is_local(addr):
            continue
        out[str(net)] = ("via", addr, *(("src", src) if src else ()))
    return {b: r for b, r in out.items() if claimed[b] == 1}


def _shape(route: dict[str, Any]) -> Route:
    """A route as `ip route` shows it (JSON), in the words `ip route replace` takes after its destination."""
    if route.get("type") == "unreachable":
        return ("unreachable",)
    if route.get("gateway"):
        return ("via", route["gateway"], *(("src", route["prefsrc"]) if route.get("prefsrc") else ()))
    return ("dev", route.get("dev", ""))


def installed_routes(pod_cidr: ipaddress.IPv4Network, table: str = "main") -> dict[str, Route]:
    """The routes of PROTO for blocks of `pod_cidr` (and the default route) in `table`, made
    by this or an earlier agent."""
    r = ip("-4", "-j", "route", "show", "table", table, "proto", PROTO)
    out: dict[str, Route] = {}
    for route in json.loads(r.stdout or "[]") if r.returncode == 0 else []:
        dst = route.get("dst", "")
        if dst == "default":
            out[dst] = _shape(route)
            continue
        try:
            net = ipaddress.ip_network(dst)
        except ValueError:
            continue
        if net.version == 4 and net.subnet_of(pod_cidr):  # type: ignore[arg-type]
            out[str(net)] = _shape(route)
    return out


def is_local_address(addr: str) -> bool:
    """`ip route get`: the kernel delivers `addr` on this host (an address of one of its links)."""
    r = ip("-j", "route", "get", addr)
    try:
        return r.returncode == 0 and json.loads(r.stdout)[0].get("type") == "local"
    except (ValueError, IndexError):
        return False


def apply_routes(want: dict[str, Route], have: dict[str, Route], table: str = "main") -> list[str]:
    """Make the routes of PROTO in `table` be `want`; returns the errors of those the kernel refused."""
    errors = []
    for dst, shape in sorted(want.items()):
        if have.get(dst) == shape:
            continue
        argv = ["unreachable", dst] if shape == ("unreachable",) else [dst, *shape]
        r = ip("route", "replace", *argv, "table", table, "proto", PROTO)
        if r.returncode != 0:
            errors.append(f"{' '.join(argv)}: {r.stderr.strip()}")
    for dst in sorted(set(have) - set(want)):
        ip("route", "del", dst, "table", table, "proto", PROTO)  # the unreachable guard covers the block again
    return errors


def link_of(addr: str) -> str | None:
    """The link that holds the local address `addr` (the pod bridge holds its gateway)."""
    r = ip("-j", "addr", "show", "to", addr)
    try:
        links = json.loads(r.stdout or "[]") if r.returncode == 0 else []
    except ValueError:
        return None
    return links[0].get("ifname") if links else None


def guard_bridge(bridge: str, own_block: str, remote: dict[str, Route], pod_cidr: ipaddress.IPv4Network) -> list[str]:
    """Let the host forward what the pods on `bridge` send to other nodes' pods, and nothing
    else: packets that come in on the bridge are looked up in table POD_TABLE, which holds the
    node's own block, the other nodes' blocks and an unreachable default (the local table,
    consulted first, still delivers what is for the node itself). Only then is forwarding
    turned on for the bridge (the engine makes internal bridges with it off)."""
    want: dict[str, Route] = {"default": ("unreachable",), own_block: ("dev", bridge)}
    want.update({block: route[:2] for block, route in remote.items()})  # no `src`: forwarded, not sent
    errors = apply_routes(want, installed_routes(pod_cidr, POD_TABLE), POD_TABLE)
    # the table, then (should it ever lose its default) refused rather than the main table
    for pref, action in ((RULE_PREF, ("lookup", POD_TABLE)), (STOP_PREF, ("unreachable",))):
        rules = ip("-j", "rule", "show", "pref", pref)
        try:
            present = any(r.get("iif") == bridge for r in json.loads(rules.stdout or "[]"))
        except ValueError:
            present = False
        if not present:
            r = ip("rule", "add", "iif", bridge, *action, "pref", pref)
            if r.returncode != 0:
                return [*errors, f"rule iif {bridge} {' '.join(action)}: {r.stderr.strip()}"]
    if not errors:
        _write(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding", "1")
    return errors


def _write(path: str, value: str) -> None:
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def enable_forwarding() -> None:
    """The host forwards between its pod bridge and its link to the other nodes."""
    _write(FORWARD, "1")


class NodeRoutes:
    """The host-gateway routes of one node (module docstring)."""

    def __init__(self, informers: InformerFactory, node_name: str, runtime: DockerRuntime):
        self.informers, self.node_name, self.runtime = informers, node_name, runtime
        self.nodes: Informer | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._retry: float | None = None  # a route was refused, or the bridge is not up yet: sync again
        self.routes: dict[str, Route] = {}  # what is installed, after the last sync

    async def start(self) -> bool:
        """Guards first, then the watch. False (and no routes) where this host cannot have
        routes (not root): cross-node container traffic is then off, which is logged."""
        try:
            for cidr in (self.runtime.pod_cidr, self.runtime.service_cidr):
                await asyncio.to_thread(ensure_unreachable_route, str(cidr))
        except SandboxError as e:
            log.warning("no host-gateway routes to other nodes' container pods: %s", e)
            return False
        self.nodes = self.informers.get(kind("nodes"))
        self.nodes.add_handler(lambda *_: self._dirty.set())
        await self.informers.start(self.nodes)
        self._dirty.set()
        self._task = asyncio.get_running_loop().create_task(
            resync_loop(self._dirty, self.sync, "node routes", lambda: self._retry),
            name="node-routes")
        return True

    def kick(self) -> None:
        """Something the routes depend on changed (this node's bridge is up: `src` can be set)."""
        self._dirty.set()

    async def sync(self) -> None:
        if self.nodes is None:
            return
        gateway = self.runtime.gateway if self.runtime.network_ready else ""
        nodes = self.nodes.list()

        def work() -> tuple[list[str], bool]:
            # the engine puts the gateway on the bridge with the first pod: until then, no `src`
            src = gateway if gateway and is_local_address(gateway) else ""
            want = desired_routes(nodes, self.node_name, self.runtime.pod_cidr, src, is_local_address)
            if want:
                enable_forwarding()
            errors = apply_routes(want, installed_routes(self.runtime.pod_cidr))
            bridge = link_of(src) if src else None
            if bridge and want:
                errors += guard_bridge(bridge, str(self.runtime.subnet), want, self.runtime.pod_cidr)
            self.routes = installed_routes(self.runtime.pod_cidr)
            return errors, bool(want) and gateway != src
        errors, no_src_yet = await asyncio.to_thread(work)
        self._retry = RETRY_SECONDS if errors else BRIDGE_WAIT_SECONDS if no_src_yet else None
        for e in errors:
            log.warning("host-gateway route not installed (tried again in %.0fs): %s", RETRY_SECONDS, e)

    async def stop(self) -> None:
        """Stop watching; the routes stay, as the pods do, for the next agent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
