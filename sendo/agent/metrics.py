"""The agent's own Prometheus metrics (`/metrics`), with the kubelet's names: pods and
containers running, pod start duration, probe results, runtime operation latency."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# the kubelet's buckets for pod start duration (seconds)
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900,
                     1200, 1800, 2700, 3600)


class AgentMetrics:
    def __init__(self, counts: Callable[[], tuple[int, dict[str, int]]]):
        """`counts()` gives (running pods, containers by state) at scrape time."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.pod_start = Histogram("kubelet_pod_start_duration_seconds",
                                   "Duration in seconds from the agent seeing a pod to all its containers "
                                   "running (the pod Running)", buckets=POD_START_BUCKETS, registry=self.registry)
        self.probes = Counter("prober_probe", "Cumulative number of a liveness, readiness or startup probe "
                              "for a container by result", ["probe_type", "result", "container", "pod", "namespace"],
                              registry=self.registry)
        self.runtime_ops = Histogram("kubelet_runtime_operations_duration_seconds",
                                     "Duration in seconds of runtime operations, by operation type",
                                     ["operation_type"], registry=self.registry)
        self.runtime_errors = Counter("kubelet_runtime_operations_errors", "Cumulative number of runtime "
                                      "operation errors by operation type", ["operation_type"],
                                      registry=self.registry)
        self.registry.register(_Counts(counts))  # type: ignore[arg-type]

    def probe_result(self, probe_type: str, result: str, container: str, pod: str, namespace: str) -> None:
        self.probes.labels(probe_type, result, container, pod, namespace).inc()

    def runtime_op(self, operation: str, seconds: float, ok: bool = True) -> None:
        self.runtime_ops.labels(operation).observe(seconds)
        if not ok:
            self.runtime_errors.labels(operation).inc()


class _Counts:
    def __init__(self, counts: Callable[[], tuple[int, dict[str, int]]]):
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        pods, containers = self.counts()
        p = GaugeMetricFamily("kubelet_running_pods", "Number of pods that have a running pod sandbox")
        p.add_metric([], pods)
        c = GaugeMetricFamily("kubelet_running_containers", "Number of containers currently running",
                              labels=["container_state"])
        for state, n in sorted(containers.items()):
            c.add_metric([state], n)
        yield p
        yield c


class DNSCollector:
    """The cluster DNS server's answers, with CoreDNS' metric name."""

    def __init__(self, dns: Callable[[], Any]):
        self.dns = dns

    def collect(self) -> Iterator[Any]:
        fam = CounterMetricFamily("coredns_dns_responses", "Counter of response status codes.",
                                  labels=["server", "zone", "rcode"])
        dns = self.dns()
        if dns is not None:
            for (zone, rcode), n in sorted(dns.responses.items()):
                fam.add_metric([f"dns://{dns.address}", zone, rcode], n)
        yield fam


class ProxyCollector:
    """The service proxy's new connections (TCP) and flows (UDP) per Service port and
    result, and when it last synced its listeners (kube-proxy's name for that)."""

    def __init__(self, proxy: Callable[[], Any]):
        self.proxy = proxy

    def collect(self) -> Iterator[Any]:
        conns = CounterMetricFamily("sendo_proxy_connections", "New connections (TCP) and flows (UDP) the "
                                    "service proxy took, by result (forwarded, no_endpoint).",
                                    labels=["service", "protocol", "result"])
        synced = GaugeMetricFamily("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                   "The last time the service proxy made its listeners match the Services.")
        proxy = self.proxy()
        if proxy is not None:
            for (service, protocol, result), n in sorted(proxy.counts.items()):
                conns.add_metric([service, protocol, result], n)
            synced.add_metric([], proxy.last_sync)
        yield conns
        yield synced


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
