"""Job controller: run a Job's pods to completion.

Each reconcile counts the Job's finished pods, decides whether the Job has succeeded
or failed, and otherwise keeps the wanted number of pods running:

* NonIndexed: up to `parallelism` pods until `completions` have succeeded (or, with no
  `completions`, until one has succeeded and the rest have stopped);
* Indexed: one pod per completion index in [0, completions) that has not succeeded yet,
  each told its index (`JOB_COMPLETION_INDEX`, the annotation and label
  `batch.kubernetes.io/job-completion-index`).

Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer, as Kubernetes
does: a finished pod is first recorded by uid in `status.uncountedTerminatedPods`, then
its finalizer is removed, then it moves into the counters. A restart between any two
steps neither loses nor double-counts a pod: a pod without the finalizer and not in
the uncounted list has been counted already.

Failed pods are replaced after an exponential back-off (base 10 s doubling up to 6 min
by default; `SENDO_JOB_BACKOFF_SECONDS` or the `backoff_base` option sets the base).
A Job fails when more pods failed than `backoffLimit` (BackoffLimitExceeded), when it
ran longer than `activeDeadlineSeconds` (DeadlineExceeded) or when a `podFailurePolicy`
rule with action FailJob matched (PodFailurePolicy); `Ignore` rules leave a failure
uncounted. The decision is first written as FailureTarget / SuccessCriteriaMet, the
remaining pods are stopped, then Failed / Complete follows. `ttlSecondsAfterFinished`
deletes a finished Job (what Kubernetes' ttl-after-finished controller does).
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import os
import time
from typing import Any, Callable

from ..client import ApiError, kind
from ..client.events import EventRecorder
from ..kinds.meta import parse_time, rfc3339
from .base import Controller, owner_key, split_key
from .podutil import controlled_by, controller_ref, is_ready

log = logging.getLogger(__name__)
Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
BACKOFF_ENV = "SENDO_JOB_BACKOFF_SECONDS"
DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0
EXPECTATION_TTL = 30.0
BURST = 100  # pods created, patched or deleted concurrently per reconcile


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def condition_true(job: Obj, ctype: str) -> dict | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def finished_condition(job: Obj) -> dict | None:
    """The Complete or Failed condition of a finished Job."""
    return condition_true(job, "Complete") or condition_true(job, "Failed")


def set_condition(status: Obj, ctype: str, value: str, reason: str, message: str, now: str) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            c.update(status=value, reason=reason, message=message, lastProbeTime=now)
            return
    conds.append({"type": ctype, "status": value, "lastProbeTime": now, "lastTransitionTime": now,
                  "reason": reason, "message": message})


# ----------------------------------------------------------------- completion indexes

def parse_index_set(text: str | None) -> set[int]:
    """"0-2,5" -> {0, 1, 2, 5} (status.completedIndexes)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def format_index_set(indexes: set[int]) -> str:
    """{0, 1, 2, 5} -> "0-2,5": ascending intervals, as Kubernetes writes them."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def pod_index(pod: Obj) -> int | None:
    m = pod["metadata"]
    raw = (m.get("annotations") or {}).get(INDEX_KEY, (m.get("labels") or {}).get(INDEX_KEY))
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# ----------------------------------------------------------------- pods

def has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def outcome(pod: Obj) -> str | None:
    """"succeeded", "failed" or None (still active). A pod being deleted before it
    succeeded counts as failed, as Kubernetes counts it."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return "succeeded"
    if phase == "Failed" or pod["metadata"].get("deletionTimestamp"):
        return "failed"
    return None


def finish_time(pod: Obj) -> dt.datetime | None:
    st = pod.get("status") or {}
    times = [parse_time(t) for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])
             for t in [((c.get("state") or {}).get("terminated") or {}).get("finishedAt")] if t]
    if times:
        return max(times)
    ts = pod["metadata"].get("deletionTimestamp")
    return parse_time(ts) if ts else None


def _restarts(pod: Obj) -> int:
    st = pod.get("status") or {}
    return sum(c.get("restartCount", 0) or 0
               for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []))


