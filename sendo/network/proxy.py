"""The service proxy: every agent's kube-proxy, in user space, on loopback addresses.

Cluster IPs come from 127.32.0.0/16 and pod IPs from 127.64.0.0/10: every 127.x
address is local on Linux, so the proxy can *listen* on a Service's virtual IP with
no root and no iptables. It watches Services and EndpointSlices through the API and
keeps one listener per address a Service is reachable at:

* ``clusterIP:port`` for every Service port (TCP and/or UDP, per ``protocol``);
* ``<node address>:nodePort`` for ``NodePort`` and ``LoadBalancer`` Services;
* ``<node address>:port`` for ``LoadBalancer`` Services without a
  ``loadBalancerClass`` — the k3s ServiceLB idea: the node itself is the load
  balancer. Once this proxy holds that listener it adds the node's address to
  ``status.loadBalancer.ingress`` (an update of ``services/<name>/status``, with
  optimistic concurrency); when the Service stops being such a LoadBalancer the
  proxy takes its address out again.

**Balancing.** Each new TCP connection (each new UDP flow) goes to one *ready*
endpoint, **round robin** over the endpoints sorted by address. With
``sessionAffinity: ClientIP`` a client IP sticks to the endpoint it got for
``sessionAffinityConfig.clientIP.timeoutSeconds`` (default 10800 s) after its last
new connection, as long as that endpoint stays ready. When a Service port has no
ready endpoint, endpoints that are still serving while terminating are used (as
kube-proxy does); when it has none at all, new TCP connections are refused (accepted
and reset at once) and UDP datagrams are dropped. If connecting to the chosen
endpoint fails, up to two others are tried. ``internalTrafficPolicy: Local``
(cluster IP) and ``externalTrafficPolicy: Local`` (node port, load balancer) keep to
the endpoints on this node.

TCP is spliced with asyncio streams: two copy loops, each awaiting ``drain()`` after
every write (back-pressure both ways) and passing a half-close on. UDP uses datagram
endpoints: a flow per client address, with its own socket to the endpoint it picked,
closed after ``udp_idle_timeout`` without traffic, when its endpoint leaves the
Service, or when the endpoint answers with ICMP port unreachable.

**Process pods of other machines.** Their pod IPs are loopback addresses of their own
machine (their node's podCIDR): a TCP connection to such an endpoint goes through the
agent of its node, a WebSocket tunnel with the node token (``endpointroute.py`` decides,
``tunnel.py`` relays with the same back-pressure and half-close). UDP is not tunnelled:
a UDP Service port keeps to the endpoints this node can reach.

Endpoint changes apply to new connections as soon as the informer sees them
(milliseconds); established connections are never cut by one. A Service port that
goes away closes its listeners (connections already made run on).

A listener that cannot bind — address in use (say, another sendo on this machine
holds it), a port below 1024 without root, an address that is not local — is
logged and recorded as a ``ListenFailed`` Warning Event on the Service; the proxy
keeps running and tries again every ``BIND_RETRY`` seconds. Two Services wanting
the same address (e.g. two LoadBalancers on one port) get it first come, first
served; the other gets a ``ListenFailed`` Event.

Limits: the endpoint sees the proxy's address (127.0.0.1), not the client's, as with
kube-proxy's old userspace mode; IPv4 only; SCTP is not proxied; ``externalIPs``
are not bound.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from ..kinds.discovery import SERVICE_NAME_LABEL
from ..client import Client, kind
from ..client.events import EventRecorder
from ..client.factory import InformerFactory
from ..client.informer import obj_key
from ..tasks import stop_tasks
from ..wire import agent_address
from .endpointroute import Via, is_local_address, tunnel_via
from .lbstatus import LoadBalancerStatus
from .mirror import ServiceMirror
from .resync import resync_loop
from .tunnel import TunnelPeer, TunnelRefused, open_tunnel

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Endpoint = tuple[str, int]

DEFAULT_AFFINITY_SECONDS = 10800
CONNECT_TIMEOUT = 3.0
TUNNEL_TIMEOUT = 10.0  # the pod tunnel: a WebSocket upgrade to another node's agent, then its dial
CONNECT_ATTEMPTS = 3
BIND_RETRY = 10.0
HOUSEKEEPING_EVERY = 5.0
UDP_IDLE_TIMEOUT = 30.0
MAX_UDP_FLOWS = 10_000  # per listener
MAX_UDP_PENDING = 64  # datagrams held per flow while its socket opens


class ListenKey(NamedTuple):
    protocol: str  # TCP | UDP
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


class Backends:
    """The endpoints of one Service port (as seen from one side: cluster IP or node) and how to pick one."""

    def __init__(self, name: str):
        self.name = name
        self.endpoints: list[Endpoint] = []
        self._set: set[Endpoint] = set()
        self._next = 0
        self.affinity_seconds: float | None = None
        self._affinity: dict[str, tuple[Endpoint, float]] = {}  # client IP -> (endpoint, expiry)
        self.active: dict[Endpoint, int] = {}  # open TCP connections per endpoint
        self.via: dict[Endpoint, Via] = {}  # endpoints reached through another node's agent (TCP)

    def set(self, endpoints: list[Endpoint], affinity_seconds: float | None,
            via: dict[Endpoint, Via] | None = None) -> None:
        self.via = via or {}
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self._set = set(endpoints)
            self._next = self._next % len(endpoints) if endpoints else 0
        if affinity_seconds != self.affinity_seconds:
            self.affinity_seconds = affinity_seconds
            self._affinity.clear()

    def pick(self, client_ip: str | None, exclude: set[Endpoint] | frozenset = frozenset()) -> Endpoint | None:
        now = time.monotonic()
        if self.affinity_seconds and client_ip:
            hit = self._affinity.get(client_ip)
            if hit is not None and hit[1] > now and hit[0] in self._set and hit[0] not in exclude:
                self._affinity[client_ip] = (hit[0], now + self.affinity_seconds)
                return hit[0]
        n = len(self.endpoints)
        for i in range(n):
            idx = (self._next + i) % n
            ep = self.endpoints[idx]
            if ep in exclude:
                continue
            self._next = (idx + 1) % n
            if self.affinity_seconds and client_ip:
                self._affinity[client_ip] = (ep, now + self.affinity_seconds)
            return ep
        return None

    def forget(self, client_ip: str | None, ep: Endpoint) -> None:
        hit = self._affinity.get(client_ip or "")
        if hit is not None and hit[0] == ep:
            del self._affinity[client_ip]

    def has(self, ep: Endpoint) -> bool:
        return ep in self._set

    def sweep(self, now: float) -> None:
        for ip in [ip for ip, (_, exp) in self._affinity.items() if exp <= now]:
            del self._affinity[ip]


@dataclass
class _Listener:
    key: ListenKey
    service: str  # ns/name
    backends: Backends
    server: asyncio.AbstractServer | None = None  # TCP
    udp: "_UdpFrontend | None" = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()  # the listening socket closes now; connections already made run on
        if self.udp is not None:
            self.udp.close()


class _Wanted(NamedTuple):
    endpoints: list[Endpoint]
    via: dict[Endpoint, Via]
    affinity_seconds: float | None


class _Desired(NamedTuple):
    service: str
    backends: str  # key into ServiceProxy.backends


class ServiceProxy:
    def __init__(self, client: Client, node_name: str, node_ip: str = "127.0.0.1", *,
                 udp_idle_timeout: float = UDP_IDLE_TIMEOUT, recorder: EventRecorder | None = None,
                 informers: InformerFactory | None = None, mirror: ServiceMirror | None = None):
        self.client = client
        self.node_name = node_name
        self.mirror = mirror  # twins of the ClusterIPs for container pods (mirror.py), once enabled
        self.node_ip = node_ip
        self.udp_idle_timeout = udp_idle_timeout
        self.recorder = recorder or EventRecorder(client, "service-proxy", node_name)
        self._own_recorder = recorder is None
        self.svc_kind = kind("services")
        self._own_informers = informers is None  # else the agent's, shared with DNS and ingress
        self.informers = informers or InformerFactory(client)
        self.services = self.informers.get(self.svc_kind)
        self.slices = self.informers.get(kind("endpointslices", "discovery.k8s.io"))
        self.services.add_handler(lambda t, o, old: self._dirty.set())
        self.slices.add_handler(self._on_slice)
        # where other nodes' agents are and their podCIDRs: the endpoints reached through them
        self.nodes = self.informers.get(kind("nodes"))
        self.nodes.add_handler(self._on_node)
        self._local_hosts: dict[str, bool] = {}  # host -> an address of this machine (one check per sync)
        self._session: aiohttp.ClientSession | None = None  # pod tunnels, opened with the first
        self.refused_told: set[Via] = set()  # agents that refused a tunnel (logged once)
        self._slices_by_svc: dict[str, dict[str, Obj]] = {}
        self.listeners: dict[ListenKey, _Listener] = {}
        self.backends: dict[str, Backends] = {}
        self._failed: dict[ListenKey, tuple[float, str, str]] = {}  # key -> (when, service, error)
        self._conflicts_told: set[tuple[ListenKey, str]] = set()
        self._dirty = asyncio.Event()
        self.lb_status = LoadBalancerStatus(client, self.svc_kind, node_ip, self._dirty.set)
        self.lb_ip = self.lb_status.ip
        self._conns: set[_ClientSide] = set()  # open client connections
        # for /metrics: (service, protocol, result) -> new connections or UDP flows, where result
        # is "forwarded" or "no_endpoint"; and when sync() last made listeners match the caches
        self.counts: dict[tuple[str, str, str], int] = {}
        self.last_sync = 0.0
        self._tasks: list[asyncio.Task] = []
        self._unsupported_told: set[tuple[str, str]] = set()
        if mirror is not None:
            mirror.on_change(self._dirty.set)

    # ----------------------------------------------------------------- lifecycle
    async def start(self, timeout: float = 30.0) -> None:
        await self.informers.start(self.services, self.slices, self.nodes, timeout=timeout)
        # a shared informer may have listed before our handler was added (the agent's DNS
        # starts it first): take what its cache already holds
        for es in self.slices.list():
            self._on_slice("ADDED", es, None)
        await self.sync()
        self._tasks = [asyncio.create_task(self._sync_loop(), name="proxy-sync"),
                       asyncio.create_task(self._housekeeping(), name="proxy-housekeeping")]

    async def stop(self) -> None:
        await stop_tasks(self._tasks, "proxy task")
        await self.lb_status.close()
        for lst in self.listeners.values():
            lst.close()
        self.listeners.clear()
        for conn in list(self._conns):
            conn.abort()
        if self._session is not None:
            await self._session.close()
        if self._own_informers:
            await self.informers.stop()
        if self._own_recorder:
            await self.recorder.close()

    async def _sync_loop(self) -> None:
        await resync_loop(self._dirty, self.sync, "service proxy", lambda: BIND_RETRY if self._failed else None)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY)  # affinity and UDP flow expiry period
            now = time.monotonic()
            for b in self.backends.values():
                b.sweep(now)
            for lst in self.listeners.values():
                if lst.udp is not None:
                    lst.udp.expire(now - self.udp_idle_timeout)

    def _on_slice(self, typ: str, es: Obj, old: Obj | None) -> None:
        for o in (old, es):
            svc = (o["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) if o else None
            if svc:
                bucket = self._slices_by_svc.get(f"{o['metadata']['namespace']}/{svc}")
                if bucket is not None:
                    bucket.pop(o["metadata"]["name"], None)
        svc = (es["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if typ != "DELETED" and svc:
            self._slices_by_svc.setdefault(f"{es['metadata']['namespace']}/{svc}", {})[es["metadata"]["name"]] = es
        self._dirty.set()

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        """A node's podCIDR or agent address changes where its endpoints are reached (not its heartbeats)."""
        if typ != "MODIFIED" or old is None or _route_facts(node) != _route_facts(old):
            self._dirty.set()

    def tunnel_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    # ----------------------------------------------------------------- desired state
    def _endpoints_of(self, svc_key: str, port_name: str, protocol: str,
                      local_only: bool) -> tuple[list[Endpoint], dict[Endpoint, Via]]:
        """The endpoints to balance over, and those of them reached through another node's
        agent (process pods of other machines, endpointroute.py): TCP only; UDP keeps to
        the endpoints it can reach from here."""
        ready: set[Endpoint] = set()
        fallback: set[Endpoint] = set()  # serving while terminating
        via: dict[Endpoint, Via] = {}
        for es in (self._slices_by_svc.get(svc_key) or {}).values():
            if es.get("addressType", "IPv4") != "IPv4":
                continue
            number = None
            for p in es.get("ports") or []:
                if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                    number = p.get("port")
            if not isinstance(number, int):
                continue
            for ep in es.get("endpoints") or []:
                addrs = ep.get("addresses") or []
                if not addrs:
                    continue
                if local_only and ep.get("nodeName") != self.node_name:
                    continue
                node_name = ep.get("nodeName")
                agent = self._tunnel_via(addrs[0], node_name) if node_name and node_name != self.node_name else None
                if agent is not None:
                    if protocol != "TCP":
                        continue
                    via[(addrs[0], number)] = agent
                cond = ep.get("conditions") or {}
                is_ready = cond.get("ready") is not False
                serving = cond.get("serving", cond.get("ready")) is not False
                if is_ready:
                    ready.add((addrs[0], number))
                elif serving and cond.get("terminating"):
                    fallback.add((addrs[0], number))
        chosen = sorted(ready or fallback, key=_ep_order)
        return chosen, {ep: via[ep] for ep in chosen if ep in via}

    def _tunnel_via(self, address: str, node_name: str) -> Via | None:
        """The agent that reaches `address` of node `node_name`, when this host cannot."""
        return tunnel_via(address, node_name, self.node_name, self.nodes.get(node_name), self._is_local)

    def _is_local(self, host: str) -> bool:
        hit = self._local_hosts.get(host)
        if hit is None:
            hit = self._local_hosts[host] = is_local_address(host)
        return hit

    def _desired(self) -> tuple[dict[ListenKey, _Desired], dict[str, _Wanted], list[tuple[Obj, ListenKey, str]]]:
        listeners: dict[ListenKey, _Desired] = {}
        backends: dict[str, _Wanted] = {}
        self._local_hosts = {}  # agents' addresses that are this host's, asked once per sync
        conflicts: list[tuple[Obj, ListenKey, str]] = []
        services = sorted(self.services.list(),
                          key=lambda s: (s["metadata"].get("creationTimestamp") or "", obj_key(s)))
        for svc in services:
            spec = svc.get("spec") or {}
            stype = spec.get("type") or "ClusterIP"
            if stype == "ExternalName":
                continue
            key = obj_key(svc)
            ips = []
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                try:
                    if ip and ip != "None" and ipaddress.ip_address(ip).version == 4:
                        ips.append(ip)
                except ValueError:
                    pass
            affinity = None
            if spec.get("sessionAffinity") == "ClientIP":
                cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                affinity = float(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
            external = stype in ("NodePort", "LoadBalancer")
            for port in spec.get("ports") or []:
                proto = port.get("protocol") or "TCP"
                number = port.get("port")
                if proto not in ("TCP", "UDP"):
                    if (key, proto) not in self._unsupported_told:
                        self._unsupported_told.add((key, proto))
                        log.warning("service %s: protocol %s is not proxied", key, proto)
                    continue
                pname = port.get("name") or ""

                def want(lk: ListenKey, bkey: str) -> None:
                    held = listeners.get(lk)
                    if held is not None and held.service != key:
                        conflicts.append((svc, lk, held.service))
                    elif held is None:
                        listeners[lk] = _Desired(key, bkey)

                if ips and isinstance(number, int):
                    bkey = f"{key}:{pname}/{proto}:cluster"
                    backends[bkey] = _Wanted(*self._endpoints_of(key, pname, proto,
                                                                 spec.get("internalTrafficPolicy") == "Local"),
                                             affinity)
                    for ip in ips:  # and its twin, for pods in their own network namespace (mirror.py)
                        for addr in [ip, *(self.mirror.twins(ip) if self.mirror else [])]:
                            want(ListenKey(proto, addr, number), bkey)
                if external:
                    bkey = f"{key}:{pname}/{proto}:external"
                    backends[bkey] = _Wanted(*self._endpoints_of(key, pname, proto,
                                                                 spec.get("externalTrafficPolicy") == "Local"),
                                             affinity)
                    if isinstance(port.get("nodePort"), int) and port["nodePort"]:
                        want(ListenKey(proto, self.node_ip, port["nodePort"]), bkey)
                    if stype == "LoadBalancer" and not spec.get("loadBalancerClass") and isinstance(number, int):
                        want(ListenKey(proto, self.node_ip, number), bkey)
        return listeners, backends, conflicts

    # ----------------------------------------------------------------- sync
    async def sync(self) -> None:
        """Make the listeners and backends match the Services and EndpointSlices in the caches."""
        want, backends, conflicts = self._desired()
        for bkey, (eps, via, affinity) in backends.items():
            b = self.backends.get(bkey)
            if b is None:
                b = self.backends[bkey] = Backends(bkey)
            b.set(eps, affinity, via)
        for lk in [lk for lk in self.listeners if lk not in want]:
            log.info("service proxy: closing %s (%s)", lk, self.listeners[lk].service)
            self.listeners.pop(lk).close()
        for lk in [lk for lk in self._failed if lk not in want]:
            del self._failed[lk]
        now = time.monotonic()
        for lk, d in want.items():
            b = self.backends[d.backends]
            lst = self.listeners.get(lk)
            if lst is not None:
                lst.service, lst.backends = d.service, b
                if lst.udp is not None:
                    lst.udp.drop_flows_not_in(b)
                continue
            failed = self._failed.get(lk)
            if failed is not None and failed[1] == d.service and now - failed[0] < BIND_RETRY:
                continue
            await self._bind(lk, d.service, b, told=failed is not None and failed[1] == d.service)
        for bkey in [k for k in self.backends if k not in backends]:
            del self.backends[bkey]
        for svc, lk, holder in conflicts:
            if (lk, obj_key(svc)) not in self._conflicts_told:
                self._conflicts_told.add((lk, obj_key(svc)))
                msg = f"cannot listen on {lk}: service {holder} uses it already"
                log.warning("service proxy: %s: %s", obj_key(svc), msg)
                self.recorder.emit(svc, "Warning", "ListenFailed", msg)
        self._update_lb_status()
        self.last_sync = time.time()

    def count(self, lst: "_Listener", result: str) -> None:
        key = (lst.service, lst.key.protocol, result)
        self.counts[key] = self.counts.get(key, 0) + 1

    async def _bind(self, lk: ListenKey, service: str, b: Backends, told: bool) -> None:
        lst = _Listener(lk, service, b)
        try:
            if lk.protocol == "TCP":
                loop = asyncio.get_running_loop()
                lst.server = await loop.create_server(lambda: _ClientSide(self, lst), lk.ip, lk.port,
                                                      reuse_address=True, backlog=1024)
            else:
                loop = asyncio.get_running_loop()
                _, lst.udp = await loop.create_datagram_endpoint(lambda: _UdpFrontend(self, lst),
                                                                 local_addr=(lk.ip, lk.port))
        except OSError as e:
            why = _bind_error(e, lk)
            self._failed[lk] = (time.monotonic(), service, why)
            if told:
                log.debug("service proxy: still cannot listen on %s for %s: %s", lk, service, why)
                return
            log.warning("service proxy: cannot listen on %s for service %s: %s", lk, service, why)
            svc = self.services.get(service)
            if svc is not None:
                self.recorder.emit(svc, "Warning", "ListenFailed", f"cannot listen on {lk}: {why}")
            return
        self._failed.pop(lk, None)
        self.listeners[lk] = lst
        log.info("service proxy: listening on %s for %s", lk, service)

    # ----------------------------------------------------------------- LoadBalancer status
    def _update_lb_status(self) -> None:
        """LoadBalancer Services get this node's address while the proxy serves their ports."""
        def ours(svc: Obj) -> bool:
            spec = svc.get("spec") or {}
            return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")

        def serving(svc: Obj) -> bool:
            key, spec = obj_key(svc), svc.get("spec") or {}
            return ours(svc) and any(lk.ip == self.node_ip and lk.port == p.get("port")
                                     and lk.protocol == (p.get("protocol") or "TCP") and lst.service == key
                                     for p in spec.get("ports") or [] for lk, lst in self.listeners.items())
        self.lb_status.sync(self.services.list(), add=serving, remove=lambda svc: not ours(svc))

# ======================================================================= TCP
# Each connection is a pair of protocols that hand bytes to each other in data_received:
# no coroutine per chunk, and back-pressure passes across (a peer that cannot keep up
# pauses reading on this side).


class _ClientSide(asyncio.Protocol):
    """An accepted connection: pick an endpoint (retrying others), connect, then relay."""

    def __init__(self, proxy: "ServiceProxy", lst: "_Listener"):
        self.proxy, self.listener = proxy, lst
        self.transport: asyncio.Transport | None = None
        self.peer: _UpstreamSide | TunnelPeer | None = None
        self.endpoint: Endpoint | None = None
        self.early: list[bytes] = []  # bytes that arrived before the upstream connected
        self.eof = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()  # nothing to send it to until the upstream is connected
        self.proxy._conns.add(self)
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        peer = self.transport.get_extra_info("peername")
        client_ip = peer[0] if peer else None
        b = self.listener.backends
        tried: set[Endpoint] = set()
        loop = asyncio.get_running_loop()
        for _ in range(CONNECT_ATTEMPTS):
            ep = b.pick(client_ip, tried)
            if ep is None or self.closed:
                break
            via = b.via.get(ep)
            upstream: _UpstreamSide | TunnelPeer
            try:
                if via is None:
                    _, upstream = await asyncio.wait_for(
                        loop.create_connection(lambda: _UpstreamSide(self), ep[0], ep[1]), CONNECT_TIMEOUT)
                else:  # a process pod of another machine: through its node's agent (tunnel.py)
                    upstream = await asyncio.wait_for(open_tunnel(self.proxy.tunnel_session(), via,
                                                                  self.proxy.client.token, ep[0], ep[1], self),
                                                      TUNNEL_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                refused = isinstance(e, TunnelRefused) and via not in self.proxy.refused_told
                if refused:  # a token or podCIDR that does not match: said once per agent
                    self.proxy.refused_told.add(via)
                (log.warning if refused else log.debug)(
                    "service proxy: %s -> %s:%s failed: %s", self.listener.key, ep[0], ep[1], e)
                tried.add(ep)
                b.forget(client_ip, ep)
                continue
            if self.closed:  # the client went away while we connected
                upstream.close()
                return
            self.peer, self.endpoint = upstream, ep
            b.active[ep] = b.active.get(ep, 0) + 1
            for data in self.early:
                upstream.write(data)
            self.early = []
            if self.eof:
                upstream.half_close()
            self.transport.resume_reading()
            self.proxy.count(self.listener, "forwarded")
            return
        self.proxy.count(self.listener, "no_endpoint")
        self.abort(reset=True)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:  # a loop may deliver what was already read before pausing
            self.early.append(data)
        else:
            self.peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None:
            self.peer.half_close()
        return True  # keep our write side open for the upstream's answer

    def half_close(self) -> None:
        """The upstream finished sending: pass the half-close on, or close when both are done."""
        if self.eof or not self.transport.can_write_eof():
            self.transport.close()
        else:
            self.transport.write_eof()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.proxy._conns.discard(self)
        if self.endpoint is not None:
            b = self.listener.backends
            left = b.active.get(self.endpoint, 1) - 1
            if left > 0:
                b.active[self.endpoint] = left
            else:
                b.active.pop(self.endpoint, None)
            self.endpoint = None
        if self.peer is not None:
            self.peer.close(abort=exc is not None)

    def abort(self, reset: bool = False) -> None:
        """Close now; with reset, a RST so the client sees 'connection reset' at once."""
        if reset:
            sock = self.transport.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()


class _UpstreamSide(asyncio.Protocol):
    """The connection to the chosen endpoint, relaying back to the client."""

    def __init__(self, client: _ClientSide):
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.client.half_close()
        return True

    def half_close(self) -> None:
        if self.eof or not self.transport.can_write_eof():
            self.transport.close()
        else:
            self.transport.write_eof()

    # what the client side calls (TunnelPeer has the same)
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def close(self, abort: bool = False) -> None:
        (self.transport.abort if abort else self.transport.close)()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        if not self.client.closed:
            (self.client.transport.abort if exc else self.client.transport.close)()


# ======================================================================= UDP


class _UdpFrontend(asyncio.DatagramProtocol):
    """The listening socket of a UDP Service port: one flow per client address."""

    def __init__(self, proxy: ServiceProxy, lst: _Listener):
        self.proxy = proxy
        self.listener = lst
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple, _UdpFlow] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            if len(self.flows) >= MAX_UDP_FLOWS:
                return
            ep = self.listener.backends.pick(addr[0])
            if ep is None:
                self.proxy.count(self.listener, "no_endpoint")
                return  # no endpoints: dropped
            flow = self.flows[addr] = _UdpFlow(self, addr, ep)
            self.proxy.count(self.listener, "forwarded")
        flow.send(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("service proxy: %s: %s", self.listener.key, exc)

    def drop_flows_not_in(self, b: Backends) -> None:
        for flow in [f for f in self.flows.values() if not b.has(f.endpoint)]:
            flow.close()

    def expire(self, idle_before: float) -> None:
        for flow in [f for f in self.flows.values() if f.last < idle_before]:
            flow.close()

    def close(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport is not None:
            self.transport.close()


class _UdpFlow(asyncio.DatagramProtocol):
    """One client address's datagrams to one endpoint, and the replies back."""

    def __init__(self, front: _UdpFrontend, client: tuple, endpoint: Endpoint):
        self.front = front
        self.client = client
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.closed = False
        self.last = time.monotonic()
        self._opening = asyncio.create_task(self._open(), name=f"udp-flow-{endpoint[0]}:{endpoint[1]}")

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=self.endpoint)
        except OSError as e:
            log.debug("service proxy: udp flow to %s: %s", self.endpoint, e)
            self.close()

    def connection_made(self, transport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport
        for d in self.pending:
            transport.sendto(d)
        self.pending = []

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is not None:
            self.transport.sendto(data)
        elif len(self.pending) < MAX_UDP_PENDING:
            self.pending.append(data)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.last = time.monotonic()
        t = self.front.transport
        if t is not None and not t.is_closing():
            t.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the endpoint is gone; the client's next datagram picks again
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.front.flows.get(self.client) is self:
            del self.front.flows[self.client]


# ======================================================================= helpers


def _ep_order(ep: Endpoint) -> tuple:
    try:
        return (int(ipaddress.ip_address(ep[0])), ep[1])
    except ValueError:
        return (0, ep[1])


def _route_facts(node: Obj) -> tuple:
    return ((node.get("spec") or {}).get("podCIDR"), (node.get("spec") or {}).get("podCIDRs"),
            agent_address(node))


def _bind_error(e: OSError, lk: ListenKey) -> str:
    if e.errno == errno.EADDRINUSE:
        return "address already in use (another process or another sendo on this machine holds it)"
    if e.errno == errno.EACCES and lk.port < 1024:
        return "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE"
    if e.errno == errno.EADDRNOTAVAIL:
        return "the address is not local to this machine"
    return e.strerror or str(e)
