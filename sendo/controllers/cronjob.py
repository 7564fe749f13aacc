"""CronJob controller: create a Job at each time the schedule names.

The schedule is read with croniter (five fields, or a descriptor such as `@hourly`;
`@every <duration>` as Kubernetes' parser allows it) in `spec.timeZone`, or in the
controller's local time zone when it is unset, as kube-controller-manager does.

Each reconcile looks for the most recent scheduled time after `status.lastScheduleTime`
(or the CronJob's creation) that has come: only that one runs, however many were
missed while the controller was down, and more than 100 missed times are reported with
a Warning Event (TooManyMissedTimes), Kubernetes' rule. A time older than
`startingDeadlineSeconds` is skipped. `concurrencyPolicy` Forbid skips a run while a
Job is active, Replace deletes the active Jobs first. A Job is named
`<cronjob>-<scheduled time in minutes since the epoch>`, so a run is created at most
once even if the controller restarts between creating it and writing the status.
Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are
deleted, oldest first. The loop then sleeps until the next scheduled time.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import time
import zoneinfo
from typing import Any, Callable

from croniter import croniter

from ..client import ApiError, kind
from ..client.events import EventRecorder
from ..kinds.meta import parse_time, rfc3339
from .base import Controller, owner_key, split_key
from .job import finished_condition, newer_of
from .podutil import controlled_by, controller_ref

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MAX_MISSED = 100
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
EXPECTATION_TTL = 30.0
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def go_duration_seconds(text: str) -> float:
    """A Go duration ("1h30m", "90s") in seconds."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(body))


