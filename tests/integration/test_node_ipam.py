"""Node IPAM from --cluster-cidr: every node a /mask block of the range, none shared, even
when two API servers (two allocators on one store) register nodes at once."""
from __future__ import annotations

import asyncio
import ipaddress

import orjson

from sendo.api.admission import AdmissionOptions
from sendo.api.resources import ResourceAPI
from sendo.kinds.registry import builtin_registry
from sendo.store.sqlite import SQLiteStore


async def test_nodes_get_distinct_blocks_of_the_cluster_cidr_from_two_servers(tmp_path):
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await store.start()
    try:
        registry = builtin_registry()
        options = AdmissionOptions(cluster_cidr="127.200.0.0/16", node_cidr_mask_size=24)
        a, b = ResourceAPI(store, registry, options), ResourceAPI(store, registry, options)
        nodes = registry.get("", "v1", "nodes")
        made = await asyncio.gather(*((a, b)[i % 2].create(nodes, None, {"metadata": {"name": f"n{i}"}})
                                      for i in range(12)))
        specs = [orjson.loads(kv.value)["spec"] for kv in made]
        cidrs = [ipaddress.ip_network(s["podCIDR"]) for s in specs]
        assert len(set(cidrs)) == 12
        assert all(c.prefixlen == 24 and c.subnet_of(ipaddress.ip_network("127.200.0.0/16")) for c in cidrs)
        assert all(s["podCIDRs"] == [s["podCIDR"]] for s in specs)
    finally:
        await store.close()