def match_failure_policy(job: Obj, pod: Obj) -> tuple[str, str] | None:
    """(action, message) of the first podFailurePolicy rule a failed pod matches, or None."""
    rules = (((job.get("spec") or {}).get("podFailurePolicy")) or {}).get("rules") or []
    st = pod.get("status") or {}
    m = pod["metadata"]
    who = f"{m.get('namespace')}/{m['name']}"
    for i, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if codes is not None:
            values = set(codes.get("values") or [])
            for c in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                if codes.get("containerName") and c.get("name") != codes["containerName"]:
                    continue
                term = (c.get("state") or {}).get("terminated")
                if not term:
                    continue
                code = term.get("exitCode", 0)
                hit = code in values if codes.get("operator") == "In" else (code != 0 and code not in values)
                if hit:
                    return rule["action"], (f"Container {c.get('name')} for pod {who} failed with exit code {code} "
                                            f"matching {rule['action']} rule at index {i}")
        for pattern in rule.get("onPodConditions") or []:
            for cond in st.get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get("status", "True"):
                    return rule["action"], (f"Pod {who} has condition {cond['type']} matching {rule['action']} "
                                            f"rule at index {i}")
    return None


class _Expected:
    """Pods created (name -> (time, index)) or deleted (uid -> time) that the cache does not show yet."""

    def __init__(self) -> None:
        self.adds: dict[str, tuple[float, int | None]] = {}
        self.dels: dict[str, float] = {}

    def prune(self, names: set[str], live_uids: set[str]) -> None:
        now = time.monotonic()
        self.adds = {n: v for n, v in self.adds.items() if n not in names and now - v[0] < EXPECTATION_TTL}
        self.dels = {u: t for u, t in self.dels.items() if u in live_uids and now - t < EXPECTATION_TTL}


