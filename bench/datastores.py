"""The two stores side by side, in one run: API writes on SQLite and on etcd, and snapshots.

    python -m bench.datastores [--tiny]

For each store a `sendo server` (no agent) takes the same two loads from a process of
its own (bench/load.py): a steady 300 writes/s (p50/p99 latency) and a closed loop of 64
writers (writes/s). etcd is one member on loopback, started and stopped here by PID.
Then 10,000 ConfigMap-sized objects are written straight into each store and a snapshot
of it is saved and restored into a new data dir (the functions `sendo snapshot save` and
`restore` run, without the command's start-up). All traffic stays on loopback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

from bench.harness import percentile, start_server
from bench.run import conn_args, load, log
from sendo.store import open_store, snapshot
from sendo.store.etcd_local import LocalEtcd
from sendo.store.versioner import encode

FULL = dict(steady_rate=300, steady_count=3000, max_seconds=5, max_writers=64, objects=10_000)
TINY = dict(steady_rate=50, steady_count=50, max_seconds=1, max_writers=4, objects=50)


def load_retried(mode: str, args: dict) -> dict:
    """bench.load, once more if the first run lost a connection (on a loaded machine a pooled
    keep-alive connection can be closed by the server just as the client reuses it)."""
    try:
        return load(mode, args)
    except RuntimeError as e:
        log(f"{mode} load failed ({e}); once more")
        return load(mode, {**args, "run": args["run"] + "2"})


async def api_writes(name: str, d: str, extra: tuple[str, ...], size: dict, figures: dict) -> None:
    os.makedirs(d)
    c = start_server(d, extra=extra)
    try:
        r = load_retried("steady", conn_args(c, rate=size["steady_rate"], count=size["steady_count"], run="s"))
        figures[f"{name}_write_p50_ms"] = round(percentile(r["latencies_ms"], 50), 2)
        figures[f"{name}_write_p99_ms"] = round(percentile(r["latencies_ms"], 99), 2)
        m = load_retried("max", conn_args(c, seconds=size["max_seconds"], writers=size["max_writers"], run="m"))
        figures[f"{name}_writes_per_s"] = round(m["writes_per_s"], 1)
        log(f"{name}: {m['writes_per_s']:.0f} writes/s; at {size['steady_rate']}/s p50 "
            f"{figures[f'{name}_write_p50_ms']} ms, p99 {figures[f'{name}_write_p99_ms']} ms, "
            f"errors {r['errors'] + m['errors']}")
    finally:
        c.server.stop()


async def fill(url: str, n: int) -> None:
    s = open_store(url)
    await s.start()
    try:
        sem = asyncio.Semaphore(64)

        async def one(i: int):
            async with sem:
                await s.create(f"/registry/core/configmaps/default/cm-{i}", encode(
                    {"kind": "ConfigMap", "apiVersion": "v1",
                     "metadata": {"name": f"cm-{i}", "namespace": "default", "uid": f"u-{i}"},
                     "data": {"key": "x" * 200}}))
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await s.close()


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


async def snapshots(name: str, d: str, url: str, size: dict, figures: dict, peer_url: str = "") -> None:
    await fill(url, size["objects"])
    info, took = await asyncio.to_thread(timed, snapshot.save, d, url)
    figures[f"{name}_snapshot_save_s"] = round(took, 3)
    restore_kw = {"etcd_name": "bench", "etcd_peer_url": peer_url} if peer_url else {}
    r, took = await asyncio.to_thread(timed, snapshot.restore, info.path, os.path.join(d, "restored"), **restore_kw)
    figures[f"{name}_snapshot_restore_s"] = round(took, 3)
    log(f"{name}: snapshot of {info.keys} keys ({info.size >> 10} KiB) saved in "
        f"{figures[f'{name}_snapshot_save_s']} s, restored in {figures[f'{name}_snapshot_restore_s']} s")


async def run(size: dict) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="sendo-bench-stores-") as root:
        etcd = LocalEtcd(os.path.join(root, "etcd")).start()
        try:
            await api_writes("sqlite", os.path.join(root, "api-sqlite"), (), size, figures)
            await api_writes("etcd", os.path.join(root, "api-etcd"), ("--datastore", f"{etcd.url}/api"), size,
                             figures)
        finally:
            etcd.stop()
        d = os.path.join(root, "snap-sqlite")
        await snapshots("sqlite", d, f"sqlite://{d}/server/state.db", size, figures)
        etcd = LocalEtcd(os.path.join(root, "etcd-snap")).start()  # an etcd snapshot holds all of etcd: a fresh one
        try:
            await snapshots("etcd", os.path.join(root, "snap-etcd"), etcd.url, size, figures,
                            etcd.members[0].peer_url)
        finally:
            etcd.stop()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, to check the harness works")
    a = ap.parse_args()
    figures = asyncio.run(run(TINY if a.tiny else FULL))
    print("| figure | SQLite | etcd |\n| --- | --- | --- |")
    for fig in ("writes_per_s", "write_p50_ms", "write_p99_ms", "snapshot_save_s", "snapshot_restore_s"):
        print(f"| {fig} | {figures.get('sqlite_' + fig)} | {figures.get('etcd_' + fig)} |")
    print(json.dumps(figures), file=sys.stderr if not a.tiny else sys.stdout)


if __name__ == "__main__":
    main()
