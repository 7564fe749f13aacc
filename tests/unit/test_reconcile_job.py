"""Job controller, one reconcile at a time on a fake API that records the calls."""
import datetime as dt

from sendo.client import kind
from sendo.controllers.job import (INDEX_KEY, TRACKING_FINALIZER, JobController, format_index_set,
                                   parse_index_set)

JOBS, PODS = kind("jobs", "batch"), kind("pods")
NS = "default"
JOB_URL = f"/apis/batch/v1/namespaces/{NS}/jobs"
POD_URL = f"/api/v1/namespaces/{NS}/pods"
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def job(name="work", status=None, **spec):
    s = {"completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False,
         "template": {"metadata": {"labels": {"batch.kubernetes.io/job-name": name}},
                      "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}
    s.update(spec)
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"}, "spec": s, "status": status or {}}


def pod(name, owner="work", phase="Running", index=None, finalizer=True, exit_code=None, finished="2026-01-01T12:00:00Z",
        **meta):
    m = {"name": name, "namespace": NS, "uid": f"uid-{name}",
         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": owner, "uid": f"uid-{owner}",
                              "controller": True}], **meta}
    if finalizer:
        m["finalizers"] = [TRACKING_FINALIZER]
    if index is not None:
        m["annotations"] = {INDEX_KEY: str(index)}
    status = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "c", "restartCount": 0, "state": {
            "terminated": {"exitCode": exit_code, "finishedAt": finished}}}]
    return {"metadata": m, "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": status}


def creates(calls):
    return [c for c in calls if c.method == "POST" and c.path == POD_URL]


def status_writes(calls):
    return [c.body["status"] for c in calls if c.method == "PUT" and c.path.endswith("/status")]


def condition(status, ctype):
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


