"""Node IPAM from --cluster-cidr: every node a /mask block of the range, none shared, even
when two API servers (two allocators on one store) register nodes at once."""
from __future__ import annotations

import asyncio
import ipaddress

import orjson

from sendo.api.admission import AdmissionOptions
from sendo.kinds.cluster import CONTAINER_CIDR_ANNOTATION as ANNOTATION
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


async def test_nodes_get_distinct_container_pod_blocks_in_an_annotation(tmp_path):
    """Node IPAM for the docker runtime's bridges (--container-cidr): a /24 per node in the
    sendo.dev/container-pod-cidr annotation, none shared between two servers; a node that
    names its block keeps it."""
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await store.start()
    try:
        registry = builtin_registry()
        options = AdmissionOptions(container_cidr="10.250.0.0/20")
        a, b = ResourceAPI(store, registry, options), ResourceAPI(store, registry, options)
        nodes = registry.get("", "v1", "nodes")
        made = await asyncio.gather(*((a, b)[i % 2].create(nodes, None, {"metadata": {"name": f"n{i}"}})
                                      for i in range(12)))
        blocks = [ipaddress.ip_network(orjson.loads(kv.value)["metadata"]["annotations"][ANNOTATION]) for kv in made]
        assert len(set(blocks)) == 12
        assert all(b.prefixlen == 24 and b.subnet_of(ipaddress.ip_network("10.250.0.0/20")) for b in blocks)
        free = next(str(n) for n in ipaddress.ip_network("10.250.0.0/20").subnets(new_prefix=24) if n not in blocks)
        kept = await a.create(nodes, None, {"metadata": {"name": "named", "annotations": {ANNOTATION: free}}})
        assert orjson.loads(kept.value)["metadata"]["annotations"][ANNOTATION] == free
    finally:
        await store.close()


async def test_a_full_container_range_leaves_a_node_without_a_block_and_still_creates_it(tmp_path):
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await store.start()
    try:
        registry = builtin_registry()
        api = ResourceAPI(store, registry, AdmissionOptions(container_cidr="10.250.0.0/23"))  # two /24s
        nodes = registry.get("", "v1", "nodes")
        made = [orjson.loads((await api.create(nodes, None, {"metadata": {"name": f"n{i}"}})).value)
                for i in range(3)]
        blocks = [(m["metadata"].get("annotations") or {}).get(ANNOTATION) for m in made]
        assert sorted(filter(None, blocks)) == ["10.250.0.0/24", "10.250.1.0/24"] and blocks.count(None) == 1
        assert all(m["spec"]["podCIDR"] for m in made)  # the loopback block is given as ever
    finally:
        await store.close()
