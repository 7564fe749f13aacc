"""The service proxy against fake backends: small asyncio TCP and UDP echo servers on
loopback addresses of this test's own (127.64.0.0/10), Services and EndpointSlices
written through a real API server. Every byte goes to 127.x addresses only."""
from __future__ import annotations

import asyncio
import ipaddress
import random
import socket

import pytest

from sendo.client import kind
from sendo.network import proxy as proxymod
from sendo.network.proxy import Backends, ListenKey, ServiceProxy
from sendo.server import free_port
from conftest import wait_until


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request):
    """Every proxy test on both loops: sendo runs on uvloop, which delivers reads differently."""
    if request.param == "uvloop":
        import uvloop
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()

SVCS, SLICES, EVENTS = kind("services"), kind("endpointslices", "discovery.k8s.io"), kind("events")
NS = "default"


def rand_ip(net: str) -> str:
    n = ipaddress.ip_network(net)
    while True:
        ip = n.network_address + random.randrange(2, n.num_addresses - 1)
        if ip.packed[-1] not in (0, 255, 1):
            return str(ip)


def backend_ips(n: int) -> list[str]:
    """n distinct addresses from the top of the pod network, away from the first blocks clusters use."""
    out: set[str] = set()
    while len(out) < n:
        out.add(rand_ip("127.120.0.0/13"))
    return sorted(out)


def local(ip: str) -> str:
    assert ipaddress.ip_address(ip).is_loopback, ip  # network safety: loopback only
    return ip


# ----------------------------------------------------------------------------- fake backends

class TcpEcho:
    """Answers `<name>\\n` on connect, then echoes."""

    def __init__(self, name: str, ip: str, port: int):
        self.name, self.ip, self.port = name, local(ip), port
        self.server: asyncio.AbstractServer | None = None
        self.conns = 0

    async def start(self) -> "TcpEcho":
        self.server = await asyncio.start_server(self._handle, self.ip, self.port)
        return self

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.conns += 1
        try:
            w.write(self.name.encode() + b"\n")
            await w.drain()
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    def close(self) -> None:
        if self.server:
            self.server.close()


class UdpEcho(asyncio.DatagramProtocol):
    """Replies `<name>:<payload>` to every datagram."""

    def __init__(self, name: str, ip: str, port: int):
        self.name, self.ip, self.port = name, local(ip), port
        self.transport = None

    async def start(self) -> "UdpEcho":
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=(self.ip, self.port))
        return self

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(self.name.encode() + b":" + data, addr)

    def close(self) -> None:
        if self.transport:
            self.transport.close()


async def who(ip: str, port: int, source: str | None = None, timeout: float = 2.0) -> str | None:
    """Connect through the proxy and return the backend's name; None when refused or reset."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(
            local(ip), port, local_addr=(local(source), 0) if source else None), timeout)
    except OSError:
        return None
    try:
        line = await asyncio.wait_for(r.readline(), timeout)
        return line.decode().strip() or None
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        w.close()


async def turned_away(ip: str, port: int, patience: float = 10.0) -> bool:
    """True when a new connection is refused, reset or closed; False when it is left hanging."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(local(ip), port), patience)
    except OSError:
        return True
    except asyncio.TimeoutError:
        return False
    try:
        return await asyncio.wait_for(r.read(1), patience) == b""
    except OSError:
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        w.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr) -> None:
        self.replies.put_nowait(data)

    @classmethod
    async def open(cls, ip: str, port: int) -> tuple[asyncio.DatagramTransport, "UdpClient"]:
        return await asyncio.get_running_loop().create_datagram_endpoint(cls, remote_addr=(local(ip), port))

    async def ask(self, t, payload: bytes, timeout: float = 1.0) -> bytes | None:
        t.sendto(payload)
        try:
            return await asyncio.wait_for(self.replies.get(), timeout)
        except asyncio.TimeoutError:
            return None


# ----------------------------------------------------------------------------- API objects

async def make_service(client, name: str, port: int, *, protocol="TCP", cluster_ip=None, **spec) -> dict:
    ports = spec.pop("ports", None) or [{"name": "p", "port": port, "protocol": protocol, "targetPort": "p"}]
    return await client.create(SVCS, {"metadata": {"name": name}, "spec": {
        "clusterIP": cluster_ip or rand_ip("127.32.128.0/17"), "ports": ports, **spec}}, NS)


