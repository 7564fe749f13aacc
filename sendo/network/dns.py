"""Cluster DNS: Services and pods by name, answered from informer caches.

Names (domain cluster.local):
  <svc>.<ns>.svc.cluster.local           A: the ClusterIP; headless: one A per ready endpoint
  <host>.<svc>.<ns>.svc.cluster.local    headless: A of the endpoint with that hostname (a pod's
                                         spec.hostname under spec.subdomain = svc, e.g. StatefulSet pods)
  _<port>._<proto>.<svc>.<ns>.svc...     SRV for each named port (with A records for the targets)
  <a-b-c-d>.<ns>.pod.cluster.local       A: the dashed IP (Kubernetes' "pods insecure" mode)
  <svc>.<ns>, <svc>.<ns>.svc             the same as the full name, for clients without search domains
Anything else under the domain is NXDOMAIN; other names are forwarded to the host's
resolvers (or the upstreams given), so pods can use this server as their only one.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Callable

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SRV, A, DNSRecord

from ..client import Client, kind
from ..client.factory import InformerFactory

log = logging.getLogger(__name__)
Obj = dict[str, Any]
TTL = 5
FORWARD_TIMEOUT = 2.0


def host_resolvers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append((parts[1], 53))
    except OSError:
        pass
    return out


class ClusterDNS:
    def __init__(self, client: Client, host: str = "127.0.0.1", port: int = 53, domain: str = "cluster.local",
                 upstreams: list[tuple[str, int]] | None = None, informers: InformerFactory | None = None,
                 translate: Callable[[str], str | None] | None = None):
        """`translate`: what a ClusterIP is answered as (None: as itself); the DNS that
        container pods ask answers with the ClusterIPs' twins (mirror.py)."""
        self.client = client
        self.translate = translate
        self.host, self.port = host, port
        self.domain = domain.strip(".").lower()
        self.upstreams = [u for u in (host_resolvers() if upstreams is None else upstreams)
                          if u != (host, port)]  # never forward to ourselves
        self._own_informers = informers is None  # else the agent's, shared with the proxy and ingress
        self.informers = informers or InformerFactory(client)
        self.services = self.informers.get(kind("services"))
        self.slices = self.informers.get(kind("endpointslices", "discovery.k8s.io"))
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        # answers by (zone: the cluster domain or "." for forwarded names, rcode), read by the agent's /metrics
        self.responses: dict[tuple[str, str], int] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self.informers.start(self.services, self.slices)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), local_addr=(self.host,
                                                                                                self.port))
        self.port = self._transport.get_extra_info("sockname")[1]
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)

    async def bind_anywhere(self) -> None:
        """Start on the configured address, or on a free port of the same address when that
        one is taken or privileged (another cluster's DNS, or no root for port 53)."""
        try:
            await self.start()
        except OSError as e:
            log.warning("cluster DNS cannot listen on %s (%s); using a free port", self.address, e)
            self.port = 0
            await self.start()

    async def stop(self) -> None:
        if self._transport:
            self._transport.close()
        if self._tcp:
            self._tcp.close()
            await self._tcp.wait_closed()
        if self._own_informers:
            await self.informers.stop()

    # ----------------------------------------------------------------- answering
    async def answer(self, data: bytes) -> bytes | None:
        """The reply to one query, counted by zone and response code."""
        out, zone = await self._answer(data)
        if out is not None and len(out) > 3:
            key = (zone, RCODE.get(out[3] & 0x0F, str(out[3] & 0x0F)))
            self.responses[key] = self.responses.get(key, 0) + 1
        return out

    async def _answer(self, data: bytes) -> tuple[bytes | None, str]:
        """(reply, zone: the cluster domain, or "." for a name forwarded upstream)"""
        zone = self.domain + "."
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None, zone  # not DNS: nothing sensible to answer
        if not q.questions:
            return None, zone
        name = str(q.q.qname).rstrip(".").lower()
        local = self._local_name(name)
        if local is None:
            return await self._forward(q, data), "."
        reply = q.reply()
        reply.header.aa = 1
        try:
            found = self._resolve(local, QTYPE[q.q.qtype], str(q.q.qname), reply)
        except Exception:
            log.exception("DNS lookup of %s failed", name)
            reply.header.rcode = RCODE.SERVFAIL
            return reply.pack(), zone
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply.pack(), zone

    def _local_name(self, name: str) -> list[str] | None:
        """The labels before the cluster domain, or None for a name we forward."""
        suffix = "." + self.domain
        if name.endswith(suffix):
            return name[:-len(suffix)].split(".")
        labels = name.split(".")
        # short forms: <svc>.<ns> and <svc>.<ns>.svc, when that Service exists
        if len(labels) == 3 and labels[2] == "svc":
            labels = labels[:2]
        if len(labels) == 2 and self.services.get(f"{labels[1]}/{labels[0]}") is not None:
            return [labels[0], labels[1], "svc"]
        return None

    def _resolve(self, labels: list[str], qtype: str, qname: str, reply: DNSRecord) -> bool:
        """Fill the reply; False means the name does not exist."""
        if len(labels) >= 2 and labels[-1] == "pod":
            return self._pod(labels[:-1], qtype, qname, reply)
        if len(labels) < 3 or labels[-1] != "svc":
            return False
        labels = labels[:-1]
        if len(labels) == 2:
            svc = self.services.get(f"{labels[1]}/{labels[0]}")
            return svc is not None and self._service(svc, qtype, qname, reply)
        if len(labels) == 3 and not labels[0].startswith("_"):
            svc = self.services.get(f"{labels[2]}/{labels[1]}")
            return svc is not None and self._hostname(svc, labels[0], qtype, qname, reply)
        if len(labels) == 4 and labels[0].startswith("_") and labels[1].startswith("_"):
            svc = self.services.get(f"{labels[3]}/{labels[2]}")
            return svc is not None and self._srv(svc, labels[0][1:], labels[1][1:], qtype, qname, reply)
        return False

    def _service_name(self, svc: Obj) -> str:
        return f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.{self.domain}"

    def _endpoints(self, svc: Obj) -> list[Obj]:
        """The Service's endpoints DNS publishes: ready ones, or all with publishNotReadyAddresses."""
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        publish = (svc.get("spec") or {}).get("publishNotReadyAddresses")
        out: list[Obj] = []
        for s in self.slices.list():
            if s["metadata"].get("namespace") != ns or \
                    (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            out += [ep for ep in s.get("endpoints") or []
                    if publish or (ep.get("conditions") or {}).get("ready", True)]
        return out

    def _ready_ips(self, svc: Obj) -> list[str]:
        ips: list[str] = []
        for ep in self._endpoints(svc):
            ips.extend(a for a in ep.get("addresses") or [] if a not in ips)
        return ips

    def _hostname(self, svc: Obj, host: str, qtype: str, qname: str, reply: DNSRecord) -> bool:
        """<host>.<svc>.<ns>.svc: the addresses of the headless Service's endpoint named host."""
        if (svc.get("spec") or {}).get("clusterIP") not in (None, "None"):
            return False
        ips = [a for ep in self._endpoints(svc) if (ep.get("hostname") or "").lower() == host
               for a in ep.get("addresses") or []]
        if not ips:
            return False
        if qtype in ("A", "ANY"):
            for ip in dict.fromkeys(ips):
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return True

    def _service(self, svc: Obj, qtype: str, qname: str, reply: DNSRecord) -> bool:
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME(spec.get("externalName", "")), ttl=TTL))
            return True
        ips = self._ready_ips(svc) if spec.get("clusterIP") in (None, "None") else [self._cluster_ip(spec)]
        if qtype in ("A", "ANY"):
            for ip in ips:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return True  # the name exists even when it has no address of the asked type

    def _cluster_ip(self, spec: Obj) -> str:
        ip = spec["clusterIP"]
        return (self.translate(ip) if self.translate else None) or ip

    def _srv(self, svc: Obj, port_name: str, proto: str, qtype: str, qname: str, reply: DNSRecord) -> bool:
        spec = svc.get("spec") or {}
        port = next((p for p in spec.get("ports") or []
                     if p.get("name") == port_name and p.get("protocol", "TCP").lower() == proto), None)
        if port is None:
            return False
        if qtype not in ("SRV", "ANY"):
            return True
        target = self._service_name(svc)
        if spec.get("clusterIP") in (None, "None"):  # headless: one target per endpoint
            for ep in self._endpoints(svc):
                for ip in ep.get("addresses") or []:
                    host = f"{ep.get('hostname') or ip.replace('.', '-')}.{target}"
                    reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(0, 100, port["port"], host), ttl=TTL))
                    reply.add_ar(RR(host, QTYPE.A, rdata=A(ip), ttl=TTL))
        else:
            reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(0, 100, port["port"], target), ttl=TTL))
            reply.add_ar(RR(target, QTYPE.A, rdata=A(self._cluster_ip(spec)), ttl=TTL))
        return True

    def _pod(self, labels: list[str], qtype: str, qname: str, reply: DNSRecord) -> bool:
        if len(labels) != 2:
            return False
        try:
            ip = ipaddress.ip_address(labels[0].replace("-", "."))
        except ValueError:
            return False
        if qtype in ("A", "ANY") and ip.version == 4:
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(str(ip)), ttl=TTL))
        elif qtype == "AAAA" and ip.version == 6:
            reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(str(ip)), ttl=TTL))
        return True

    async def _forward(self, q: DNSRecord, data: bytes) -> bytes:
        for host, port in self.upstreams:
            try:
                return await asyncio.wait_for(_udp_query(data, host, port), FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                continue
        reply = q.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = await self.answer(await reader.readexactly(size))
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, dns: ClusterDNS):
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        asyncio.ensure_future(self._reply(data, addr))

    async def _reply(self, data: bytes, addr) -> None:
        out = await self.dns.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _udp_query(data: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    class Once(asyncio.DatagramProtocol):
        def datagram_received(self, reply, addr):
            if not fut.done():
                fut.set_result(reply)

        def error_received(self, exc):
            if not fut.done():
                fut.set_exception(exc)
    transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await fut
    finally:
        transport.close()
