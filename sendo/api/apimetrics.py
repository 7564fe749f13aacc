"""The API server's Prometheus metrics, with kube-apiserver's names.

* `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}`
  and `apiserver_request_duration_seconds` (same labels but code; WATCH and CONNECT are
  counted, not timed: they last as long as the client keeps them);
* `apiserver_current_inflight_requests{request_kind=readOnly|mutating}`;
* `apiserver_registered_watchers{group,version,kind}` (watches open now);
* `etcd_request_duration_seconds{operation,type}`: store calls by operation and
  resource, whichever store serves them (the name is Kubernetes', the store may be SQLite);
* `apiserver_storage_objects{resource}`: objects stored per resource, counted at scrape.

The hot path stays small: the label children of a request's counter and histogram are
looked up once per label tuple and kept, in-flight and watcher counts are plain ints
read at scrape time.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ..kinds.registry import Registry
from ..store import KV, Store

# kube-apiserver's buckets for apiserver_request_duration_seconds
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
STORE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
UNTIMED = {"WATCH", "CONNECT"}


class APIMetrics:
    def __init__(self, registry: Registry):
        self.kinds = registry
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["verb", "group", "version", "resource", "subresource", "scope", "component"]
        self.requests = Counter("apiserver_request", "Counter of apiserver requests broken out for each verb, "
                                "group, version, resource, scope, component, and HTTP response code.",
                                labels + ["code"], registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "Response latency distribution in seconds "
                                 "for each verb, group, version, resource, subresource, scope and component.",
                                 labels, buckets=REQUEST_BUCKETS, registry=self.registry)
        self.store_latency = Histogram("etcd_request_duration_seconds", "Store request latency in seconds for "
                                       "each operation and object type.", ["operation", "type"],
                                       buckets=STORE_BUCKETS, registry=self.registry)
        self.inflight = {"readOnly": 0, "mutating": 0}
        self.watchers: dict[tuple[str, str, str], int] = {}
        self.object_counts: dict[str, int] = {}
        self._children: dict[tuple, tuple[Any, Any]] = {}
        self._store_children: dict[tuple[str, str], Any] = {}
        self.registry.register(_Gauges(self))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ requests
    def request(self, method: str, labels: tuple[str, ...], code: int, seconds: float) -> None:
        """One finished request. ``labels``: verb, group, version, resource, subresource, scope, component."""
        key = labels + (code,)
        pair = self._children.get(key)
        if pair is None:
            timed = labels[0] not in UNTIMED
            pair = (self.requests.labels(*labels, str(code)), self.latency.labels(*labels) if timed else None)
            self._children[key] = pair
        pair[0].inc()
        if pair[1] is not None:
            pair[1].observe(seconds)

    async def watching(self, stream: AsyncIterator[bytes], gvk: tuple[str, str, str]) -> AsyncIterator[bytes]:
        """A watch stream counted in apiserver_registered_watchers while it is open."""
        self.watchers[gvk] = self.watchers.get(gvk, 0) + 1
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self.watchers[gvk] -= 1

    # ------------------------------------------------------------------ store
    def store_call(self, operation: str, key: str, seconds: float) -> None:
        parts = key.split("/", 4)  # /registry/<group>/<plural>/...
        typ = parts[3] if len(parts) > 3 and parts[1] == "registry" else "other"
        child = self._store_children.get((operation, typ))
        if child is None:
            child = self._store_children[(operation, typ)] = self.store_latency.labels(operation, typ)
        child.observe(seconds)

    async def count_objects(self, store: Store) -> None:
        """apiserver_storage_objects, counted when /metrics is read."""
        counts = {}
        for r in self.kinds.all():
            name = r.group_resource
            if name not in counts:
                counts[name] = await store.count(r.prefix())
        self.object_counts = counts


class _Gauges:
    def __init__(self, m: APIMetrics):
        self.m = m

    def collect(self) -> Iterator[Any]:
        inflight = GaugeMetricFamily("apiserver_current_inflight_requests", "Maximal number of currently used "
                                     "inflight request limit of this apiserver per request kind.",
                                     labels=["request_kind"])
        for kind, n in self.m.inflight.items():
            inflight.add_metric([kind], n)
        watchers = GaugeMetricFamily("apiserver_registered_watchers", "Number of currently registered watchers "
                                     "for a given resources", labels=["group", "version", "kind"])
        for (g, v, k), n in sorted(self.m.watchers.items()):
            watchers.add_metric([g, v, k], n)
        objects = GaugeMetricFamily("apiserver_storage_objects", "Number of stored objects at the time of last "
                                    "check split by kind.", labels=["resource"])
        for name, n in sorted(self.m.object_counts.items()):
            objects.add_metric([name], n)
        yield from (inflight, watchers, objects)


class TimedStore:
    """The store with its calls timed into etcd_request_duration_seconds; everything
    else (watch, revision, compaction) passes through untouched."""

    def __init__(self, store: Store, metrics: APIMetrics):
        self._store = store
        self._m = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def revision(self) -> int:
        return self._store.revision

    @property
    def compact_revision(self) -> int:
        return self._store.compact_revision

    async def get(self, key: str) -> KV | None:
        t0 = time.perf_counter()
        try:
            return await self._store.get(key)
        finally:
            self._m.store_call("get", key, time.perf_counter() - t0)

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]:
        t0 = time.perf_counter()
        try:
            return await self._store.list(prefix, revision)
        finally:
            self._m.store_call("list", prefix, time.perf_counter() - t0)

    async def create(self, key: str, data: bytes) -> KV:
        t0 = time.perf_counter()
        try:
            return await self._store.create(key, data)
        finally:
            self._m.store_call("create", key, time.perf_counter() - t0)

    async def update(self, key: str, data: bytes, expected_rev: int | None = None) -> KV:
        t0 = time.perf_counter()
        try:
            return await self._store.update(key, data, expected_rev)
        finally:
            self._m.store_call("update", key, time.perf_counter() - t0)

    async def delete(self, key: str, expected_rev: int | None = None, data: bytes | None = None) -> KV:
        t0 = time.perf_counter()
        try:
            return await self._store.delete(key, expected_rev, data)
        finally:
            self._m.store_call("delete", key, time.perf_counter() - t0)
