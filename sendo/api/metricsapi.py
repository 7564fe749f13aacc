"""metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics, what `kubectl top` and the HPA read.

Kubernetes serves this group from metrics-server, an aggregated API that scrapes every
kubelet. sendo serves it from the API server itself, the same way: on each request it
asks the agents concerned for their usage summary (`/stats/summary`, over the agent link
pods/log uses, with the node token), with a cache of one second so a burst of requests
(an HPA sync, `kubectl top` of many namespaces) asks each agent once. Nothing is stored.
A node whose agent does not answer is left out of lists (as metrics-server does) and is
a 404 when asked for by name.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response

from ..kinds.fields import selectable
from ..kinds.meta import make_filter
from . import errors
from .agentlink import AgentLink, agent_endpoint
from .errors import APIError
from .http import Request
from .paths import Target
from .query import Query
from .resources import decode

log = logging.getLogger(__name__)
GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
CACHE_SECONDS = 1.0
AGENT_TIMEOUT = 5.0
KINDS = {"nodes": ("NodeMetrics", False), "pods": ("PodMetrics", True)}


def discovery_group() -> dict[str, Any]:
    v = {"groupVersion": API_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [v], "preferredVersion": v}


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
            "resources": [{"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
                           "verbs": ["get", "list"]} for plural, (kind, namespaced) in KINDS.items()]}


def cpu_quantity(nano_cores: int) -> str:
    return f"{max(int(nano_cores), 0)}n"


def memory_quantity(nbytes: int) -> str:
    return f"{max(int(nbytes), 0) // 1024}Ki"


class MetricsAPI:
    def __init__(self, server: AgentLink):
        self.server = server
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}  # node -> (fetched at, summary)
        self._inflight: dict[str, asyncio.Future] = {}

    # ------------------------------------------------------------------ agents
    async def summary(self, node: dict[str, Any]) -> dict[str, Any] | None:
        """The node's usage summary, or None if its agent cannot say."""
        name = node["metadata"]["name"]
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        if name in self._inflight:
            return await asyncio.shield(self._inflight[name])
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[name] = fut
        try:
            result = await self._fetch(node)
            self._cache[name] = (time.monotonic(), result)
            fut.set_result(result)
            return result
        finally:
            del self._inflight[name]
            if not fut.done():
                fut.set_result(None)

    async def _fetch(self, node: dict[str, Any]) -> dict[str, Any] | None:
        try:
            url = agent_endpoint(node) + "/stats/summary"
        except APIError:
            return None  # no agent endpoint (a hollow node, or not registered yet)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=AGENT_TIMEOUT)) as s:
                async with s.get(url, headers={"Authorization": f"Bearer {self.server.node_token}"}) as resp:
                    if resp.status != 200:
                        return None
                    return orjson.loads(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError) as e:
            log.info("no usage summary from node %s: %s", node["metadata"]["name"], e)
            return None

    async def _nodes(self) -> list[dict[str, Any]]:
        r = self.server.registry.get("", "v1", "nodes")
        assert r is not None
        kvs, _ = await self.server.api.list_kvs(r, None)
        return [decode(kv.value) for kv in kvs]

    async def _summaries(self, nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        got = await asyncio.gather(*(self.summary(n) for n in nodes))
        return {n["metadata"]["name"]: s for n, s in zip(nodes, got) if s}

    # ------------------------------------------------------------------ serving
    async def serve(self, request: Request, t: Target, q: Query) -> Response:
        if t.version != VERSION or t.plural not in KINDS or t.sub is not None \
                or (t.plural == "nodes" and t.namespace is not None):
            raise errors.no_route()
        kind, _ = KINDS[t.plural]
        if request.method != "GET":
            raise APIError(405, f"the server does not allow this method on the requested resource "
                           f"({request.method} {t.plural}.{GROUP})", "MethodNotAllowed")
        if t.name is None and q.bool("watch"):
            raise APIError(405, f"watch is not supported on {t.plural}.{GROUP}", "MethodNotAllowed")
        items = await (self._node_metrics(t, q) if t.plural == "nodes" else self._pod_metrics(t, q))
        if t.name is not None:
            if not items:
                raise APIError(404, f'{t.plural}.{GROUP} "{t.name}" not found', "NotFound",
                               {"name": t.name, "group": GROUP, "kind": t.plural})
            return _json(items[0])
        return _json({"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items})

    async def _node_metrics(self, t: Target, q: Query) -> list[dict[str, Any]]:
        nodes = await self._nodes()
        if t.name is not None:
            nodes = [n for n in nodes if n["metadata"]["name"] == t.name]
        else:
            nodes = _filtered(nodes, q, "nodes", self.server)
        summaries = await self._summaries(nodes)
        out = []
        for n in nodes:
            s = summaries.get(n["metadata"]["name"])
            node = (s or {}).get("node") or {}
            if "cpu" not in node or "memory" not in node:
                continue
            out.append({"kind": "NodeMetrics", "apiVersion": API_VERSION,
                        "metadata": _meta(n), "timestamp": node["cpu"]["time"], "window": node.get("window", "15s"),
                        "usage": {"cpu": cpu_quantity(node["cpu"]["usageNanoCores"]),
                                  "memory": memory_quantity(node["memory"]["workingSetBytes"])}})
        return out

    async def _pod_metrics(self, t: Target, q: Query) -> list[dict[str, Any]]:
        pods_r = self.server.registry.get("", "v1", "pods")
        assert pods_r is not None
        if t.name is not None:
            try:
                pods = [await self.server.api.get(pods_r, t.namespace, t.name)]
            except APIError as e:
                if e.code == 404:
                    return []
                raise
        else:
            kvs, _ = await self.server.api.list_kvs(pods_r, t.namespace)
            pods = _filtered([decode(kv.value) for kv in kvs], q, "pods", self.server)
        wanted = {(p.get("spec") or {}).get("nodeName") for p in pods} - {None, ""}
        nodes = [n for n in await self._nodes() if n["metadata"]["name"] in wanted]
        by_uid: dict[str, dict[str, Any]] = {}
        for s in (await self._summaries(nodes)).values():
            for entry in s.get("pods") or []:
                by_uid[entry["podRef"]["uid"]] = entry
        out = []
        for p in pods:
            entry = by_uid.get(p["metadata"].get("uid", ""))
            if not entry or not entry.get("containers"):
                continue
            containers = [{"name": c["name"], "usage": {"cpu": cpu_quantity(c["cpu"]["usageNanoCores"]),
                                                         "memory": memory_quantity(c["memory"]["workingSetBytes"])}}
                          for c in entry["containers"]]
            at = max(c["cpu"]["time"] for c in entry["containers"])
            out.append({"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": _meta(p),
                        "timestamp": at, "window": entry.get("window", "15s"), "containers": containers})
        return out


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj["metadata"]
    out = {"name": m["name"], "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if m.get("namespace"):
        out["namespace"] = m["namespace"]
    if m.get("labels"):
        out["labels"] = m["labels"]
    return out


def _filtered(objs: list[dict[str, Any]], q: Query, plural: str, server: AgentLink) -> list[dict[str, Any]]:
    """labelSelector and fieldSelector apply to the node or pod the metrics are of."""
    r = server.registry.get("", "v1", plural)
    assert r is not None
    match = make_filter(q.str("labelSelector"), q.str("fieldSelector"), selectable(r))
    return objs if match is None else [o for o in objs if match(o)]


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