class JobController(Controller):
    name = "job-controller"
    workers = 4

    def __init__(self, client, informers, backoff_base: float | None = None, backoff_max: float = MAX_BACKOFF,
                 now: Callable[[], dt.datetime] = _now):
        self.backoff_base = backoff_base if backoff_base is not None else float(
            os.environ.get(BACKOFF_ENV) or DEFAULT_BACKOFF)
        self.backoff_max = backoff_max
        self.now = now
        super().__init__(client, informers)

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.job_kind = kind("jobs", "batch")
        self.pod_kind = kind("pods")
        self.job_inf = self.informers.get(self.job_kind)
        self.pod_inf = self.informers.get(self.pod_kind)
        self.job_inf.add_handler(self._on_job)
        self.pod_inf.add_handler(self._on_pod)
        self.recorder = EventRecorder(self.client, self.name)
        self._pods_by_owner: dict[str, dict[str, Obj]] = {}  # job uid -> pod key -> pod
        self._jobs_by_uid: dict[str, str] = {}  # job uid -> key
        self._written: dict[str, Obj] = {}  # key -> the Job as our last status write returned it
        self._expect: dict[str, _Expected] = {}
        self._unfinalized: dict[str, float] = {}  # pod uid -> when we removed its finalizer
        self._failures: dict[str, tuple[int, dt.datetime]] = {}  # job uid -> (failures since success, last)

    # ------------------------------------------------------------- watch handlers
    def _on_job(self, typ: str, job: Obj, old: Obj | None) -> None:
        uid, key = job["metadata"]["uid"], f"{job['metadata']['namespace']}/{job['metadata']['name']}"
        if typ == "DELETED":
            self._jobs_by_uid.pop(uid, None)
            self._written.pop(key, None)
            for p in list(self._pods_by_owner.get(uid, {}).values()):
                if has_finalizer(p):
                    self.queue.add("pod:" + f"{p['metadata']['namespace']}/{p['metadata']['name']}")
        else:
            self._jobs_by_uid[uid] = key
        self.queue.add(key)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        m = pod["metadata"]
        k = f"{m['namespace']}/{m['name']}"
        for p in (old, pod):
            for uid in _job_uids(p):
                bucket = self._pods_by_owner.get(uid)
                if bucket is not None:
                    bucket.pop(k, None)
                    if not bucket:
                        del self._pods_by_owner[uid]
        if typ == "DELETED" or not has_finalizer(pod):
            self._unfinalized.pop(m["uid"], None)
        if typ != "DELETED":
            for uid in _job_uids(pod):
                self._pods_by_owner.setdefault(uid, {})[k] = pod
        key = owner_key(pod, "Job")
        if key:
            exp = self._expect.get(key)
            if exp is not None:  # a pod we created has been seen: no longer in flight
                exp.adds.pop(m["name"], None)
            self.queue.add(key)
            if typ != "DELETED" and has_finalizer(pod) and not any(u in self._jobs_by_uid for u in _job_uids(pod)):
                self.queue.add("pod:" + k)  # its Job is gone: nothing will count it

    # ------------------------------------------------------------- helpers
    def _fresh(self, key: str) -> Obj | None:
        return newer_of(self.job_inf.get(key), key, self._written)

    def owned_pods(self, job: Obj) -> list[Obj]:
        uid = job["metadata"]["uid"]
        return [p for p in self._pods_by_owner.get(uid, {}).values() if controlled_by(p, uid)]

    def tracked(self, pod: Obj) -> bool:
        """Still carries our finalizer as far as we know (not removed by a write the cache has not shown)."""
        return has_finalizer(pod) and pod["metadata"]["uid"] not in self._unfinalized

    async def _unfinalize(self, pods: list[Obj]) -> list[Obj]:
        """Remove our finalizer from pods; returns those that no longer have it."""
        async def one(p: Obj) -> Obj | None:
            m = p["metadata"]
            try:
                await self.client.patch(self.pod_kind, m["namespace"], m["name"],
                                        {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}},
                                        type="strategic")
            except ApiError as e:
                if e.status != 404:
                    log.warning("%s: removing the finalizer of pod %s: %s", self.name, m["name"], e)
                    return None
            self._unfinalized[m["uid"]] = time.monotonic()
            return p
        done: list[Obj] = []
        for i in range(0, len(pods), BURST):
            done += [p for p in await asyncio.gather(*[one(p) for p in pods[i:i + BURST]]) if p is not None]
        if len(self._unfinalized) > 100_000:  # bounded: stale entries only cost a skipped count
            cutoff = time.monotonic() - EXPECTATION_TTL
            self._unfinalized = {u: t for u, t in self._unfinalized.items() if t > cutoff}
        return done

    async def _delete_pods(self, job: Obj, pods: list[Obj], exp: _Expected, why: str) -> None:
        """Stop pods the Job no longer wants; they are not counted (their finalizer goes first)."""
        if not pods:
            return
        await self._unfinalize([p for p in pods if self.tracked(p)])

        async def one(p: Obj) -> None:
            m = p["metadata"]
            exp.dels[m["uid"]] = time.monotonic()
            await self.client.delete(self.pod_kind, m["namespace"], m["name"])
            self.recorder.emit(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']} ({why})")
        for i in range(0, len(pods), BURST):
            await asyncio.gather(*[one(p) for p in pods[i:i + BURST]])

    async def _write_status(self, key: str, job: Obj, status: Obj) -> Obj:
        body = copy.deepcopy(job)
        body["status"] = status
        new = await self.client.update_status(self.job_kind, body)
        self._written[key] = new
        return new

    # ------------------------------------------------------------- reconcile
    async def reconcile(self, key: str) -> float | None:
        if key.startswith("pod:"):
            return await self._release_orphan(key[4:])
        job = self._fresh(key)
        if job is None:
            self._expect.pop(key, None)
            return None
        uid = job["metadata"]["uid"]
        pods = self.owned_pods(job)
        if job["metadata"].get("deletionTimestamp"):
            await self._unfinalize([p for p in pods if self.tracked(p)])
            return None
        job, counted, ignored = await self._record(key, job, pods)
        if finished_condition(job):
            self._expect.pop(key, None)
            self._failures.pop(uid, None)
            await self._unfinalize([p for p in pods if self.tracked(p)])
            return await self._expire(job)
        return await self._sync(key, job, pods, counted, ignored)

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pod_inf.get(pod_key)
        if pod is None or not self.tracked(pod) or any(u in self._jobs_by_uid for u in _job_uids(pod)):
            return None
        await self._unfinalize([pod])
        return None

    async def _record(self, key: str, job: Obj, pods: list[Obj]) -> tuple[Obj, list, list[Obj]]:
        """Step 1 of counting (see the module doc): finished pods that still carry the
        finalizer are written by uid into status.uncountedTerminatedPods. Returns the Job as
        written, those pods with their outcome and policy match, and the pods an Ignore rule
        matched (released uncounted)."""
        status = copy.deepcopy(job.get("status") or {})
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        known = set(unc_s) | set(unc_f)
        fresh: list[tuple[Obj, str, tuple | None]] = []
        ignored: list[Obj] = []
        for p in pods:
            if not self.tracked(p) or p["metadata"]["uid"] in known:
                continue
            out = outcome(p)
            if out is None:
                continue
            match = match_failure_policy(job, p) if out == "failed" else None
            if match and match[0] == "Ignore":
                ignored.append(p)
                continue
            fresh.append((p, out, match))
        if fresh:
            unc_s += [p["metadata"]["uid"] for p, out, _ in fresh if out == "succeeded"]
            unc_f += [p["metadata"]["uid"] for p, out, _ in fresh if out == "failed"]
            status["uncountedTerminatedPods"] = _uncounted(unc_s, unc_f)
            fail_job = next((m for _, _, m in fresh if m and m[0] == "FailJob"), None)
            if fail_job and not condition_true(job, "FailureTarget") and not finished_condition(job):
                set_condition(status, "FailureTarget", "True", "PodFailurePolicy", fail_job[1], rfc3339(self.now()))
            job = await self._write_status(key, job, status)
        return job, fresh, ignored

    def _release(self, status: Obj, pods: list[Obj], ignored: list[Obj]) -> asyncio.Future | None:
        """Step 2, started in the background: remove the finalizer of the recorded pods (and
        of the ignored ones) while the reconcile goes on deciding and creating."""
        unc = status.get("uncountedTerminatedPods") or {}
        pending = set(unc.get("succeeded") or []) | set(unc.get("failed") or [])
        holding = [p for p in pods if p["metadata"]["uid"] in pending and self.tracked(p)] + ignored
        return asyncio.ensure_future(self._unfinalize(holding)) if holding else None

    async def _count(self, status: Obj, pods: list[Obj], release: asyncio.Future | None, indexed: bool) -> None:
        """Step 3, in the status about to be written: recorded pods that no longer carry
        the finalizer (or are gone) move into succeeded / failed / completedIndexes."""
        if release is not None:
            await release
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        done = {u for u in unc_s + unc_f if u not in by_uid or not self.tracked(by_uid[u])}
        if not done:
            return
        succeeded = [u for u in unc_s if u in done]
        if indexed:
            completed = parse_index_set(status.get("completedIndexes"))
            completed |= {i for u in succeeded if u in by_uid for i in [pod_index(by_uid[u])] if i is not None}
            status["completedIndexes"] = format_index_set(completed)
            status["succeeded"] = len(completed)
        else:
            status["succeeded"] = (status.get("succeeded") or 0) + len(succeeded)
        status["failed"] = (status.get("failed") or 0) + len([u for u in unc_f if u in done])
        status["uncountedTerminatedPods"] = _uncounted([u for u in unc_s if u not in done],
                                                       [u for u in unc_f if u not in done])

    def _note_failures(self, uid: str, counted: list[tuple[Obj, str, tuple | None]], now: dt.datetime) -> None:
        """Failures since the last success, and when the newest happened (for the back-off)."""
        rec = self._failures.get(uid)
        for p, out, _ in counted:
            n, last = rec or (0, None)
            if out == "succeeded":
                rec = (0, None)
            else:
                t = finish_time(p) or now
                rec = (n + 1, max(last, t) if last else t)
        if rec is not None:
            self._failures[uid] = rec

    def _backoff_left(self, job: Obj, pods: list[Obj], now: dt.datetime) -> float:
        """Seconds before a failed pod may be replaced: base * 2^(failures since the last success - 1),
        at most backoff_max, counted from the newest failure."""
        uid = job["metadata"]["uid"]
        rec = self._failures.get(uid)
        if rec is None:  # not seen since a restart: judge by the failed pods still there
            times = [t for p in pods if outcome(p) == "failed" for t in [finish_time(p)] if t]
            failed = (job.get("status") or {}).get("failed") or 0
            rec = self._failures[uid] = (min(failed, 30), max(times)) if times and failed else (0, None)
        n, last = rec
        if not n or last is None:
            return 0.0
        delay = min(self.backoff_base * 2 ** (n - 1), self.backoff_max)
        return max(0.0, (last + dt.timedelta(seconds=delay) - now).total_seconds())

    async def _sync(self, key: str, job: Obj, pods: list[Obj], counted: list, ignored: list[Obj]) -> float | None:
        ns, name = split_key(key)
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = self.now()
        stamp = rfc3339(now)
        exp = self._expect.setdefault(key, _Expected())
        exp.prune({p["metadata"]["name"] for p in pods}, {p["metadata"]["uid"] for p in pods})
        active = [p for p in pods if outcome(p) is None and p["metadata"]["uid"] not in exp.dels]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1) or 0
        release = self._release(status, pods, ignored)
        # decisions count the recorded pods too, as Kubernetes does
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = unc.get("succeeded") or [], unc.get("failed") or []
        succeeded = (status.get("succeeded") or 0) + len(unc_s)
        failed = (status.get("failed") or 0) + len(unc_f)
        completed: set[int] = set()
        if indexed:
            by_uid = {p["metadata"]["uid"]: p for p in pods}
            completed = parse_index_set(status.get("completedIndexes"))
            completed |= {i for u in unc_s if u in by_uid for i in [pod_index(by_uid[u])] if i is not None}
            succeeded = len(completed)
        again: list[float] = []
        self._note_failures(job["metadata"]["uid"], counted, now)

        # ---- is it decided?
        target = condition_true(job, "FailureTarget")
        success = condition_true(job, "SuccessCriteriaMet")
        if not target and not success:
            reason = message = None
            limit = spec.get("backoffLimit", 6)
            on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
            restarts = sum(_restarts(p) for p in active) if on_failure else 0
            start = status.get("startTime")
            deadline = spec.get("activeDeadlineSeconds")
            if failed > limit or (on_failure and restarts and restarts >= max(limit, 1)):
                reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            elif deadline is not None and start and not spec.get("suspend"):
                left = (parse_time(start) + dt.timedelta(seconds=deadline) - now).total_seconds()
                if left <= 0:
                    reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
                else:
                    again.append(left)
            if reason:
                set_condition(status, "FailureTarget", "True", reason, message, stamp)
                target = condition_true({"status": status}, "FailureTarget")
            else:
                done = (len(completed) >= completions if indexed else
                        succeeded >= completions if completions is not None else
                        succeeded > 0 and not active and not exp.adds)
                if done:
                    set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached",
                                  "Reached expected number of succeeded pods", stamp)
                    success = condition_true({"status": status}, "SuccessCriteriaMet")

        if target or success:
            if active:
                await self._delete_pods(job, active, exp, "the Job is finished")
            await self._count(status, pods, release, indexed)
            settled = not status.get("uncountedTerminatedPods")
            if settled:
                if target:
                    set_condition(status, "Failed", "True", target["reason"], target["message"], stamp)
                    self.recorder.emit(job, "Warning", target["reason"], target["message"])
                else:
                    set_condition(status, "Complete", "True", "CompletionsReached",
                                  "Reached expected number of succeeded pods", stamp)
                    status["completionTime"] = stamp
                    self.recorder.emit(job, "Normal", "Completed", "Job completed")
            status.update(active=0, ready=0)
            await self._status_if_changed(key, job, status)
            return None if settled else 1.0

        # ---- suspended?
        if spec.get("suspend"):
            if active:
                await self._delete_pods(job, active, exp, "the Job is suspended")
            if not condition_true(job, "Suspended"):
                set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", stamp)
                self.recorder.emit(job, "Normal", "Suspended", "Job suspended")
            status.update(active=0, ready=0)
            await self._count(status, pods, release, indexed)
            await self._status_if_changed(key, job, status)
            return None
        if condition_true(job, "Suspended"):
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", stamp)
            status["startTime"] = stamp  # the deadline counts from the resumption
            self.recorder.emit(job, "Normal", "Resumed", "Job resumed")
        status.setdefault("startTime", stamp)
        if spec.get("activeDeadlineSeconds") is not None and not again:
            again.append(float(spec["activeDeadlineSeconds"]))

        # ---- how many pods, which indexes
        in_flight = len(exp.adds)
        if indexed:
            by_index: dict[int, list[Obj]] = {}
            for p in active:
                i = pod_index(p)
                if i is not None:
                    by_index.setdefault(i, []).append(p)
            extra = [p for i, ps in by_index.items() for p in (ps if i in completed or i >= completions else ps[1:])]
            extra += [p for p in active if pod_index(p) is None]
            running = set(by_index) - completed
            flying = {i for _, i in exp.adds.values() if i is not None}
            todo = [i for i in range(completions) if i not in completed and i not in running and i not in flying]
            room = parallelism - len(running) - in_flight
            if room < 0:  # parallelism lowered: stop the highest indexes
                keep = sorted(running)[:max(parallelism - in_flight, 0)]
                extra += [p for i in sorted(running) if i not in keep for p in by_index[i][:1]]
            todo = todo[:max(room, 0)]
        else:
            want = parallelism
            if completions is not None:
                want = min(parallelism, completions - succeeded)
            elif succeeded > 0:
                want = min(len(active) + in_flight, parallelism)  # no new pods; the running ones finish
            have = len(active) + in_flight
            extra = _newest_first(active)[:max(have - max(want, 0), 0)]
            todo = [None] * max(want - have, 0)
        if extra:
            await self._delete_pods(job, extra, exp, "more pods than wanted")
        if todo:
            left = self._backoff_left(job, pods, now)
            if left > 0:
                again.append(left)
            else:
                await self._create(job, ns, name, todo, exp)
        active = [p for p in active if p not in extra]
        status["active"] = len(active) + len(exp.adds)
        status["ready"] = len([p for p in active if is_ready(p)])
        await self._count(status, pods, release, indexed)
        await self._status_if_changed(key, job, status)
        return min(again) + 0.05 if again else None

    async def _status_if_changed(self, key: str, job: Obj, status: Obj) -> None:
        if status != (job.get("status") or {}):
            await self._write_status(key, job, status)

    async def _create(self, job: Obj, ns: str | None, name: str, indexes: list[int | None], exp: _Expected) -> None:
        tmpl = (job.get("spec") or {}).get("template") or {}

        async def one(index: int | None) -> None:
            meta = copy.deepcopy(tmpl.get("metadata") or {})
            spec = copy.deepcopy(tmpl.get("spec") or {})
            meta.pop("name", None)
            meta["namespace"] = ns
            meta["generateName"] = f"{name}-" if index is None else f"{name}-{index}-"
            meta["ownerReferences"] = [controller_ref(job)]
            meta["finalizers"] = [TRACKING_FINALIZER]
            if index is not None:
                meta.setdefault("annotations", {})[INDEX_KEY] = str(index)
                meta.setdefault("labels", {})[INDEX_KEY] = str(index)
                spec.setdefault("hostname", f"{name}-{index}")
                ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == INDEX_ENV for e in env):
                        env.append({"name": INDEX_ENV, "valueFrom": ref})
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
            try:
                pod = await self.client.create(self.pod_kind, body, ns)
            except ApiError as e:
                self.recorder.emit(job, "Warning", "FailedCreate", f"Error creating: {e.body.get('message')}")
                raise
            exp.adds[pod["metadata"]["name"]] = (time.monotonic(), index)
            self.recorder.emit(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        for i in range(0, len(indexes), BURST):
            results = await asyncio.gather(*[one(x) for x in indexes[i:i + BURST]], return_exceptions=True)
            errs = [r for r in results if isinstance(r, Exception)]
            if errs:
                raise errs[0]

    async def _expire(self, job: Obj) -> float | None:
        """ttlSecondsAfterFinished: delete the finished Job (and, in the foreground, its pods)."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        cond = finished_condition(job)
        if ttl is None or cond is None:
            return None
        since = (job.get("status") or {}).get("completionTime") or cond.get("lastTransitionTime")
        left = (parse_time(since) + dt.timedelta(seconds=ttl) - self.now()).total_seconds() if since else 0
        if left > 0:
            return left + 0.05
        m = job["metadata"]
        await self.client.delete(self.job_kind, m["namespace"], m["name"], propagationPolicy="Foreground",
                                 preconditions={"uid": m["uid"]})
        return None


def _uncounted(succeeded: list[str], failed: list[str]) -> Obj:
    out: Obj = {}
    if succeeded:
        out["succeeded"] = succeeded
    if failed:
        out["failed"] = failed
    return out


def newer_of(cached: Obj | None, key: str, written: dict[str, Obj]) -> Obj | None:
    """The cached object, or the one our last write of it returned (written[key]) while the
    cache has not caught up with that write: a controller reads its own writes."""
    mine = written.get(key)
    if cached is None:
        written.pop(key, None)
        return None
    if mine is not None and mine["metadata"]["uid"] == cached["metadata"]["uid"] and _rv(mine) > _rv(cached):
        return mine
    written.pop(key, None)
    return cached


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def _newest_first(pods: list[Obj]) -> list[Obj]:
    """Pods to stop first: those not running yet, then the newest."""
    by_age = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    return sorted(by_age, key=lambda p: (p.get("status") or {}).get("phase") == "Running")


def _job_uids(pod: Obj | None) -> list[str]:
    if pod is None:
        return []
    return [r["uid"] for r in pod["metadata"].get("ownerReferences") or []
            if r.get("controller") and r.get("kind") == "Job"]
