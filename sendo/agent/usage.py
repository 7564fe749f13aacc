"""Resource usage of the node and of every running container, sampled on a cadence.

What the kubelet's cAdvisor does, cut to CPU and memory:

* process runtime: a container is its main process and every descendant. One pass over
  `/proc/<pid>/stat` per sample gives each process's parent, CPU time (utime + stime of
  itself and of its reaped children, so the sum does not drop when a child exits) and
  resident set; a container's figure is the sum over its process tree.
* docker runtime: the container's cgroup (found from `/proc/<pid>/cgroup` of its main
  process): `cpuacct.usage` and `memory.usage_in_bytes` minus `total_inactive_file`
  (the working set) on cgroups v1; `cpu.stat` usage_usec and `memory.current` minus
  `inactive_file` on v2.
* node: `/proc/stat` (all CPU time but idle and iowait) and `/proc/meminfo`
  (MemTotal - MemAvailable).

A rate needs two samples: usage in nanocores is the CPU time between the last two
samples of the same container run over the time between them (for a run seen once, its
CPU time since it started). The figures are served as the kubelet serves them: the
Summary API shape at `/stats/summary` (JSON, read by the API server's metrics.k8s.io)
and Prometheus text at `/metrics/resource`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_INTERVAL = 15.0


@dataclass
class Sample:
    at: float  # epoch seconds
    cpu_seconds: float  # cumulative CPU time
    working_set: int  # bytes


@dataclass
class Usage:
    """The last sample of one container run (or of the node) and its CPU rate."""

    sample: Sample
    nano_cores: int
    started_at: float = 0.0  # the run's start, epoch seconds (containers)


# ---------------------------------------------------------------------------- readers

def proc_table(root: str = "/proc") -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds incl. reaped children, resident bytes), one pass."""
    out: dict[int, tuple[int, float, int]] = {}
    for name in os.listdir(root):
        if not name.isdigit():
            continue
        try:
            with open(f"{root}/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:  # exited while we looked
            continue
        fields = raw[raw.rfind(b")") + 2:].split()
        # after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
        try:
            ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            out[int(name)] = (int(fields[1]), ticks / CLK_TCK, int(fields[21]) * PAGE)
        except (IndexError, ValueError):
            continue
    return out


def tree_usage(table: dict[int, tuple[int, float, int]], children: dict[int, list[int]],
               root: int) -> tuple[float, int] | None:
    """CPU seconds and resident bytes of `root` and its descendants; None if root is gone."""
    if root not in table:
        return None
    cpu, rss, todo = 0.0, 0, [root]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        _, c, r = table[pid]
        cpu += c
        rss += r
        todo.extend(children.get(pid, ()))
    return cpu, rss


def children_of(table: dict[int, tuple[int, float, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        out.setdefault(ppid, []).append(pid)
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _stat_value(text: str, key: str) -> int:
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return 0


def cgroup_usage(pid: int, root: str = "/sys/fs/cgroup") -> tuple[float, int] | None:
    """CPU seconds and working-set bytes of the cgroup(s) the process is in; None if gone."""
    try:
        lines = _read(f"/proc/{pid}/cgroup").splitlines()
    except OSError:
        return None
    v1: dict[str, str] = {}
    v2 = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        for c in controllers.split(","):
            v1[c] = path
    try:
        if "cpuacct" in v1 and "memory" in v1:
            cpu = int(_read(f"{root}/cpuacct{v1['cpuacct']}/cpuacct.usage")) / 1e9
            mem_dir = f"{root}/memory{v1['memory']}"
            usage = int(_read(f"{mem_dir}/memory.usage_in_bytes"))
            inactive = _stat_value(_read(f"{mem_dir}/memory.stat"), "total_inactive_file")
            return cpu, max(usage - inactive, 0)
        if v2 is not None:
            d = f"{root}{v2}" if os.path.exists(f"{root}/cgroup.controllers") else f"{root}/unified{v2}"
            cpu = _stat_value(_read(f"{d}/cpu.stat"), "usage_usec") / 1e6
            usage = int(_read(f"{d}/memory.current"))
            inactive = _stat_value(_read(f"{d}/memory.stat"), "inactive_file")
            return cpu, max(usage - inactive, 0)
    except (OSError, ValueError):
        return None
    return None


def node_usage() -> tuple[float, int]:
    """The node's busy CPU seconds (all but idle and iowait) and MemTotal - MemAvailable."""
    first = _read("/proc/stat").split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in first]
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # guest time is in user already
    mem: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        if k in ("MemTotal", "MemAvailable"):
            mem[k] = int(v.split()[0]) * 1024
    return busy / CLK_TCK, mem.get("MemTotal", 0) - mem.get("MemAvailable", 0)


def rate(prev: Sample | None, cur: Sample, started_at: float) -> int:
    """Nanocores between two samples; over the whole run for a run seen once."""
    if prev is not None and cur.at > prev.at and cur.cpu_seconds >= prev.cpu_seconds:
        return int((cur.cpu_seconds - prev.cpu_seconds) / (cur.at - prev.at) * 1e9)
    span = cur.at - started_at
    return int(cur.cpu_seconds / span * 1e9) if started_at and span > 0 else 0


# ---------------------------------------------------------------------------- the sampler

@dataclass
class RunningContainer:
    """What the sampler needs to know about one running container."""

    namespace: str
    pod: str
    pod_uid: str
    name: str
    run_id: str  # the handle id: a restart is a new run (its CPU counter starts again)
    pid: int
    source: str  # "proctree" or "cgroup"
    started_at: float


class UsageSampler:
    """Samples every `interval` seconds; `containers()` says what runs on the node now."""

    def __init__(self, node_name: str, containers: Callable[[], Iterable[RunningContainer]],
                 interval: float = DEFAULT_INTERVAL):
        self.node_name = node_name
        self.containers = containers
        self.interval = interval
        self.node: Usage | None = None
        self.usage: dict[tuple[str, str], Usage] = {}  # (pod uid, container) -> usage of its current run
        self._runs: dict[tuple[str, str], str] = {}  # (pod uid, container) -> run id sampled
        self._pods: dict[str, tuple[str, str]] = {}  # pod uid -> (namespace, name)
        self._task: asyncio.Task | None = None
        self.samples = 0
        self.sample_seconds = 0.0  # CPU time the sampling itself took (thread time)

    async def start(self) -> None:
        await self.sample()
        self._task = asyncio.create_task(self._loop(), name="usage-sampler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the sampling cadence (--metrics-interval)
            try:
                await self.sample()
            except Exception:
                log.exception("resource usage sampling failed")

    async def sample(self) -> None:
        running = list(self.containers())
        await asyncio.to_thread(self._sample, running)

    def _sample(self, running: list[RunningContainer]) -> None:
        t0 = time.thread_time()
        now = time.time()
        table = children = None
        if any(c.source != "cgroup" for c in running):
            table = proc_table()
            children = children_of(table)
        fresh: dict[tuple[str, str], Usage] = {}
        runs: dict[tuple[str, str], str] = {}
        pods: dict[str, tuple[str, str]] = {}
        for c in running:
            if c.source == "cgroup":
                got = cgroup_usage(c.pid)
            else:
                assert table is not None and children is not None
                got = tree_usage(table, children, c.pid)
            if got is None:
                continue
            key = (c.pod_uid, c.name)
            cur = Sample(now, got[0], got[1])
            old = self.usage.get(key)
            prev = old.sample if old is not None and self._runs.get(key) == c.run_id else None
            fresh[key] = Usage(cur, rate(prev, cur, c.started_at), c.started_at)
            runs[key] = c.run_id
            pods[c.pod_uid] = (c.namespace, c.pod)
        cpu, mem = node_usage()
        cur = Sample(now, cpu, mem)
        node = Usage(cur, rate(self.node.sample if self.node else None, cur, 0.0))
        if self.node is None:  # first sample: the rate since boot
            node.nano_cores = int(cpu / max(now - _boot_time(), 1.0) * 1e9)
        self.usage, self._runs, self._pods, self.node = fresh, runs, pods, node
        self.samples += 1
        self.sample_seconds += time.thread_time() - t0

    # ------------------------------------------------------------------ views
    def summary(self) -> dict[str, Any]:
        """The kubelet's Summary API (/stats/summary), CPU and memory only."""
        window = f"{self.interval:g}s"
        out: dict[str, Any] = {"node": {"nodeName": self.node_name, "window": window}, "pods": []}
        if self.node is not None:
            out["node"].update(_figures(self.node))
        pods: dict[str, dict[str, Any]] = {}
        for (uid, cname), u in sorted(self.usage.items()):
            ns, name = self._pods[uid]
            pod = pods.setdefault(uid, {"podRef": {"name": name, "namespace": ns, "uid": uid},
                                        "window": window, "containers": []})
            pod["containers"].append({"name": cname, "startTime": _rfc3339(u.started_at), **_figures(u)})
        out["pods"] = list(pods.values())
        return out

    def collectors(self) -> "ResourceCollector":
        return ResourceCollector(self)


def _figures(u: Usage) -> dict[str, Any]:
    at = _rfc3339(u.sample.at)
    return {"cpu": {"time": at, "usageNanoCores": u.nano_cores,
                    "usageCoreNanoSeconds": int(u.sample.cpu_seconds * 1e9)},
            "memory": {"time": at, "workingSetBytes": u.sample.working_set}}


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _boot_time() -> float:
    for line in _read("/proc/stat").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


class ResourceCollector:
    """`/metrics/resource` as the kubelet serves it: counters of CPU seconds and gauges of
    working-set bytes for the node, each pod and each container, stamped with the time of
    their sample."""

    def __init__(self, sampler: UsageSampler):
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        s = self.sampler
        node_cpu = CounterMetricFamily("node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in "
                                       "core-seconds")
        node_mem = GaugeMetricFamily("node_memory_working_set_bytes", "Current working set of the node in bytes")
        if s.node is not None:
            node_cpu.add_metric([], s.node.sample.cpu_seconds, timestamp=s.node.sample.at)
            node_mem.add_metric([], s.node.sample.working_set, timestamp=s.node.sample.at)
        labels = ["container", "pod", "namespace"]
        c_cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed by the container "
                                    "in core-seconds", labels=labels)
        c_mem = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set of the container in "
                                  "bytes", labels=labels)
        c_start = GaugeMetricFamily("container_start_time_seconds", "Start time of the container since unix epoch "
                                    "in seconds", labels=labels)
        p_cpu = CounterMetricFamily("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the pod in "
                                    "core-seconds", labels=["pod", "namespace"])
        p_mem = GaugeMetricFamily("pod_memory_working_set_bytes", "Current working set of the pod in bytes",
                                  labels=["pod", "namespace"])
        pods: dict[str, list[Usage]] = {}
        for (uid, cname), u in sorted(s.usage.items()):
            ns, name = s._pods[uid]
            at = u.sample.at
            c_cpu.add_metric([cname, name, ns], u.sample.cpu_seconds, timestamp=at)
            c_mem.add_metric([cname, name, ns], u.sample.working_set, timestamp=at)
            c_start.add_metric([cname, name, ns], u.started_at, timestamp=at)
            pods.setdefault(uid, []).append(u)
        for uid, us in pods.items():
            ns, name = s._pods[uid]
            at = max(u.sample.at for u in us)
            p_cpu.add_metric([name, ns], sum(u.sample.cpu_seconds for u in us), timestamp=at)
            p_mem.add_metric([name, ns], sum(u.sample.working_set for u in us), timestamp=at)
        scrape = GaugeMetricFamily("scrape_error", "1 if there was an error while getting container metrics, "
                                   "0 otherwise")
        scrape.add_metric([], 0 if s.node is not None else 1)
        yield from (node_cpu, node_mem, c_cpu, c_mem, c_start, p_cpu, p_mem, scrape)


def resource_registry(sampler: UsageSampler) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(sampler.collectors())  # type: ignore[arg-type]
    return reg
