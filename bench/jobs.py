"""`make bench` figures of the Job and CronJob controllers, on hollow nodes.

* job_completions_per_s: a Job of 1,000 completions, parallelism 100. Hollow nodes
  (sendo/agent/hollow.py) run each pod for `hollow.sendo.dev/run-seconds` (0 here) and
  report it Succeeded, so the figure is the control plane's: pod creation, scheduling,
  status, counting with the tracking finalizer. Measured from the Job's creation to
  its Complete condition seen by a watch.
* cronjob_fire_delay_p99_ms: N CronJobs with the schedule `* * * * *` (the finest
  Kubernetes accepts) all due at the same minute boundary; a firing's delay is when a
  watch on Jobs sees its Job minus the scheduled second. One burst of N firings takes
  at most a minute of wall time.

Usage: python -m bench.jobs [--tiny] [--only job|cron]; prints the figures (JSON last).
Every process is started here and stopped by PID; all traffic stays on loopback.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time

import psutil

from bench.harness import percentile, report, start_hollow, start_server
from sendo.client import kind

JOBS, CRONJOBS = kind("jobs", "batch"), kind("cronjobs", "batch")
FULL = dict(nodes=20, completions=1000, parallelism=100, cronjobs=20)
TINY = dict(nodes=2, completions=20, parallelism=5, cronjobs=2)
GOALS = {"job_completions_per_s": ("≥", 300), "cronjob_fire_delay_p99_ms": ("≤", 1000)}


def log(msg: str) -> None:
    print(f"[bench.jobs {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pod_template(run_seconds: float = 0.0) -> dict:
    return {"metadata": {"annotations": {"hollow.sendo.dev/run-seconds": str(run_seconds)}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "none", "command": ["true"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]}}


def _complete(job: dict) -> bool:
    return any(c.get("type") == "Complete" and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each process and its children, by the
    sendo command they run (server, controllers, agent)."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [p] + p.children(recursive=True):
                name = q.cmdline()[3] if len(q.cmdline()) > 3 else str(q.pid)
                out[name] = out.get(name, 0.0) + sum(q.cpu_times()[:2])
        except psutil.Error:
            continue
    return out


async def bench_job(client, size: dict, figures: dict, pids: list[int]) -> None:
    n, par = size["completions"], size["parallelism"]
    rv = (await client.list(JOBS, "default"))["metadata"]["resourceVersion"]
    done = asyncio.Event()
    seen = {"succeeded": 0}

    async def watch():
        async for typ, job in client.watch(JOBS, "default", resourceVersion=rv, fieldSelector="metadata.name=burst"):
            seen["succeeded"] = (job.get("status") or {}).get("succeeded") or 0
            if _complete(job):
                done.set()
                return
    w = asyncio.create_task(watch())
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "burst"},
            "spec": {"completions": n, "parallelism": par, "backoffLimit": 0, "template": pod_template()}}
    cpu0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    await client.create(JOBS, body, "default")
    last = (0, time.perf_counter())
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 5)
        except asyncio.TimeoutError:
            log(f"  {seen['succeeded']}/{n} succeeded after {time.perf_counter() - t0:.0f}s")
            if seen["succeeded"] == last[0] and time.perf_counter() - last[1] > 120:
                raise TimeoutError(f"the Job is stuck at {seen['succeeded']}/{n} completions") from None
            if seen["succeeded"] != last[0]:
                last = (seen["succeeded"], time.perf_counter())
    took = time.perf_counter() - t0
    cpu = {k: round(v - cpu0.get(k, 0.0), 2) for k, v in cpu_seconds(pids).items()}
    w.cancel()
    job = await client.get(JOBS, "default", "burst")
    st = job["status"]
    assert st.get("succeeded") == n and not st.get("failed"), st
    figures["job_completions_per_s"] = round(n / took, 1)
    figures["job_cpu_seconds_per_1000_completions"] = round(sum(cpu.values()) * 1000 / n, 2)
    log(f"CPU seconds used meanwhile: {cpu} (load average {os.getloadavg()[0]:.1f})")
    log(f"Job of {n} completions, parallelism {par}: {took:.2f}s, {figures['job_completions_per_s']} completions/s")


async def bench_cron(client, size: dict, figures: dict) -> None:
    count = size["cronjobs"]
    now = dt.datetime.now(dt.timezone.utc)
    if now.second >= 50:  # too close to the boundary to create them all before it: take the next
        await asyncio.sleep(61 - now.second)  # wait for the start of the next minute (real clock)
    rv = (await client.list(JOBS, "default"))["metadata"]["resourceVersion"]
    seen: dict[str, float] = {}
    all_seen = asyncio.Event()

    async def watch():
        async for typ, job in client.watch(JOBS, "default", resourceVersion=rv, labelSelector="bench=cron"):
            name = job["metadata"]["name"]
            if typ == "ADDED" and name not in seen:
                seen[name] = time.time()
                if len(seen) >= count:
                    all_seen.set()
                    return
    w = asyncio.create_task(watch())
    for i in range(count):
        await client.create(CRONJOBS, {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"cron-{i}"},
            "spec": {"schedule": "* * * * *", "timeZone": "Etc/UTC",
                     "jobTemplate": {"metadata": {"labels": {"bench": "cron"}},
                                     "spec": {"template": pod_template()}}}}, "default")
    due = (dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1))
    log(f"{count} CronJobs due at {due:%H:%M:%S}")
    await asyncio.wait_for(all_seen.wait(), (due - dt.datetime.now(dt.timezone.utc)).total_seconds() + 60)
    w.cancel()
    delays = []
    for name, at in seen.items():
        scheduled = int(name.rsplit("-", 1)[1]) * 60
        assert scheduled == int(due.timestamp()), (name, due)
        delays.append((at - scheduled) * 1000)
    figures["cronjob_fire_delay_p99_ms"] = round(percentile(delays, 99), 1)
    figures["cronjob_fire_delay_p50_ms"] = round(percentile(delays, 50), 1)
    log(f"{count} CronJob firings: delay p50 {figures['cronjob_fire_delay_p50_ms']} ms, "
        f"p99 {figures['cronjob_fire_delay_p99_ms']} ms")


async def run(size: dict, only: str | None) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="sendo-bench-jobs-") as root:
        c = start_server(root)
        hollow = None
        client = c.client()
        try:
            hollow = start_hollow(c, size["nodes"], root)
            if only in (None, "job"):
                await bench_job(client, size, figures, [c.server.pid, hollow.pid])
            if only in (None, "cron"):
                await bench_cron(client, size, figures)
        finally:
            await client.close()
            if hollow:
                hollow.stop()
            c.server.stop()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, to check the harness works")
    ap.add_argument("--only", choices=["job", "cron"], help="one of the two figures")
    a = ap.parse_args()
    figures = asyncio.run(run(TINY if a.tiny else FULL, a.only))
    report(figures, GOALS, None if a.tiny or a.only else "jobs")


if __name__ == "__main__":
    main()
