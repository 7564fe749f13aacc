"""Load generators that run in their own process (so the server's CPU is its own).

Usage: python -m bench.load <mode> <json-args>; prints one JSON line of results.
"""
from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
import time

import aiohttp
import orjson


def _session(args, limit: int = 0) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cadata=args["ca"])
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
                                 headers={"Authorization": f"Bearer {args['token']}",
                                          "Content-Type": "application/json"})


def _data(args, i: int) -> dict:
    """A ConfigMap's data, or a Secret's (base64) with ``"resource": "secrets"``."""
    return {"i": base64.b64encode(str(i).encode()).decode() if args.get("resource") == "secrets" else str(i)}


def _cm(args, name: str, i: int) -> bytes:
    kind = "Secret" if args.get("resource") == "secrets" else "ConfigMap"
    return orjson.dumps({"apiVersion": "v1", "kind": kind,
                         "metadata": {"name": name, "namespace": "default"}, "data": _data(args, i)})


def _writes_url(args) -> str:
    return args["url"] + f"/api/v1/namespaces/default/{args.get('resource', 'configmaps')}"


async def steady_writes(args) -> dict:
    """Open-loop load: one write every 1/rate s (creates, then updates of the same objects)."""
    rate, count = args["rate"], args["count"]
    url = _writes_url(args)
    lat: list[float] = []
    errors = 0
    async with _session(args) as s:
        async def one(i: int):
            nonlocal errors
            name = f"steady-{args['run']}-{i % 500}"
            t = time.perf_counter()
            if i < 500:
                r = await s.post(url, data=_cm(args, name, i))
            else:
                r = await s.patch(f"{url}/{name}", data=orjson.dumps({"data": _data(args, i)}),
                                  headers={"Content-Type": "application/merge-patch+json"})
            await r.read()
            lat.append((time.perf_counter() - t) * 1000)
            if r.status >= 300:
                errors += 1
        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # open-loop pacing at the target rate
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return {"latencies_ms": lat, "errors": errors}


async def max_writes(args) -> dict:
    """Closed loop with many writers: the API's write throughput."""
    url = _writes_url(args)
    done = 0
    errors = 0
    stop = time.perf_counter() + args["seconds"]
    async with _session(args) as s:
        async def writer(w: int):
            nonlocal done, errors
            i = 0
            while time.perf_counter() < stop:
                r = await s.post(url, data=_cm(args, f"max-{args['run']}-{w}-{i}", i))
                await r.read()
                if r.status >= 300:
                    errors += 1
                done += 1
                i += 1
        t0 = time.perf_counter()
        await asyncio.gather(*[writer(w) for w in range(args["writers"])])
        took = time.perf_counter() - t0
    return {"writes_per_s": done / took, "errors": errors}


async def watchers(args) -> dict:
    """N watchers on one namespace; report, per write, when each watcher saw it."""
    n, expect = args["watchers"], args["writes"]
    url = args["url"] + f"/api/v1/namespaces/{args['namespace']}/configmaps"
    seen: list[float] = []
    ready = 0
    async with _session(args) as s:
        async def watch():
            nonlocal ready
            got = 0
            async with s.get(url, params={"watch": "true", "resourceVersion": args["rv"]},
                             timeout=aiohttp.ClientTimeout(total=None)) as r:
                ready += 1
                buf = b""
                async for chunk in r.content.iter_any():
                    now = time.time()
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        ev = orjson.loads(line)
                        sent = float(ev["object"]["data"]["sent"])
                        seen.append((now - sent) * 1000)
                        got += 1
                    if got >= expect:
                        return
        tasks = [asyncio.create_task(watch()) for _ in range(n)]
        deadline = time.monotonic() + args["timeout"]
        while ready < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ready} of {n} watch streams opened in {args['timeout']}s")
            await asyncio.sleep(0.01)  # wait for all watch streams to open
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.wait_for(asyncio.gather(*tasks), args["timeout"])
    return {"latencies_ms": seen}


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    fn = {"steady": steady_writes, "max": max_writes, "watchers": watchers, "http": http_rate,
          "http_max": http_capacity, "dns": dns_rate}[mode]
    print(json.dumps(asyncio.run(fn(args))), flush=True)



async def http_rate(args) -> dict:
    """Open-loop HTTP GETs at a steady rate against one URL (plain HTTP on loopback)."""
    rate, count, url = args["rate"], args["count"], args["url"]
    lat: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one():
            nonlocal errors
            t = time.perf_counter()
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                errors += 1
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            lat.append((time.perf_counter() - t) * 1000)
        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # open-loop pacing at the target rate
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - t0
    return {"latencies_ms": lat, "errors": errors, "error_kinds": kinds, "achieved_rps": count / took}


async def http_capacity(args) -> dict:
    """Closed loop: CLIENTS keep-alive connections, each sending a GET and reading the
    answer again and again for SECONDS (plain HTTP/1.1 on loopback, asyncio streams: a
    cheaper client than aiohttp, so the figure is the server's side more than ours).
    Requests answered per second and their latencies."""
    host, port, path = args["host"], args["port"], args.get("path", "/")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    stop = time.perf_counter() + args["seconds"]
    lat: list[float] = []
    errors = 0

    async def client():
        nonlocal errors
        w = None
        while time.perf_counter() < stop:
            try:
                if w is None:
                    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                t = time.perf_counter()
                w.write(request)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await r.readexactly(length)
                lat.append((time.perf_counter() - t) * 1000)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, StopIteration, ValueError):
                errors += 1
                if w is not None:
                    w.close()
                w = None
                await asyncio.sleep(0.01)  # back off before reconnecting (bounded by the deadline)
        if w is not None:
            w.close()
    t0 = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(args["clients"])])
    took = time.perf_counter() - t0
    return {"requests_per_s": len(lat) / took, "latencies_ms": lat, "errors": errors}


async def dns_rate(args) -> dict:
    """UDP DNS queries, many in flight, for a fixed time: answered queries per second."""
    from dnslib import DNSRecord
    loop = asyncio.get_running_loop()
    host, port = args["host"], args["port"]
    answered = 0
    pending: dict[int, asyncio.Future] = {}

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            qid = int.from_bytes(data[:2], "big")
            fut = pending.pop(qid, None)
            if fut and not fut.done():
                fut.set_result(True)
    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    base = DNSRecord.question(args["name"]).pack()
    stop = time.perf_counter() + args["seconds"]
    next_id = 0

    async def worker():
        nonlocal answered, next_id
        while time.perf_counter() < stop:
            next_id = (next_id + 1) % 65536
            qid = next_id
            fut = loop.create_future()
            pending[qid] = fut
            transport.sendto(qid.to_bytes(2, "big") + base[2:])
            try:
                await asyncio.wait_for(fut, 1.0)
                answered += 1
            except asyncio.TimeoutError:
                pending.pop(qid, None)
    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(args["concurrency"])])
    transport.close()
    return {"queries_per_s": answered / (time.perf_counter() - t0)}


if __name__ == "__main__":
    main()