def slice_body(svc: str, port: int, ips: list[str], ready: bool | list[bool] = True, protocol="TCP",
               port_names=("p",), node="node-1") -> dict:
    readies = ready if isinstance(ready, list) else [ready] * len(ips)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-abcde", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": n, "port": port, "protocol": protocol} for n in port_names],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": r}, "nodeName": node}
                          for ip, r in zip(ips, readies)]}


async def set_endpoints(client, svc: str, port: int, ips: list[str], **kw) -> None:
    body = slice_body(svc, port, ips, **kw)
    cur = await client.get_or_none(SLICES, NS, body["metadata"]["name"])
    if cur is None:
        await client.create(SLICES, body, NS)
    else:
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        await client.update(SLICES, {**body, "metadata": {**body["metadata"], "namespace": NS}})


@pytest.fixture
def node_ip():
    return rand_ip("127.112.0.0/13")


@pytest.fixture
async def proxy(client, node_ip):
    p = ServiceProxy(client, "node-1", node_ip)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def backends():
    made: list = []

    async def make(n: int, udp: bool = False):
        port = free_port("0.0.0.0")
        ips = backend_ips(n)
        cls = UdpEcho if udp else TcpEcho
        servers = [await cls(f"b{i}", ip, port).start() for i, ip in enumerate(ips)]
        made.extend(servers)
        return port, servers
    yield make
    for s in made:
        s.close()


def listening(proxy: ServiceProxy, ip: str, port: int, protocol: str = "TCP"):
    return lambda: ListenKey(protocol, ip, port) in proxy.listeners


# ----------------------------------------------------------------------------- tests

async def test_round_robin_spreads_over_ready_backends(client, proxy, backends):
    bport, servers = await backends(4)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "rr", sport)
    cip = svc["spec"]["clusterIP"]
    # the fourth backend is not ready: never chosen
    await set_endpoints(client, "rr", bport, [s.ip for s in servers], ready=[True, True, True, False])
    await wait_until(listening(proxy, cip, sport), what="cluster IP listener")
    await wait_until(lambda: len(proxy.backends["default/rr:p/TCP:cluster"].endpoints) == 3, what="3 endpoints")
    seen = [await who(cip, sport) for _ in range(30)]
    counts = {n: seen.count(n) for n in set(seen)}
    assert counts == {"b0": 10, "b1": 10, "b2": 10}, counts


async def test_client_ip_affinity_sticks(client, proxy, backends):
    bport, servers = await backends(3)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "sticky", sport, sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "sticky", bport, [s.ip for s in servers])
    await wait_until(listening(proxy, cip, sport), what="listener")
    await wait_until(lambda: len(proxy.backends["default/sticky:p/TCP:cluster"].endpoints) == 3, what="endpoints")
    sources = backend_ips(6)  # client source addresses of their own
    got = {}
    for src in sources:
        names = {await who(cip, sport, source=src) for _ in range(4)}
        assert len(names) == 1 and None not in names, (src, names)
        got[src] = names.pop()
    assert len(set(got.values())) == 3, got  # different clients still spread
    # the endpoint a client sticks to goes away: it moves, and sticks to the new one
    src = sources[0]
    left = [s.ip for s in servers if s.name != got[src]]
    await set_endpoints(client, "sticky", bport, left)
    await wait_until(lambda: len(proxy.backends["default/sticky:p/TCP:cluster"].endpoints) == 2, what="2 left")
    names = {await who(cip, sport, source=src) for _ in range(4)}
    assert len(names) == 1 and names != {got[src]}, names


