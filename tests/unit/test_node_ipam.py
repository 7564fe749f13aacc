"""--cluster-cidr / --node-cidr-mask-size: what is refused, with a message naming why."""
from __future__ import annotations

import ipaddress

import pytest

from sendo.api.admission import cluster_cidr, container_cidr


def test_a_loopback_range_away_from_the_hosts_and_the_services_addresses_is_taken():
    assert cluster_cidr("127.200.0.0/16", 24) == ipaddress.ip_network("127.200.0.0/16")
    assert cluster_cidr("127.64.0.0/10", 22) == ipaddress.ip_network("127.64.0.0/10")  # the default


@pytest.mark.parametrize("cidr, mask, says", [
    ("10.244.0.0/16", 24, "is not inside 127.0.0.0/8"),
    ("fd00::/64", 80, "is not inside 127.0.0.0/8"),
    ("127.200.0.1/16", 24, "invalid cluster CIDR"),  # host bits set
    ("banana", 24, "invalid cluster CIDR"),
    ("127.0.0.0/12", 24, "overlaps 127.0.0.0/16"),
    ("127.32.0.0/14", 24, "overlaps 127.32.0.0/16"),
    ("127.200.0.0/16", 16, "must be more than"),
    ("127.200.0.0/16", 31, "at most 30"),
    ("127.64.0.0/10", 30, "more than 65536 node blocks"),
])
def test_a_bad_range_or_mask_is_refused_naming_why(cidr, mask, says):
    with pytest.raises(ValueError, match=says.replace(".", r"\.")):
        cluster_cidr(cidr, mask)


def test_the_container_cidr_is_a_non_loopback_ipv4_range_of_several_node_blocks():
    assert container_cidr("") == ipaddress.ip_network("10.244.0.0/16")  # the default
    assert container_cidr("10.250.0.0/20") == ipaddress.ip_network("10.250.0.0/20")
    for bad, says in (("10.244.0.0/24", "at most /23"), ("127.200.0.0/16", "non-loopback"),
                      ("fd00::/48", "IPv4"), ("10.244.0.1/16", "invalid container CIDR")):
        with pytest.raises(ValueError, match=says):
            container_cidr(bad)
