"""Which service endpoints the proxy reaches through another node's agent (network/
endpointroute.py): process pods of other machines, and nothing else. The tunnel itself
runs in tests/integration/test_pod_tunnel.py and tests/e2e/test_crossnode_process.py."""
from __future__ import annotations

from sendo.network.endpointroute import is_local_address, pod_cidrs, tunnel_via
from sendo.wire import agent_address

ME = "a"


def node(name: str, cidr: str | None = "127.64.4.0/22", addr: str | None = "10.250.0.2",
         port: int | None = 10250, cidrs: list[str] | None = None) -> dict:
    status: dict = {"addresses": [{"type": "Hostname", "address": name}]}
    if addr:
        status["addresses"].append({"type": "InternalIP", "address": addr})
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    spec: dict = {}
    if cidr:
        spec["podCIDR"] = cidr
    if cidrs:
        spec["podCIDRs"] = cidrs
    return {"metadata": {"name": name}, "spec": spec, "status": status}


def never_local(host: str) -> bool:
    return False


def test_a_process_pod_of_another_machine_is_reached_through_its_agent():
    assert tunnel_via("127.64.4.7", "b", ME, node("b"), never_local) == ("10.250.0.2", 10250)


def test_what_this_host_can_dial_is_dialled():
    b = node("b")
    # this node's own endpoints, endpoints with no node, a node not in the cache
    assert tunnel_via("127.64.4.7", ME, ME, node(ME), never_local) is None
    assert tunnel_via("127.64.4.7", None, ME, None, never_local) is None
    assert tunnel_via("127.64.4.7", "b", ME, None, never_local) is None
    # a container pod (routed between hosts) or a host-network pod: outside the node's podCIDR
    assert tunnel_via("10.244.3.5", "b", ME, b, never_local) is None
    assert tunnel_via("10.250.0.2", "b", ME, b, never_local) is None
    # a node sharing this machine: its loopback block is local here too
    assert tunnel_via("127.64.4.7", "b", ME, b, lambda host: host == "10.250.0.2") is None
    # an agent that has not posted where it listens yet, or a node with no podCIDR
    assert tunnel_via("127.64.4.7", "b", ME, node("b", port=None), never_local) is None
    assert tunnel_via("127.64.4.7", "b", ME, node("b", cidr=None), never_local) is None
    # not an IPv4 address
    assert tunnel_via("fd00::5", "b", ME, b, never_local) is None


def test_pod_cidrs_prefers_the_list_and_skips_what_does_not_parse():
    assert [str(n) for n in pod_cidrs(node("b", cidrs=["127.64.8.0/22", "fd00::/64"]))] == ["127.64.8.0/22"]
    assert [str(n) for n in pod_cidrs(node("b", cidr="not-a-cidr"))] == []
    assert tunnel_via("127.64.8.9", "b", ME, node("b", cidrs=["127.64.8.0/22"]), never_local) == ("10.250.0.2", 10250)


def test_agent_address_is_the_internal_ip_and_kubelet_port():
    assert agent_address(node("b")) == ("10.250.0.2", 10250)
    assert agent_address(node("b", addr=None)) == ("b", 10250)  # the Hostname, as kube-apiserver falls back
    assert agent_address(node("b", port=None)) is None
    assert agent_address(node("b", port=0)) is None
    assert agent_address({"metadata": {"name": "x"}}) is None


def test_local_addresses_are_found_without_sending_anything():
    assert is_local_address("127.0.0.1") and is_local_address("127.64.4.7")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: no interface of this machine holds it
    assert not is_local_address("node-b.example")  # a name: another machine's