def test_affinity_expires(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(proxymod.time, "monotonic", lambda: now[0])
    b = Backends("x")
    b.set([("127.120.0.2", 80), ("127.120.0.3", 80)], affinity_seconds=10)
    first = b.pick("127.0.0.1")
    now[0] += 9
    assert b.pick("127.0.0.1") == first  # used again within the timeout: the timer starts over
    now[0] += 9
    assert b.pick("127.0.0.1") == first
    now[0] += 11  # idle past the timeout: round robin again, which is at the other endpoint now
    second = b.pick("127.0.0.1")
    assert second != first
    now[0] += 5
    assert b.pick("127.0.0.1") == second
    assert b.pick("127.0.0.5") == first  # another client: round robin
    b.sweep(now[0] + 100)
    assert not b._affinity
    b.set(b.endpoints, None)  # affinity off: plain round robin
    assert [b.pick("127.0.0.1") for _ in range(4)].count(first) == 2


async def test_endpoint_change_applies_within_a_second_and_keeps_connections(client, proxy, backends):
    bport, (a, b) = await backends(2)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "move", sport)
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "move", bport, [a.ip])
    await wait_until(listening(proxy, cip, sport), what="listener")
    await wait_until(lambda: proxy.backends["default/move:p/TCP:cluster"].endpoints, what="endpoints")
    # an established connection to a
    r, w = await asyncio.open_connection(cip, sport)
    assert (await asyncio.wait_for(r.readline(), 2)).strip() == b"b0"
    await set_endpoints(client, "move", bport, [b.ip])

    async def moved():
        return await who(cip, sport) == "b1"
    await wait_until(moved, timeout=10, interval=0.02, what="new connections go to b")
    assert {await who(cip, sport) for _ in range(5)} == {"b1"}
    # the old connection still works, to a
    w.write(b"still there\n")
    await w.drain()
    assert await asyncio.wait_for(r.readline(), 2) == b"still there\n"
    w.close()


async def applied_slices_so_far(client, proxy, bport: int, ip: str) -> None:
    """Wait until the proxy has applied every EndpointSlice written before this call.

    A fence: one more slice, for a Service of its own, with a ready endpoint. The proxy's
    watch delivers slices in revision order and each sync reads its whole cache, so once
    the fence's endpoint is in the proxy's backends, every earlier write is applied too.
    """
    await make_service(client, "fence", free_port("0.0.0.0"))  # once per test: a second one fails loudly
    await set_endpoints(client, "fence", bport, [ip])
    await wait_until(lambda: proxy.backends.get("default/fence:p/TCP:cluster", Backends("")).endpoints,
                     what="the proxy to apply the fence slice")


async def test_no_endpoints_refuses_new_connections(client, proxy, backends):
    bport, (a,) = await backends(1)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "empty", sport)
    cip = svc["spec"]["clusterIP"]
    await wait_until(listening(proxy, cip, sport), what="listener")
    assert await turned_away(cip, sport)  # no slice at all: closed at once, not left hanging
    await set_endpoints(client, "empty", bport, [a.ip], ready=False)  # only a not-ready one
    await applied_slices_so_far(client, proxy, bport, a.ip)
    assert proxy.backends["default/empty:p/TCP:cluster"].endpoints == []
    assert await who(cip, sport) is None
    await set_endpoints(client, "empty", bport, [a.ip], ready=True)

    async def works():
        return await who(cip, sport) == "b0"
    await wait_until(works, timeout=5, what="served once an endpoint is ready")
    await set_endpoints(client, "empty", bport, [])

    async def refused():
        return await who(cip, sport) is None
    await wait_until(refused, timeout=5, what="refused once endpoints are gone")
    # what /metrics shows (sendo_proxy_connections_total): each connection counted by result
    counts = {result: n for (service, protocol, result), n in proxy.counts.items() if service == "default/empty"}
    assert counts["forwarded"] >= 1 and counts["no_endpoint"] >= 3, proxy.counts
    assert proxy.last_sync > 0


async def test_dead_endpoint_is_skipped(client, proxy, backends):
    bport, (a, b) = await backends(2)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "half", sport)
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "half", bport, [a.ip, b.ip])
    await wait_until(lambda: len(proxy.backends.get("default/half:p/TCP:cluster", Backends("")).endpoints) == 2,
                     what="endpoints")
    a.close()  # listed as ready but not listening: connections go to b
    assert {await who(cip, sport) for _ in range(6)} == {"b1"}