def test_index_sets_round_trip():
    assert format_index_set({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert parse_index_set("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_index_set("") == set() and format_index_set(set()) == ""


async def test_indexed_job_starts_the_lowest_indexes_with_their_index(fake_api):
    jc = fake_api.build(JobController)
    fake_api.add(JOBS, job(completions=5, parallelism=2, completionMode="Indexed"))
    calls = await fake_api.run(jc, f"{NS}/work")
    made = creates(calls)
    assert len(made) == 2
    indexes = sorted(int(c.body["metadata"]["annotations"][INDEX_KEY]) for c in made)
    assert indexes == [0, 1]
    for c in made:
        m, i = c.body["metadata"], c.body["metadata"]["annotations"][INDEX_KEY]
        assert m["labels"][INDEX_KEY] == i and m["generateName"] == f"work-{i}-"
        assert m["finalizers"] == [TRACKING_FINALIZER]
        assert m["ownerReferences"][0]["uid"] == "uid-work" and m["ownerReferences"][0]["controller"]
        env = c.body["spec"]["containers"][0]["env"]
        assert {"name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}} in env
        assert c.body["spec"]["hostname"] == f"work-{i}"
    assert status_writes(calls)[-1]["active"] == 2 and status_writes(calls)[-1]["startTime"]
    # the pod watch is behind: nothing is created twice
    assert creates(await fake_api.run(jc, f"{NS}/work", sync=(JOBS,))) == []


async def test_a_finished_pod_is_recorded_then_released_then_counted(fake_api):
    jc = fake_api.build(JobController)
    fake_api.add(JOBS, job(completions=3, parallelism=1, completionMode="Indexed"))
    fake_api.add(PODS, pod("work-0-a", index=0, phase="Succeeded", exit_code=0))
    calls = await fake_api.run(jc, f"{NS}/work")
    kinds = [(c.method, c.path) for c in calls]
    first_put = kinds.index(("PUT", f"{JOB_URL}/work/status"))
    patch = kinds.index(("PATCH", f"{POD_URL}/work-0-a"))
    assert first_put < patch, kinds
    writes = status_writes(calls)
    assert writes[0]["uncountedTerminatedPods"] == {"succeeded": ["uid-work-0-a"]}
    assert calls[patch].body == {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
    assert writes[1]["uncountedTerminatedPods"] == {}
    assert writes[1]["succeeded"] == 1 and writes[1]["completedIndexes"] == "0"
    assert [int(c.body["metadata"]["annotations"][INDEX_KEY]) for c in creates(calls)] == [1]
    # the next pass counts nothing again, even while the cache still shows the finalizer
    again = await fake_api.run(jc, f"{NS}/work", sync=(JOBS,))
    assert all(w.get("succeeded") == 1 for w in status_writes(again))
    assert not [c for c in again if c.method == "PATCH"]


async def test_a_restarted_controller_neither_loses_nor_double_counts(fake_api):
    # crashed after step 1 (uid recorded, finalizer removed) but before step 3 (counted)
    fake_api.add(JOBS, job(completions=3, parallelism=1, status={
        "succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["uid-work-b"]}}))
    fake_api.add(PODS, pod("work-a", phase="Succeeded", finalizer=False),  # counted before the crash
                 pod("work-b", phase="Succeeded", finalizer=False))
    jc = fake_api.build(JobController)
    calls = await fake_api.run(jc, f"{NS}/work")
    assert status_writes(calls)[0]["succeeded"] == 2
    assert status_writes(calls)[0]["uncountedTerminatedPods"] == {}
    assert len(creates(calls)) == 1
    fresh = fake_api.build(JobController)  # another restart: the counts hold
    again = await fake_api.run(fresh, f"{NS}/work")
    assert all(w["succeeded"] == 2 for w in status_writes(again))


async def test_completion_writes_success_criteria_then_complete(fake_api):
    jc = fake_api.build(JobController, now=Clock())
    fake_api.add(JOBS, job(completions=1))
    fake_api.add(PODS, pod("work-a", phase="Succeeded", exit_code=0))
    calls = await fake_api.run(jc, f"{NS}/work")
    final = status_writes(calls)[-1]
    assert condition(final, "SuccessCriteriaMet")["status"] == "True"
    complete = condition(final, "Complete")
    assert complete["status"] == "True" and complete["reason"] == "CompletionsReached"
    assert final["completionTime"] == "2026-01-01T12:00:00Z" and final["succeeded"] == 1
    assert creates(calls) == []
    assert await fake_api.run(jc, f"{NS}/work") == []


async def test_backoff_limit_fails_the_job_and_stops_its_pods(fake_api):
    jc = fake_api.build(JobController, backoff_base=0.0)
    fake_api.add(JOBS, job(completions=2, parallelism=2, backoffLimit=1, status={"failed": 1}))
    fake_api.add(PODS, pod("work-a", phase="Failed", exit_code=1), pod("work-b"))
    calls = await fake_api.run(jc, f"{NS}/work")
    final = status_writes(calls)[-1]
    assert final["failed"] == 2
    assert condition(final, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    failed = condition(final, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert [c.path for c in calls if c.method == "DELETE"] == [f"{POD_URL}/work-b"]
    assert creates(calls) == []


async def test_failed_pods_are_replaced_after_an_exponential_back_off(fake_api):
    clock = Clock(T0 + dt.timedelta(seconds=5))
    jc = fake_api.build(JobController, backoff_base=10.0, now=clock)
    fake_api.add(JOBS, job(backoffLimit=6))
    fake_api.add(PODS, pod("work-a", phase="Failed", exit_code=1, finished="2026-01-01T12:00:00Z"))
    calls = await fake_api.run(jc, f"{NS}/work")
    assert creates(calls) == []  # 5 s after the failure; the back-off is 10 s
    clock.t = T0 + dt.timedelta(seconds=11)
    assert len(creates(await fake_api.run(jc, f"{NS}/work"))) == 1
    # a second failure doubles the delay: 20 s
    fake_api.add(PODS, pod("work-b", phase="Failed", exit_code=1, finished="2026-01-01T12:00:20Z"))
    for p in list(fake_api.fake.objects):
        if "/pods/work-" in p and not p.endswith(("work-a", "work-b")):
            del fake_api.fake.objects[p]
    clock.t = T0 + dt.timedelta(seconds=35)
    assert creates(await fake_api.run(jc, f"{NS}/work")) == []
    clock.t = T0 + dt.timedelta(seconds=41)
    assert len(creates(await fake_api.run(jc, f"{NS}/work"))) == 1


async def test_back_off_is_capped(fake_api):
    jc = fake_api.build(JobController, backoff_base=10.0, backoff_max=360.0, now=Clock(T0 + dt.timedelta(seconds=361)))
    fake_api.add(JOBS, job(backoffLimit=100, status={"failed": 20}))
    fake_api.add(PODS, pod("work-a", phase="Failed", exit_code=1, finalizer=False))
    assert len(creates(await fake_api.run(jc, f"{NS}/work"))) == 1


async def test_pod_failure_policy_fail_job_and_ignore(fake_api):
    rules = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
                       {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    jc = fake_api.build(JobController, backoff_base=0.0)
    fake_api.add(JOBS, job("ign", backoffLimit=0, podFailurePolicy=rules))
    fake_api.add(PODS, pod("ign-a", owner="ign", phase="Failed", exit_code=7))
    calls = await fake_api.run(jc, f"{NS}/ign")
    final = status_writes(calls)[-1]
    assert not final.get("failed") and not condition(final, "Failed")  # ignored: not counted
    assert [c.path for c in calls if c.method == "PATCH"] == [f"{POD_URL}/ign-a"]  # released all the same
    assert len(creates(calls)) == 1

    fake_api.add(JOBS, job("fj", backoffLimit=6, podFailurePolicy=rules))
    fake_api.add(PODS, pod("fj-a", owner="fj", phase="Failed", exit_code=42))
    final = status_writes(await fake_api.run(jc, f"{NS}/fj"))[-1]
    failed = condition(final, "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == ("Container c for pod default/fj-a failed with exit code 42 matching FailJob rule "
                                 "at index 0")


async def test_active_deadline_fails_the_job(fake_api):
    jc = fake_api.build(JobController, now=Clock(T0 + dt.timedelta(seconds=31)))
    fake_api.add(JOBS, job(activeDeadlineSeconds=30, status={"startTime": "2026-01-01T12:00:00Z"}))
    fake_api.add(PODS, pod("work-a"))
    calls = await fake_api.run(jc, f"{NS}/work")
    assert condition(status_writes(calls)[-1], "Failed")["reason"] == "DeadlineExceeded"
    assert [c.path for c in calls if c.method == "DELETE"] == [f"{POD_URL}/work-a"]


async def test_active_deadline_requeues_for_the_deadline(fake_api):
    jc = fake_api.build(JobController, now=Clock(T0 + dt.timedelta(seconds=10)))
    fake_api.add(JOBS, job(activeDeadlineSeconds=30, status={"startTime": "2026-01-01T12:00:00Z"}))
    fake_api.add(PODS, pod("work-a"))
    assert 19.9 < await jc.reconcile(f"{NS}/work") < 20.2


async def test_suspend_stops_pods_uncounted_and_resume_starts_again(fake_api):
    jc = fake_api.build(JobController, now=Clock())
    fake_api.add(JOBS, job(suspend=True, status={"startTime": "2025-12-31T00:00:00Z"}))
    fake_api.add(PODS, pod("work-a"))
    calls = await fake_api.run(jc, f"{NS}/work")
    assert [c.method for c in calls if "/pods/" in c.path] == ["PATCH", "DELETE"]  # released first: not a failure
    final = status_writes(calls)[-1]
    assert condition(final, "Suspended")["status"] == "True" and final["active"] == 0
    stored = fake_api.fake.objects[f"{JOB_URL}/work"]
    stored["spec"]["suspend"] = False
    stored["metadata"]["resourceVersion"] = "99999"
    calls = await fake_api.run(jc, f"{NS}/work")
    final = status_writes(calls)[-1]
    assert condition(final, "Suspended")["status"] == "False" and final.get("failed", 0) == 0
    assert final["startTime"] == "2026-01-01T12:00:00Z"  # the deadline counts from the resumption
    assert len(creates(calls)) == 1


async def test_lowering_parallelism_stops_extra_pods(fake_api):
    jc = fake_api.build(JobController)
    fake_api.add(JOBS, job(completions=10, parallelism=1))
    fake_api.add(PODS, pod("work-a", creationTimestamp="2026-01-01T00:00:00Z"),
                 pod("work-b", creationTimestamp="2026-01-01T00:00:05Z"))
    calls = await fake_api.run(jc, f"{NS}/work")
    assert [c.path for c in calls if c.method == "DELETE"] == [f"{POD_URL}/work-b"]


async def test_ttl_after_finished_deletes_the_job(fake_api):
    done = {"completionTime": "2026-01-01T12:00:00Z", "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T12:00:00Z"}]}
    clock = Clock(T0 + dt.timedelta(seconds=5))
    jc = fake_api.build(JobController, now=clock)
    fake_api.add(JOBS, job(ttlSecondsAfterFinished=10, status=done))
    assert 4.9 < await jc.reconcile(f"{NS}/work") < 5.2
    clock.t = T0 + dt.timedelta(seconds=10)
    calls = await fake_api.run(jc, f"{NS}/work")
    (delete,) = [c for c in calls if c.method == "DELETE"]
    assert delete.path == f"{JOB_URL}/work" and delete.body["propagationPolicy"] == "Foreground"


async def test_pods_of_a_deleted_job_lose_the_finalizer(fake_api):
    jc = fake_api.build(JobController)
    fake_api.add(PODS, pod("gone-a", owner="gone", deletionTimestamp="2026-01-01T00:00:00Z"))
    calls = await fake_api.run(jc, f"{NS}/gone-a".replace(f"{NS}/", f"pod:{NS}/"))
    assert [(c.method, c.path) for c in calls] == [("PATCH", f"{POD_URL}/gone-a")]


async def test_job_with_no_completions_finishes_when_one_succeeded_and_the_rest_stopped(fake_api):
    jc = fake_api.build(JobController)
    fake_api.add(JOBS, job(completions=None, parallelism=3))
    fake_api.add(PODS, pod("work-a", phase="Succeeded", exit_code=0), pod("work-b"))
    calls = await fake_api.run(jc, f"{NS}/work")
    assert creates(calls) == [] and not condition(status_writes(calls)[-1], "Complete")
    assert not [c for c in calls if c.method == "DELETE"]  # the others finish on their own
    fake_api.add(PODS, pod("work-b", phase="Succeeded", exit_code=0))
    calls = await fake_api.run(jc, f"{NS}/work")
    final = status_writes(calls)[-1]
    assert condition(final, "Complete")["status"] == "True" and final["succeeded"] == 2
