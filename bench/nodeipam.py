"""Node registration through Node IPAM: how long N Node creates take on one API server.

    python -m bench.nodeipam [--nodes 1000] [--etcd-members 3] [--no-etcd]

Each create runs the API server's create path without HTTP (``ResourceAPI.create``: the
admission steps, among them the podCIDR and container-CIDR allocators, then the store
write), 20 at a time, first on SQLite, then on a local etcd of ``--etcd-members``
members (loopback ports, stopped by PID). Prints the seconds and the store list calls
on the nodes and the CIDR-claim prefixes (what used to grow with the square of N).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from typing import Any

from sendo.api.resources import ResourceAPI
from sendo.kinds.registry import builtin_registry
from sendo.store.registry import open_store

CONCURRENCY = 20


class ListCounter:
    """The real store, counting its ``list`` calls by prefix (everything else passes through)."""

    def __init__(self, store):
        self._store = store
        self.lists: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def list(self, prefix: str, revision: int = 0):
        self.lists[prefix] = self.lists.get(prefix, 0) + 1
        return await self._store.list(prefix, revision)

    def counted(self, *prefixes: str) -> int:
        return sum(n for p, n in self.lists.items() if p.startswith(prefixes))


async def register(url: str, n: int) -> tuple[float, int]:
    """Seconds to create ``n`` Nodes on one server over ``url``, and the IPAM list calls made."""
    store = ListCounter(open_store(url))
    await store.start()
    try:
        registry = builtin_registry()
        api, nodes = ResourceAPI(store, registry), registry.get("", "v1", "nodes")
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                await api.create(nodes, None, {"metadata": {"name": f"hollow-{i}"}})
        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.monotonic() - t0, store.counted(nodes.prefix(), "/registry/ranges/")
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--etcd-members", type=int, default=3)
    ap.add_argument("--no-etcd", action="store_true")
    a = ap.parse_args()
    logging.getLogger("sendo.api.admission").setLevel(logging.ERROR)  # a line per node beyond the container range
    with tempfile.TemporaryDirectory(prefix="sendo-nodeipam-") as d:
        took, lists = asyncio.run(register(f"sqlite://{d}/state.db", a.nodes))
        print(f"sqlite: {a.nodes} node creates in {took:.2f}s ({lists} IPAM list calls)", flush=True)
        if a.no_etcd:
            return
        from sendo.store.etcd_local import LocalEtcd
        etcd = LocalEtcd(f"{d}/etcd", n=a.etcd_members).start()
        try:
            took, lists = asyncio.run(register(etcd.url, a.nodes))
            print(f"etcd ({a.etcd_members} members): {a.nodes} node creates in {took:.2f}s "
                  f"({lists} IPAM list calls)", flush=True)
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