async def test_large_transfer_with_back_pressure(client, proxy, backends):
    bport, (a,) = await backends(1)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "bulk", sport)
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "bulk", bport, [a.ip])
    await wait_until(lambda: proxy.backends.get("default/bulk:p/TCP:cluster", Backends("")).endpoints,
                     what="endpoints")
    r, w = await asyncio.open_connection(cip, sport)
    assert (await r.readline()).strip() == b"b0"
    payload = random.randbytes(8 * 1024 * 1024)

    async def send():
        for i in range(0, len(payload), 1 << 20):
            w.write(payload[i:i + (1 << 20)])
            await w.drain()
        w.write_eof()
    sender = asyncio.create_task(send())
    got = await asyncio.wait_for(r.read(), 30)  # until the backend closes after our EOF
    await sender
    assert got == payload
    w.close()


async def test_udp_flows(client, node_ip, backends, monkeypatch):
    monkeypatch.setattr(proxymod, "HOUSEKEEPING_EVERY", 0.2)
    p = ServiceProxy(client, "node-1", node_ip, udp_idle_timeout=0.5)
    try:
        await p.start()
        bport, servers = await backends(2, udp=True)
        sport = free_port("0.0.0.0")
        svc = await make_service(client, "dns", sport, protocol="UDP")
        cip = svc["spec"]["clusterIP"]
        await set_endpoints(client, "dns", bport, [s.ip for s in servers], protocol="UDP")
        await wait_until(listening(p, cip, sport, "UDP"), what="udp listener")
        await wait_until(lambda: len(p.backends["default/dns:p/UDP:cluster"].endpoints) == 2, what="endpoints")
        clients = [await UdpClient.open(cip, sport) for _ in range(4)]
        try:
            first = []
            for t, c in clients:
                reply = await c.ask(t, b"hi")
                assert reply is not None and reply.endswith(b":hi"), reply
                first.append(reply.split(b":")[0])
                # one flow per client: the same backend every time
                assert [(await c.ask(t, b"again")).split(b":")[0] for _ in range(3)] == [first[-1]] * 3
            assert set(first) == {b"b0", b"b1"}
            # an endpoint leaves: its flows go, and their next datagrams reach the other
            await set_endpoints(client, "dns", bport, [servers[1].ip], protocol="UDP")
            await wait_until(lambda: len(p.backends["default/dns:p/UDP:cluster"].endpoints) == 1, what="1 left")
            for t, c in clients:
                assert (await c.ask(t, b"x")) == b"b1:x"
            front = p.listeners[ListenKey("UDP", cip, sport)].udp
            assert len(front.flows) == 4
            await wait_until(lambda: not front.flows, timeout=5, what="idle flows expired")
        finally:
            for t, _ in clients:
                t.close()
    finally:
        await p.stop()


async def test_node_port_and_load_balancer(client, proxy, node_ip, backends):
    bport, (a,) = await backends(1)
    sport = free_port("0.0.0.0")
    node_port = random.randrange(30000, 32768)
    svc = await make_service(client, "lb", sport, type="LoadBalancer",
                             ports=[{"name": "p", "port": sport, "targetPort": "p", "nodePort": node_port}])
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "lb", bport, [a.ip])
    for ip, port in ((cip, sport), (node_ip, node_port), (node_ip, sport)):
        await wait_until(listening(proxy, ip, port), what=f"listener {ip}:{port}")

    async def ingress():
        s = await client.get(SVCS, NS, "lb")
        return (s.get("status") or {}).get("loadBalancer", {}).get("ingress")
    await wait_until(ingress, what="load balancer ingress")
    assert await ingress() == [{"ip": node_ip}]
    await wait_until(lambda: proxy.backends.get("default/lb:p/TCP:external", Backends("")).endpoints,
                     what="endpoints")
    for ip, port in ((cip, sport), (node_ip, node_port), (node_ip, sport)):
        assert await who(ip, port) == "b0", (ip, port)
    # back to ClusterIP: node listeners close, the ingress goes
    cur = await client.get(SVCS, NS, "lb")
    cur["spec"]["type"] = "ClusterIP"
    for p in cur["spec"]["ports"]:
        p.pop("nodePort", None)
    cur["spec"].pop("externalTrafficPolicy", None)
    cur["spec"].pop("allocateLoadBalancerNodePorts", None)
    await client.update(SVCS, cur)
    await wait_until(lambda: not listening(proxy, node_ip, node_port)() and not listening(proxy, node_ip, sport)(),
                     what="node listeners closed")

    async def no_ingress():
        return not await ingress()
    await wait_until(no_ingress, what="ingress removed")
    assert await who(node_ip, node_port) is None
    assert await who(cip, sport) == "b0"