class Schedule:
    """The times a CronJob's schedule names, in its time zone."""

    def __init__(self, spec: str, tz: dt.tzinfo):
        self.tz = tz
        self.every: float | None = None
        if spec.startswith("@every "):
            # Go's robfig/cron: delays below one second are rounded up to one second
            self.every = max(1.0, float(int(go_duration_seconds(spec[len("@every "):]))))
            self.expr = ""
        else:
            self.expr = {"@midnight": "@daily", "@annually": "@yearly"}.get(spec, spec)
            croniter(self.expr)  # raises on a schedule croniter cannot read

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first scheduled time strictly after t."""
        if self.every is not None:
            return t.replace(microsecond=0) + dt.timedelta(seconds=self.every)
        return croniter(self.expr, t.astimezone(self.tz)).get_next(dt.datetime).astimezone(dt.timezone.utc)

    def latest_at_or_before(self, t: dt.datetime, after: dt.datetime) -> dt.datetime:
        """The last scheduled time at or before t (for a schedule known to fire after `after`)."""
        if self.every is not None:
            first = self.next_after(after)
            steps = int((t - first).total_seconds() // self.every)
            return first + dt.timedelta(seconds=steps * self.every)
        moment = (t + dt.timedelta(microseconds=1)).astimezone(self.tz)
        return croniter(self.expr, moment).get_prev(dt.datetime).astimezone(dt.timezone.utc)


def unmet_time(schedule: Schedule, earliest: dt.datetime, now: dt.datetime) -> tuple[dt.datetime | None, int]:
    """The most recent scheduled time in (earliest, now] and how many there were
    (an estimate past MAX_MISSED, as Kubernetes makes it)."""
    t = schedule.next_after(earliest)
    if t > now:
        return None, 0
    count, last = 0, t
    while t <= now:
        count, last = count + 1, t
        if count > MAX_MISSED:
            second = schedule.next_after(schedule.next_after(earliest))
            first = schedule.next_after(earliest)
            step = max((second - first).total_seconds(), 1.0)
            count = int((now - first).total_seconds() // step) + 1
            return schedule.latest_at_or_before(now, earliest), count
        t = schedule.next_after(t)
    return last, count


def go_rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339 in t's zone: "2026-01-01T09:00:00+09:00", "Z" for UTC."""
    off = t.utcoffset() or dt.timedelta(0)
    if not off:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign, mins = ("+" if off > dt.timedelta(0) else "-"), abs(int(off.total_seconds())) // 60
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{mins // 60:02d}:{mins % 60:02d}"


def job_name(cronjob: str, scheduled: dt.datetime) -> str:
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def local_zone() -> dt.tzinfo:
    return dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


class CronJobController(Controller):
    name = "cronjob-controller"
    workers = 16  # CronJobs due at the same second fire side by side, not one after another

    def __init__(self, client, informers, now: Callable[[], dt.datetime] = _now):
        self.now = now
        super().__init__(client, informers)

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.cj_kind = kind("cronjobs", "batch")
        self.job_kind = kind("jobs", "batch")
        self.cj_inf = self.informers.get(self.cj_kind)
        self.job_inf = self.informers.get(self.job_kind)
        self.cj_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.job_inf.add_handler(self._on_job)
        self.recorder = EventRecorder(self.client, self.name)
        self._written: dict[str, Obj] = {}  # key -> the CronJob as our last status write returned it
        self._created: dict[str, dict[str, tuple[float, Obj]]] = {}  # key -> job name -> (when, job)

    def _on_job(self, typ: str, job: Obj, old: Obj | None) -> None:
        key = owner_key(job, "CronJob")
        if key:
            self.queue.add(key)

    def _fresh(self, key: str) -> Obj | None:
        return newer_of(self.cj_inf.get(key), key, self._written)

    def owned_jobs(self, cj: Obj) -> list[Obj]:
        uid, ns = cj["metadata"]["uid"], cj["metadata"]["namespace"]
        return [j for j in self.job_inf.list() if j["metadata"].get("namespace") == ns and controlled_by(j, uid)]

    async def reconcile(self, key: str) -> float | None:
        cj = self._fresh(key)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            self._created.pop(key, None)
            return None
        ns, name = split_key(key)
        spec = cj.get("spec") or {}
        status = copy.deepcopy(cj.get("status") or {})
        jobs = self.owned_jobs(cj)
        names = {j["metadata"]["name"] for j in jobs}
        created = self._created.setdefault(key, {})
        for n, (t, _) in list(created.items()):
            if n in names or time.monotonic() - t > EXPECTATION_TTL:
                del created[n]
        running = [j for j in jobs if not finished_condition(j) and not j["metadata"].get("deletionTimestamp")]
        running += [j for _, j in created.values()]
        for j in jobs:
            cond = finished_condition(j)
            if cond and cond["type"] == "Complete":
                done_at = (j.get("status") or {}).get("completionTime") or cond.get("lastTransitionTime")
                if done_at and (not status.get("lastSuccessfulTime")
                                or parse_time(done_at) > parse_time(status["lastSuccessfulTime"])):
                    status["lastSuccessfulTime"] = done_at
        now = self.now()
        try:
            tz = zoneinfo.ZoneInfo(spec["timeZone"]) if spec.get("timeZone") else local_zone()
            schedule = Schedule(spec.get("schedule") or "", tz)
        except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError) as e:
            self.recorder.emit(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: {spec.get('schedule')}: {e}")
            await self._write(key, cj, status, running)
            return None
        if spec.get("suspend"):
            await self._write(key, cj, status, running)
            await self._clean_history(cj, jobs)
            return None
        last = status.get("lastScheduleTime")
        earliest = parse_time(last) if last else parse_time(cj["metadata"]["creationTimestamp"])
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=deadline))
        scheduled, missed = unmet_time(schedule, earliest, now)
        if missed > MAX_MISSED:
            self.recorder.emit(cj, "Warning", "TooManyMissedTimes",
                               f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds "
                               "or check clock skew")
        if scheduled is not None:
            running = await self._run(cj, ns, name, spec, status, scheduled, now, running)
        await self._write(key, cj, status, running)
        await self._clean_history(cj, jobs)
        nxt = schedule.next_after(now)
        return max((nxt - self.now()).total_seconds(), 0.0) + 0.001

    async def _run(self, cj: Obj, ns: str | None, name: str, spec: Obj, status: Obj, scheduled: dt.datetime,
                   now: dt.datetime, running: list[Obj]) -> list[Obj]:
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (now - scheduled).total_seconds() > deadline:
            self.recorder.emit(cj, "Warning", "MissSchedule",
                               f"Missed scheduled time to start a job: {rfc3339(scheduled)}")
            return running
        policy = spec.get("concurrencyPolicy") or "Allow"
        if running and policy == "Forbid":
            self.recorder.emit(cj, "Normal", "JobAlreadyActive",
                               "Not starting job because prior execution is running and concurrency policy is Forbid")
            return running
        if running and policy == "Replace":
            for j in running:
                await self.client.delete(self.job_kind, ns, j["metadata"]["name"], propagationPolicy="Background")
                self.recorder.emit(cj, "Normal", "SuccessfulDelete", f"Deleted job {j['metadata']['name']}")
            running = []
        tmpl = spec.get("jobTemplate") or {}
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        jname = job_name(name, scheduled)
        meta.update(name=jname, namespace=ns, ownerReferences=[controller_ref(cj)])
        tz = zoneinfo.ZoneInfo(spec["timeZone"]) if spec.get("timeZone") else local_zone()
        meta.setdefault("annotations", {})[SCHEDULED_AT] = go_rfc3339(scheduled.astimezone(tz))
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}
        try:
            job = await self.client.create(self.job_kind, body, ns)
            self.recorder.emit(cj, "Normal", "SuccessfulCreate", f"Created job {jname}")
            self._created.setdefault(f"{ns}/{name}", {})[jname] = (time.monotonic(), job)
            running = running + [job]
        except ApiError as e:
            if e.status != 409:  # 409: this run exists already (created before a restart)
                self.recorder.emit(cj, "Warning", "FailedCreate", f"Error creating job: {e.body.get('message')}")
                raise
        status["lastScheduleTime"] = rfc3339(scheduled)
        return running

    async def _clean_history(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        for ctype, field, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                      ("Failed", "failedJobsHistoryLimit", 1)):
            limit = spec.get(field, default)
            if limit is None:
                continue
            done = [j for j in jobs if (finished_condition(j) or {}).get("type") == ctype
                    and not j["metadata"].get("deletionTimestamp")]
            done.sort(key=lambda j: (j.get("status") or {}).get("startTime") or j["metadata"]["creationTimestamp"])
            for j in done[:max(len(done) - limit, 0)]:
                m = j["metadata"]
                await self.client.delete(self.job_kind, m["namespace"], m["name"], propagationPolicy="Background")
                self.recorder.emit(cj, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")

    async def _write(self, key: str, cj: Obj, status: Obj, running: list[Obj]) -> None:
        refs = sorted(({"apiVersion": "batch/v1", "kind": "Job", "namespace": j["metadata"]["namespace"],
                        "name": j["metadata"]["name"], "uid": j["metadata"]["uid"]} for j in running),
                      key=lambda r: r["name"])
        if refs:
            status["active"] = refs
        else:
            status.pop("active", None)
        if status == (cj.get("status") or {}):
            return
        body = copy.deepcopy(cj)
        body["status"] = status
        self._written[key] = await self.client.update_status(self.cj_kind, body)

