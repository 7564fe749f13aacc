"""Host-gateway routes (agent/noderoutes.py): which route each other node gets, how the
kernel's routes are read back, and the docker runtime's node block. The routes themselves
are installed for real in tests/e2e/test_crossnode.py."""
from __future__ import annotations

import ipaddress

import pytest

from sendo.agent.noderoutes import _shape, desired_routes
from sendo.agent.runtime.docker import DockerRuntime
from sendo.kinds.cluster import CONTAINER_CIDR_ANNOTATION

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


def node(name: str, block: str | None, addr: str | None) -> dict:
    meta: dict = {"name": name}
    if block is not None:
        meta["annotations"] = {CONTAINER_CIDR_ANNOTATION: block}
    addresses = [{"type": "Hostname", "address": name}] + ([{"type": "InternalIP", "address": addr}] if addr else [])
    return {"metadata": meta, "status": {"addresses": addresses}}


def test_every_other_node_on_another_host_is_routed_via_its_internal_ip():
    nodes = [node("me", "10.244.1.0/24", "192.168.5.1"), node("b", "10.244.2.0/24", "192.168.5.2"),
             node("c", "10.244.3.0/24", "192.168.5.3")]
    assert desired_routes(nodes, "me", POD_CIDR, "", lambda a: False) == {
        "10.244.2.0/24": ("via", "192.168.5.2"), "10.244.3.0/24": ("via", "192.168.5.3")}
    # once this node's bridge is up, what the host sends leaves from its gateway address
    assert desired_routes(nodes, "me", POD_CIDR, "10.244.1.1", lambda a: False)["10.244.2.0/24"] == \
        ("via", "192.168.5.2", "src", "10.244.1.1")


@pytest.mark.parametrize("other, why", [
    (node("b", "10.244.2.0/24", "127.0.0.1"), "an agent on loopback: this very host"),
    (node("b", "10.244.2.0/24", "192.168.5.9"), "an address of this host (is_local)"),
    (node("b", "10.245.2.0/24", "192.168.5.2"), "a block outside this agent's pod CIDR"),
    (node("b", None, "192.168.5.2"), "no block"),
    (node("b", "10.244.2.0/24", None), "no InternalIP"),
    (node("b", "10.244.2.0/24", "fd00::2"), "an IPv6 InternalIP"),
    (node("b", "10.244.2.0/24", "0.0.0.0"), "an unspecified InternalIP"),
    (node("b", "banana", "192.168.5.2"), "a block that is no CIDR"),
    (node("b", "10.244.1.0/24", "192.168.5.2"), "this node's own block, claimed twice"),
])
def test_nodes_that_need_no_route_or_cannot_have_one_get_none(other, why):
    nodes = [node("me", "10.244.1.0/24", "192.168.5.1"), other]
    assert desired_routes(nodes, "me", POD_CIDR, "", lambda a: a == "192.168.5.9") == {}, why


def test_a_block_two_other_nodes_claim_is_routed_to_neither():
    nodes = [node("b", "10.244.2.0/24", "192.168.5.2"), node("c", "10.244.2.0/24", "192.168.5.3"),
             node("d", "10.244.4.0/24", "192.168.5.4")]
    assert desired_routes(nodes, "me", POD_CIDR, "", lambda a: False) == {"10.244.4.0/24": ("via", "192.168.5.4")}


def test_routes_read_back_in_the_words_ip_route_replace_takes():
    assert _shape({"dst": "10.244.2.0/24", "gateway": "192.168.5.2", "dev": "eth0", "protocol": "211"}) == \
        ("via", "192.168.5.2")
    assert _shape({"dst": "10.244.2.0/24", "gateway": "192.168.5.2", "prefsrc": "10.244.1.1"}) == \
        ("via", "192.168.5.2", "src", "10.244.1.1")
    assert _shape({"type": "unreachable", "dst": "default"}) == ("unreachable",)
    assert _shape({"dst": "10.244.1.0/24", "dev": "podman3", "scope": "link"}) == ("dev", "podman3")


def test_the_docker_runtime_takes_the_node_block_of_its_pod_cidr_only(tmp_path):
    rt = DockerRuntime(str(tmp_path / "docker"), pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/16")
    assert str(rt.subnet) == "10.244.0.0/24"  # no block given: the first /24, as before node IPAM
    rt.use_node_block("10.244.7.0/24")
    assert (str(rt.subnet), rt.gateway) == ("10.244.7.0/24", "10.244.7.1")
    for bad, says in (("10.245.7.0/24", "not a /24 of this agent's --container-cidr 10.244.0.0/16"),
                      ("10.244.8.0/23", "not a /24"), ("nope", "is not a CIDR")):
        with pytest.raises(ValueError, match=says):
            rt.use_node_block(bad)
    assert str(rt.subnet) == "10.244.7.0/24"
