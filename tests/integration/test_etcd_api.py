"""The API on etcd where it differs from SQLite inside: two servers on one etcd see each other's
writes (resourceVersions are etcd revisions, a watch on one server sees a write through the other),
and a watch from a revision another server compacted away ends with 410 Gone."""
import asyncio
import ssl

import aiohttp
import orjson

from sendo.client import Client, kind
from sendo.server import Server, ServerConfig, free_port
from sendo.store import open_store

CM = kind("configmaps")


def cm(name: str, v: str = "0") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"v": v}}


async def watch_lines(s: Server, rv: str, n: int) -> list[dict]:
    ctx = ssl.create_default_context(cadata=s.ca_pem.decode())
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as sess:
        async with sess.get(f"{s.cfg.url}/api/v1/namespaces/default/configmaps",
                            params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "20"},
                            headers={"Authorization": f"Bearer {s.admin_token}"}) as r:
            if r.status != 200:
                return [{"type": "HTTP", "object": orjson.loads(await r.read())}]
            async for line in r.content:
                out.append(orjson.loads(line))
                if len(out) >= n:
                    break
    return out


async def test_two_servers_on_one_etcd_share_objects_watches_and_410(tmp_path, etcd_url):
    a = Server(ServerConfig(data_dir=str(tmp_path / "a"), port=free_port(), controllers=False, datastore=etcd_url))
    b = Server(ServerConfig(data_dir=str(tmp_path / "b"), port=free_port(), controllers=False, datastore=etcd_url))
    await asyncio.gather(a.start(), b.start())  # both write the default roles at once: neither fails
    ca, cb = Client(a.cfg.url, a.admin_token, a.ca_pem), Client(b.cfg.url, b.admin_token, b.ca_pem)
    try:
        made = await ca.create(CM, cm("shared"))
        rv = made["metadata"]["resourceVersion"]
        got = await cb.get(CM, "default", "shared")  # written through a, read through b
        assert got["metadata"]["resourceVersion"] == rv and got["metadata"]["uid"] == made["metadata"]["uid"]
        # a watch on b from that revision sees an update made through a
        watching = asyncio.create_task(watch_lines(b, rv, 1))  # from rv: an update after it is replayed
        upd = await ca.patch(CM, "default", "shared", {"data": {"v": "1"}})
        (ev,) = await asyncio.wait_for(watching, 30)
        assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["resourceVersion"] == upd["metadata"]["resourceVersion"]
        # a list at an exact revision b has not seen itself yet is served, not refused as too large
        await ca.patch(CM, "default", "shared", {"data": {"v": "2"}})
        newest = (await ca.get(CM, "default", "shared"))["metadata"]["resourceVersion"]
        lst = await cb.list(CM, "default", resourceVersion=newest, resourceVersionMatch="Exact")
        assert lst["metadata"]["resourceVersion"] == newest
        # another process compacts etcd past rv: a watch on a from rv ends with 410 Gone
        other = open_store(etcd_url)
        await other.start()
        await other.compact(other.revision)
        await other.close()
        (err,) = await watch_lines(a, rv, 1)
        assert err["type"] in ("ERROR", "HTTP") and err["object"]["code"] == 410, err
    finally:
        await ca.close()
        await cb.close()
        await b.stop()
        await a.stop()
