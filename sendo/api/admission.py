"""Admission steps that give new objects what the cluster allocates: a node's podCIDR.

Pod IPs are loopback addresses (127.0.0.0/8 is local on Linux without any set-up), so
every node gets its own block of 127.64.0.0/10 and pods on different nodes of one
machine never collide.
"""
from __future__ import annotations

import ipaddress
from typing import Any

import orjson

POD_NETWORK = ipaddress.ip_network("127.64.0.0/10")
NODE_BLOCK_PREFIX = 22  # 1,022 pod IPs per node, 4,096 nodes


class NodeCIDRAllocator:
    """Assigns spec.podCIDR on Node create, once; blocks stay reserved while this server runs."""

    def __init__(self, store, nodes_resource):
        self.store = store
        self.nodes = nodes_resource
        self.taken: set[str] | None = None
        self.blocks = list(POD_NETWORK.subnets(new_prefix=NODE_BLOCK_PREFIX))
        self.cursor = 0

    async def __call__(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if spec.get("podCIDR"):
            return
        if self.taken is None:
            self.taken = set()
            for kv in self.store.list_nowait(self.nodes.prefix()):
                cidr = (orjson.loads(kv.value).get("spec") or {}).get("podCIDR")
                if cidr:
                    self.taken.add(cidr)
        for i in range(len(self.blocks)):
            block = str(self.blocks[(self.cursor + i) % len(self.blocks)])
            if block not in self.taken:
                self.taken.add(block)
                self.cursor = (self.cursor + i + 1) % len(self.blocks)
                spec["podCIDR"] = block
                spec["podCIDRs"] = [block]
                return
        raise RuntimeError("the pod network 127.64.0.0/10 has no free node block left")