async def test_removed_port_closes_its_listener(client, proxy, backends):
    bport, (a,) = await backends(1)
    p1, p2 = free_port("0.0.0.0"), free_port("0.0.0.0")
    svc = await make_service(client, "two", p1, ports=[{"name": "p", "port": p1, "targetPort": "p"},
                                                      {"name": "q", "port": p2, "targetPort": "p"}])
    cip = svc["spec"]["clusterIP"]
    await set_endpoints(client, "two", bport, [a.ip])
    await wait_until(listening(proxy, cip, p2), what="second listener")
    cur = await client.get(SVCS, NS, "two")
    cur["spec"]["ports"] = cur["spec"]["ports"][:1]
    await client.update(SVCS, cur)
    await wait_until(lambda: not listening(proxy, cip, p2)(), what="listener closed")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(cip, p2)  # nothing listens there any more
    await wait_until(lambda: proxy.backends.get("default/two:p/TCP:cluster", Backends("")).endpoints,
                     what="endpoints")
    assert await who(cip, p1) == "b0"
    await client.delete(SVCS, NS, "two")
    await wait_until(lambda: not listening(proxy, cip, p1)(), what="service gone, listener closed")


async def test_bind_failure_is_an_event_not_a_crash(client, node_ip, backends, monkeypatch):
    monkeypatch.setattr(proxymod, "BIND_RETRY", 0.3)
    p = ServiceProxy(client, "node-1", node_ip)
    await p.start()
    blocker = socket.socket()
    try:
        bport, (a,) = await backends(1)
        p1, p2 = free_port("0.0.0.0"), free_port("0.0.0.0")
        cip = rand_ip("127.32.128.0/17")
        blocker.bind((cip, p1))
        blocker.listen()
        await make_service(client, "busy", p1, cluster_ip=cip,
                           ports=[{"name": "p", "port": p1, "targetPort": "p"},
                                  {"name": "q", "port": p2, "targetPort": "p"}])
        await set_endpoints(client, "busy", bport, [a.ip], port_names=("p", "q"))

        async def event():
            evs = (await client.list(EVENTS, NS))["items"]
            return [e for e in evs if e["involvedObject"].get("name") == "busy" and e["reason"] == "ListenFailed"]
        await wait_until(event, what="ListenFailed event")
        ev = (await event())[0]
        assert ev["type"] == "Warning" and f"{cip}:{p1}/TCP" in ev["message"] and "in use" in ev["message"]
        # the other port of the same service works meanwhile
        await wait_until(lambda: p.backends.get("default/busy:q/TCP:cluster", Backends("")).endpoints,
                         what="endpoints")
        assert await who(cip, p2) == "b0"
        # the address is freed: the proxy takes it on its next try
        blocker.close()
        await wait_until(listening(p, cip, p1), timeout=5, what="bound after retry")
        assert await who(cip, p1) == "b0"
    finally:
        blocker.close()
        await p.stop()


async def test_slices_listed_before_the_proxy_started_are_its_backends(client, node_ip, backends):
    """The agent's DNS starts the shared EndpointSlice informer before the proxy exists
    (after a restart every slice is already there): the proxy takes the cache's slices."""
    from sendo.client.factory import InformerFactory
    bport, servers = await backends(1)
    sport = free_port("0.0.0.0")
    svc = await make_service(client, "early", sport)
    await set_endpoints(client, "early", bport, [servers[0].ip])
    informers = InformerFactory(client)
    slices = informers.get(SLICES)
    await informers.start(informers.get(SVCS), slices)
    await wait_until(lambda: slices.list(), what="the slice in the shared cache")
    p = ServiceProxy(client, "node-1", node_ip, informers=informers)
    await p.start()
    try:
        cip = svc["spec"]["clusterIP"]
        await wait_until(listening(p, cip, sport), what="cluster IP listener")
        assert await who(cip, sport) == "b0"
    finally:
        await p.stop()
        await informers.stop()
