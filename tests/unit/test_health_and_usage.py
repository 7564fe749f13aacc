"""Health checks (/healthz, /livez, /readyz with ?verbose, ?exclude, /readyz/<check>) and the
agent's usage sampler (process trees from /proc, rates between samples, the kubelet's
/metrics/resource text, parsed with prometheus_client's own parser)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from sendo.agent.usage import (RunningContainer, Sample, UsageSampler, children_of, proc_table, rate,
                               resource_registry, tree_usage)
from sendo.observe import Health, exposition


async def test_health_answers_like_kube_apiserver():
    h = Health()
    state = {"store": None}
    h.add("store", lambda: state["store"], live=True)

    async def slow_ok():
        return None
    h.add("informer-sync", slow_ok)
    assert await h.answer("/readyz", []) == (200, "ok")
    code, text = await h.answer("/readyz", [("verbose", "")])
    assert code == 200 and text.splitlines() == ["[+]ping ok", "[+]store ok", "[+]informer-sync ok",
                                                 "readyz check passed"]
    assert "[+]informer-sync" not in (await h.answer("/livez", [("verbose", "")]))[1]
    state["store"] = "cannot reach the store"
    code, text = await h.answer("/healthz", [])
    assert code == 500 and "[-]store failed: cannot reach the store" in text and text.endswith("healthz check failed\n")
    assert (await h.answer("/readyz", [("exclude", "store")]))[0] == 200
    assert (await h.answer("/readyz/store", []))[0] == 500
    assert await h.answer("/readyz/ping", []) == (200, "ok")
    assert (await h.answer("/readyz/nope", []))[0] == 404


async def test_a_check_that_raises_is_a_failed_check():
    h = Health()

    def broken():
        raise RuntimeError("boom")
    h.add("broken", broken)
    code, text = await h.answer("/readyz", [])
    assert code == 500 and "[-]broken failed: RuntimeError: boom" in text


def test_a_process_tree_sums_its_children():
    # burns 0.6 s of CPU (at most 20 s of wall time on a loaded machine), then sleeps
    burner = ("import time\nt=time.time()\nwhile time.process_time()<0.6 and time.time()-t<20: pass\n"
              "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys,time\n"
                               f"subprocess.Popen([sys.executable,'-c',{burner!r}])\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 30
        while True:
            table = proc_table()
            kids = children_of(table)
            cpu, rss = tree_usage(table, kids, parent.pid)
            if cpu >= 0.5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        own = table[parent.pid][1]
        assert cpu >= 0.5 > own  # the child's burn counts toward its parent's container
        assert rss > table[parent.pid][2]
        assert tree_usage(table, kids, 2 ** 22 + 7) is None
    finally:
        for p in __import__("psutil").Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait()


def test_rate_between_samples_and_over_a_first_run():
    assert rate(Sample(10.0, 1.0, 0), Sample(12.0, 2.0, 0), 0.0) == 500_000_000
    assert rate(None, Sample(12.0, 1.0, 0), 10.0) == 500_000_000  # seen once: since it started
    assert rate(Sample(10.0, 5.0, 0), Sample(12.0, 1.0, 0), 0.0) == 0  # a new run's counter: no negative rate


async def test_sampler_serves_summary_and_resource_metrics():
    me = RunningContainer("ns", "pod", "uid-1", "c", "run-1", os.getpid(), "proctree", time.time() - 5)
    s = UsageSampler("node-a", lambda: [me], interval=1.0)
    await s.sample()
    await asyncio.sleep(0.05)
    await s.sample()
    summary = s.summary()
    assert summary["node"]["nodeName"] == "node-a" and summary["node"]["memory"]["workingSetBytes"] > 0
    [pod] = summary["pods"]
    assert pod["podRef"] == {"name": "pod", "namespace": "ns", "uid": "uid-1"}
    assert pod["containers"][0]["name"] == "c" and pod["containers"][0]["memory"]["workingSetBytes"] > 0
    families = {f.name: f for f in text_string_to_metric_families(exposition(resource_registry(s)).decode())}
    [sample] = families["container_cpu_usage_seconds"].samples
    assert sample.labels == {"container": "c", "pod": "pod", "namespace": "ns"} and sample.value > 0
    assert families["node_memory_working_set_bytes"].samples[0].value > 0
    assert families["scrape_error"].samples[0].value == 0


def test_cgroup_usage_reads_the_v1_counters_of_the_process_cgroup(tmp_path):
    """What the docker runtime's containers are measured by: a cgroup of our own on this
    machine's v1 hierarchies (cpuacct, memory), a process burning CPU in it."""
    from pathlib import Path

    from sendo.agent.usage import cgroup_usage
    name = f"sendo-test-usage-{os.getpid()}"
    dirs = [Path("/sys/fs/cgroup/cpuacct") / name, Path("/sys/fs/cgroup/memory") / name]
    for d in dirs:
        d.mkdir()
    burner = subprocess.Popen([sys.executable, "-c", "import sys, time\nsys.stdin.readline()\nt = time.time()\n"
                               "x = bytearray(32 << 20)\nwhile time.process_time() < 0.5 and time.time() - t < 20: pass\n"
                               "time.sleep(30)"], stdin=subprocess.PIPE)
    try:
        for d in dirs:
            (d / "cgroup.procs").write_text(str(burner.pid))
        burner.stdin.write(b"go\n")
        burner.stdin.flush()
        deadline = time.monotonic() + 30
        while True:
            got = cgroup_usage(burner.pid)
            assert got is not None
            if got[0] >= 0.4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cpu, working_set = got
        assert 0.4 <= cpu < 5  # this cgroup's CPU, not the machine's
        assert 16 << 20 < working_set < 1 << 30  # the 32 MiB it holds, not the machine's memory
    finally:
        burner.kill()
        burner.wait()
        for d in dirs:
            for _ in range(50):  # the killed process leaves its cgroup a moment later
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    assert cgroup_usage(burner.pid) is None
