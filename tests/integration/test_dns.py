"""Cluster DNS answers through a real resolver client (dnspython), from the API's objects.
Forwarding is tested against a fake upstream on loopback: no query leaves the machine."""
import asyncio

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from conftest import wait_until
from dnslib import QTYPE, RR, A, DNSRecord

from sendo.client import kind
from sendo.network.dns import ClusterDNS
from sendo.server import free_port

SVC, SLICES = kind("services"), kind("endpointslices", "discovery.k8s.io")


class FakeUpstream(asyncio.DatagramProtocol):
    """Answers every A query with 127.9.9.9."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = DNSRecord.parse(data)
        r = q.reply()
        r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("127.9.9.9"), ttl=1))
        self.transport.sendto(r.pack(), addr)


@pytest.fixture
async def cluster_dns(client):
    loop = asyncio.get_running_loop()
    up_port = free_port()
    upstream, _ = await loop.create_datagram_endpoint(FakeUpstream, local_addr=("127.0.0.1", up_port))
    d = ClusterDNS(client, "127.0.0.1", free_port(), upstreams=[("127.0.0.1", up_port)])
    await d.start()
    yield d
    await d.stop()
    upstream.close()


async def ask(d, name, rdtype="A"):
    q = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=d.port, timeout=2)


def addresses(resp):
    return sorted(r.address for rrset in resp.answer for r in rrset if rrset.rdtype == dns.rdatatype.A)


async def test_service_names_resolve_to_cluster_ips(client, cluster_dns):
    svc = await client.create(SVC, {"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "web", "namespace": "default"},
                                    "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}})
    ip = svc["spec"]["clusterIP"]

    async def known():
        return addresses(await ask(cluster_dns, "web.default.svc.cluster.local")) == [ip]
    await wait_until(known, 5, what="service name in DNS")
    assert addresses(await ask(cluster_dns, "web.default")) == [ip]
    assert addresses(await ask(cluster_dns, "web.default.svc")) == [ip]
    srv = await ask(cluster_dns, "_http._tcp.web.default.svc.cluster.local", "SRV")
    rec = srv.answer[0][0]
    assert rec.port == 8080 and str(rec.target) == "web.default.svc.cluster.local."
    assert addresses(await ask(cluster_dns, "kubernetes.default.svc.cluster.local")) == ["127.32.0.1"]


async def test_headless_service_answers_each_ready_endpoint(client, cluster_dns):
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "db", "namespace": "default"},
                              "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})
    await client.create(SLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                 "metadata": {"name": "db-1", "namespace": "default",
                                              "labels": {"kubernetes.io/service-name": "db"}},
                                 "addressType": "IPv4", "ports": [{"port": 5432}],
                                 "endpoints": [{"addresses": ["127.64.0.7"], "conditions": {"ready": True}},
                                               {"addresses": ["127.64.0.8"], "conditions": {"ready": True}},
                                               {"addresses": ["127.64.0.9"], "conditions": {"ready": False}}]})

    async def both():
        return addresses(await ask(cluster_dns, "db.default.svc.cluster.local")) == ["127.64.0.7", "127.64.0.8"]
    await wait_until(both, 5, what="headless endpoints in DNS")


async def test_headless_service_answers_each_pod_by_its_hostname(client, cluster_dns):
    """<hostname>.<svc>.<ns>.svc: the StatefulSet pods' stable names (endpoints carry the hostname)."""
    await client.create(SVC, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kv", "namespace": "default"},
                              "spec": {"clusterIP": "None", "selector": {"app": "kv"},
                                       "ports": [{"name": "peer", "port": 2380}]}})
    await client.create(SLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                 "metadata": {"name": "kv-1", "namespace": "default",
                                              "labels": {"kubernetes.io/service-name": "kv"}},
                                 "addressType": "IPv4", "ports": [{"name": "peer", "port": 2380}],
                                 "endpoints": [{"addresses": ["127.64.0.20"], "hostname": "kv-0",
                                                "conditions": {"ready": True}},
                                               {"addresses": ["127.64.0.21"], "hostname": "kv-1",
                                                "conditions": {"ready": False}}]})

    async def known():
        return addresses(await ask(cluster_dns, "kv-0.kv.default.svc.cluster.local")) == ["127.64.0.20"]
    await wait_until(known, 5, what="pod hostname in DNS")
    assert (await ask(cluster_dns, "kv-1.kv.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN  # not ready
    assert (await ask(cluster_dns, "kv-9.kv.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    srv = await ask(cluster_dns, "_peer._tcp.kv.default.svc.cluster.local", "SRV")
    assert [str(r.target) for rrset in srv.answer for r in rrset] == ["kv-0.kv.default.svc.cluster.local."]


async def test_pod_names_unknown_names_and_forwarding(cluster_dns):
    assert addresses(await ask(cluster_dns, "127-64-0-5.default.pod.cluster.local")) == ["127.64.0.5"]
    missing = await ask(cluster_dns, "nope.default.svc.cluster.local")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    other = await ask(cluster_dns, "example.test")
    assert addresses(other) == ["127.9.9.9"]  # from the fake upstream
