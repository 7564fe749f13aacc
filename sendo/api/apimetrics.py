"""The API server's Prometheus metrics, with kube-apiserver's names.

* `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}`
  and `apiserver_request_duration_seconds` (same labels but code; WATCH and CONNECT are
  counted, not timed: they last as long as the client keeps them);
* `apiserver_current_inflight_requests{request_kind=readOnly|mutating}`;
* `apiserver_registered_watchers{group,version,kind}` (watches open now);
* `etcd_request_duration_seconds{operation,type}`: store calls by operation and
  resource, whichever store serves them (the name is Kubernetes', the store may be SQLite);
* `apiserver_storage_objects{resource}`: objects stored per resource, counted at scrape.

The hot path stays small (about a microsecond a request): counts and histogram buckets
are plain ints in dicts keyed by the label tuple, updated without locks (one event loop
thread) and turned into metric families only when /metrics is read. prometheus_client's
own Counter and Histogram take a lock and validate on every call, which cost 15-20 µs a
request here.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any, AsyncIterator, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..kinds.registry import Registry
from ..store import KV, Store

# kube-apiserver's buckets for apiserver_request_duration_seconds
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
STORE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
UNTIMED = {"WATCH", "CONNECT"}


REQUEST_LABELS = ["verb", "group", "version", "resource", "subresource", "scope", "component"]


class Histograms:
    """Histograms by label tuple, as plain lists: [sum, count in bucket 0, …, count past the last]."""

    def __init__(self, name: str, doc: str, labels: list[str], buckets: tuple[float, ...]):
        self.name, self.doc, self.labels, self.buckets = name, doc, labels, buckets
        self.series: dict[tuple, list[float]] = {}

    def observe(self, key: tuple, seconds: float) -> None:
        h = self.series.get(key)
        if h is None:
            h = self.series[key] = [0.0] * (len(self.buckets) + 2)
        h[0] += seconds
        h[1 + bisect_left(self.buckets, seconds)] += 1

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, h in self.series.items():
            running, cumulative = 0.0, []
            for le, n in zip([*map(str, self.buckets), "+Inf"], h[1:]):
                running += n
                cumulative.append((le, running))
            fam.add_metric(list(key), cumulative, h[0])
        return fam


class APIMetrics:
    def __init__(self, registry: Registry):
        self.kinds = registry
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests: dict[tuple, int] = {}  # labels + (code,) -> count
        self.latency = Histograms("apiserver_request_duration_seconds", "Response latency distribution in seconds "
                                  "for each verb, group, version, resource, subresource, scope and component.",
                                  REQUEST_LABELS, REQUEST_BUCKETS)
        self.store_latency = Histograms("etcd_request_duration_seconds", "Store request latency in seconds for "
                                        "each operation and object type.", ["operation", "type"], STORE_BUCKETS)
        self.inflight = {"readOnly": 0, "mutating": 0}
        self.watchers: dict[tuple[str, str, str], int] = {}
        self.object_counts: dict[str, int] = {}
        self.registry.register(_Families(self))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ requests
    def request(self, method: str, labels: tuple[str, ...], code: int, seconds: float) -> None:
        """One finished request. ``labels``: verb, group, version, resource, subresource, scope, component."""
        key = labels + (code,)
        self.requests[key] = self.requests.get(key, 0) + 1
        if labels[0] not in UNTIMED:
            self.latency.observe(labels, seconds)

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
        self.store_latency.observe((operation, typ), seconds)

    async def count_objects(self, store: Store) -> None:
        """apiserver_storage_objects, counted when /metrics is read."""
        counts = {}
        for r in self.kinds.all():
            name = r.group_resource
            if name not in counts:
                counts[name] = await store.count(r.prefix())
        self.object_counts = counts


class _Families:
    def __init__(self, m: APIMetrics):
        self.m = m

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily("apiserver_request", "Counter of apiserver requests broken out for each "
                                       "verb, group, version, resource, scope, component, and HTTP response code.",
                                       labels=REQUEST_LABELS + ["code"])
        for key, n in self.m.requests.items():
            requests.add_metric([*key[:-1], str(key[-1])], n)
        yield from (requests, self.m.latency.family(), self.m.store_latency.family())
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
