"""Node IPAM from --cluster-cidr: every node a /mask block of the range, none shared, even
when two API servers (two allocators on one store) register nodes at once."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time

import orjson
import pytest

from bench.nodeipam import ListCounter
from sendo.api.admission import AdmissionOptions
from sendo.api.errors import APIError
from sendo.kinds.cluster import CONTAINER_CIDR_ANNOTATION as ANNOTATION
from sendo.api.resources import ResourceAPI
from sendo.kinds.registry import builtin_registry
from sendo.store.registry import open_store
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


def _pod_cidr(kv) -> str:
    return orjson.loads(kv.value)["spec"]["podCIDR"]


async def test_node_creates_list_the_store_a_bounded_number_of_times(tmp_path):
    """A Node create claims its blocks without listing the Nodes or the claims (which made
    registering N nodes take N² work): 50 creates list them a few times in all, not per create."""
    store = ListCounter(SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600))
    await store.start()
    try:
        registry = builtin_registry()
        api, nodes = ResourceAPI(store, registry), registry.get("", "v1", "nodes")
        for i in range(25):
            await api.create(nodes, None, {"metadata": {"name": f"n{i}"}})
        made = await asyncio.gather(*(api.create(nodes, None, {"metadata": {"name": f"m{i}"}}) for i in range(25)))
        assert len({_pod_cidr(kv) for kv in made}) == 25
        # a read of the Nodes and of the claims, by each of the two allocators (podCIDR, container block)
        assert store.counted(nodes.prefix(), "/registry/ranges/") <= 4, store.lists
    finally:
        await store.close()


async def test_two_servers_filling_a_range_at_once_give_every_block_once(store_url):
    """Two API servers on one store (SQLite, and etcd where requests really overlap) register
    nodes at once until the range is full: every block once, then a 422 for the one too many.
    (One etcd client for both: two grpc.aio clients in one test process sometimes make pytest
    fail at exit with CPython 3.11.7's "AST constructor recursion depth mismatch".)"""
    store = open_store(store_url)
    await store.start()
    try:
        registry = builtin_registry()
        options = AdmissionOptions(cluster_cidr="127.201.0.0/24", node_cidr_mask_size=29, container_cidr="10.251.0.0/19")
        a, b = ResourceAPI(store, registry, options), ResourceAPI(store, registry, options)  # 32 blocks of each
        nodes = registry.get("", "v1", "nodes")
        made = await asyncio.gather(*((a, b)[i % 2].create(nodes, None, {"metadata": {"name": f"n{i}"}})
                                      for i in range(32)))
        assert len({_pod_cidr(kv) for kv in made}) == 32
        assert len({orjson.loads(kv.value)["metadata"]["annotations"][ANNOTATION] for kv in made}) == 32
        with pytest.raises(APIError) as e:
            await b.create(nodes, None, {"metadata": {"name": "one-too-many"}})
        assert e.value.code == 422 and "no free node block" in e.value.message
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _two_servers(tmp_path, options: AdmissionOptions):
    """Two API servers (ResourceAPIs, each with its own allocators) on one SQLite store, and the Node resource."""
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await store.start()
    try:
        registry = builtin_registry()
        yield ResourceAPI(store, registry, options), ResourceAPI(store, registry, options), \
            registry.get("", "v1", "nodes")
    finally:
        await store.close()


async def test_a_server_whose_view_is_old_gives_no_block_another_server_gave_or_a_node_named(tmp_path):
    """Server b read what is taken at its first create; then a registers nodes, one naming
    its block. b, filling the range, gives none of those blocks; a deleted node's block is
    given again once the range is full."""
    options = AdmissionOptions(cluster_cidr="127.202.0.0/27", node_cidr_mask_size=29)  # four blocks
    async with _two_servers(tmp_path, options) as (a, b, nodes):
        first = _pod_cidr(await b.create(nodes, None, {"metadata": {"name": "b0"}}))
        named = next(str(n) for n in ipaddress.ip_network("127.202.0.0/27").subnets(new_prefix=29)
                     if str(n) != first)
        await a.create(nodes, None, {"metadata": {"name": "a-named"}, "spec": {"podCIDR": named}})
        by_a = _pod_cidr(await a.create(nodes, None, {"metadata": {"name": "a1"}}))
        last = _pod_cidr(await b.create(nodes, None, {"metadata": {"name": "b1"}}))
        assert len({first, named, by_a, last}) == 4
        with pytest.raises(APIError):
            await b.create(nodes, None, {"metadata": {"name": "b2"}})
        await a.delete(nodes, None, "a1", {})
        assert _pod_cidr(await a.create(nodes, None, {"metadata": {"name": "a2"}})) == by_a
        with pytest.raises(APIError):
            await b.create(nodes, None, {"metadata": {"name": "b3"}})


def _container_block(kv) -> str | None:
    return (orjson.loads(kv.value)["metadata"].get("annotations") or {}).get(ANNOTATION)


async def test_a_block_an_update_sets_is_claimed_so_a_server_with_an_old_view_skips_it(tmp_path):
    """The container annotation edited to a free block: that block is claimed, so server b,
    whose view predates the edit, does not give it to a new node."""
    options = AdmissionOptions(container_cidr="10.252.0.0/22")  # four /24s
    async with _two_servers(tmp_path, options) as (a, b, nodes):
        first = _container_block(await b.create(nodes, None, {"metadata": {"name": "b0"}}))  # b reads now
        made = await a.create(nodes, None, {"metadata": {"name": "e"}})
        moved = next(str(n) for n in ipaddress.ip_network("10.252.0.0/22").subnets(new_prefix=24)
                     if str(n) not in (first, _container_block(made)))
        edited = orjson.loads(made.value)
        edited["metadata"]["annotations"][ANNOTATION] = moved
        assert _container_block(await a.update(nodes, None, "e", edited)) == moved
        later = [_container_block(await b.create(nodes, None, {"metadata": {"name": f"b{i}"}})) for i in (1, 2)]
        assert moved not in later and later.count(None) == 1, later


async def test_a_claim_older_than_its_in_flight_time_still_holds_while_its_node_has_the_block(tmp_path):
    """Another server's claim stops counting as in flight after 60 s; a server whose view
    predates that claim's Node asks the store whether the Node holds the block, and does."""
    options = AdmissionOptions(cluster_cidr="127.203.0.0/28", node_cidr_mask_size=29)  # two blocks
    async with _two_servers(tmp_path, options) as (a, b, nodes):
        await b.create(nodes, None, {"metadata": {"name": "b0"}})  # b reads what is taken now
        for step in a.admission["nodes"]:
            step.claims.clock = lambda: time.time() - 120  # a's claims were made two minutes ago
        await a.create(nodes, None, {"metadata": {"name": "a0"}})
        with pytest.raises(APIError) as e:
            await b.create(nodes, None, {"metadata": {"name": "b1"}})
        assert e.value.code == 422
