"""Jobs and CronJobs end to end: one `sendo up` (process runtime), the real kubectl and the
official `kubernetes` client.

The CronJob (`* * * * *`, real clock) is created when the cluster starts, so its first
run comes while the Job tests work; the last test waits for it (at most a minute and
a bit). The Job back-off base is 0.2 s here (SENDO_JOB_BACKOFF_SECONDS) instead of 10 s.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest

from .harness import poll, shared_cluster, to_yaml

PODS_DEADLINE = 90.0


def command_job(name: str, script: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}}}


TICK = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": {"template": {"spec": {
                     "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo tick"]}]}}}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("jobs"), extra_env={"SENDO_JOB_BACKOFF_SECONDS": "0.2"}) as c:
        from kubernetes import client
        client.BatchV1Api(c.api()).create_namespaced_cron_job("default", TICK)
        c.tick_created = dt.datetime.now(dt.timezone.utc)
        yield c


def condition(job: dict, ctype: str) -> dict | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c["type"] == ctype and c["status"] == "True"), None)


def test_indexed_job_runs_each_index_once_and_completes(cluster):
    cluster.kubectl("apply", "-f", "-", input=to_yaml(command_job(
        "idx", "echo index=$JOB_COMPLETION_INDEX", completions=5, parallelism=2, completionMode="Indexed")))
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", f"--timeout={int(PODS_DEADLINE)}s",
                    timeout=PODS_DEADLINE + 10)
    from kubernetes import client
    job = client.BatchV1Api(cluster.api()).read_namespaced_job_status("idx", "default")
    assert job.status.succeeded == 5 and job.status.completed_indexes == "0-4"
    assert not job.status.failed and not job.status.active
    assert job.status.completion_time and job.status.start_time
    pods = cluster.kubectl_json("get", "pods", "-l", "batch.kubernetes.io/job-name=idx")["items"]
    by_index = {}
    for p in pods:
        index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert not p["metadata"].get("finalizers"), "every counted pod is released"
        by_index.setdefault(index, []).append(p)
        logs = cluster.kubectl("logs", p["metadata"]["name"]).stdout
        assert logs.strip() == f"index={index}"
    assert sorted(by_index) == ["0", "1", "2", "3", "4"] and all(len(v) == 1 for v in by_index.values())
    table = cluster.kubectl("get", "job", "idx").stdout
    assert "Complete" in table and "5/5" in table


def test_failing_job_stops_at_backoff_limit(cluster):
    from kubernetes import client
    batch = client.BatchV1Api(cluster.api())
    batch.create_namespaced_job("default", command_job("bad", "exit 3", backoffLimit=2))
    cluster.kubectl("wait", "--for=condition=failed", "job/bad", f"--timeout={int(PODS_DEADLINE)}s",
                    timeout=PODS_DEADLINE + 10)
    job = batch.read_namespaced_job_status("bad", "default")
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.status == "True" and failed.reason == "BackoffLimitExceeded"
    assert job.status.failed == 3 and not job.status.succeeded
    pods = cluster.kubectl_json("get", "pods", "-l", "batch.kubernetes.io/job-name=bad")["items"]
    assert len(pods) == 3  # the first try and backoffLimit (2) retries, no more
    for p in pods:
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 3
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=bad").stdout
    assert "BackoffLimitExceeded" in events


def test_pod_failure_policy_fails_the_job_on_an_exit_code(cluster):
    job = command_job("policy", "exit 42", backoffLimit=6)
    job["spec"]["podFailurePolicy"] = {"rules": [{"action": "FailJob",
                                                  "onExitCodes": {"operator": "In", "values": [42]}}]}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(job))
    cluster.kubectl("wait", "--for=condition=failed", "job/policy", f"--timeout={int(PODS_DEADLINE)}s",
                    timeout=PODS_DEADLINE + 10)
    got = cluster.kubectl_json("get", "job", "policy")
    assert condition(got, "Failed")["reason"] == "PodFailurePolicy"
    assert "exit code 42 matching FailJob rule at index 0" in condition(got, "Failed")["message"]
    assert got["status"]["failed"] == 1


def test_bad_jobs_and_cronjobs_are_refused_naming_the_field(cluster):
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(command_job("neg", "true", completions=-1)), check=False)
    assert r.returncode != 0 and "spec.completions" in r.stderr and "greater than or equal to 0" in r.stderr
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    batch = client.BatchV1Api(cluster.api())
    for field, change in (("spec.schedule", {"schedule": "61 * * * *"}),
                          ("spec.timeZone", {"timeZone": "Mars/Olympus"})):
        bad = json.loads(json.dumps(TICK))
        bad["metadata"]["name"] = "bad-cron"
        bad["spec"].update(change)
        with pytest.raises(ApiException) as e:
            batch.create_namespaced_cron_job("default", bad)
        assert e.value.status == 422
        assert [c["field"] for c in json.loads(e.value.body)["details"]["causes"]] == [field]
    assert cluster.kubectl("get", "cronjob", "bad-cron", check=False).returncode != 0


def test_create_job_from_cronjob(cluster):
    cluster.kubectl("create", "job", "by-hand", "--from=cronjob/tick")
    job = cluster.kubectl_json("get", "job", "by-hand")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "CronJob" and owner["name"] == "tick"
    cluster.kubectl("wait", "--for=condition=complete", "job/by-hand", f"--timeout={int(PODS_DEADLINE)}s",
                    timeout=PODS_DEADLINE + 10)
    assert cluster.kubectl("logs", "job/by-hand").stdout.strip() == "tick"


def test_cronjob_runs_on_its_schedule(cluster):
    """The first minute boundary after the CronJob was created makes a Job named after it."""
    first = (cluster.tick_created.replace(second=0, microsecond=0) + dt.timedelta(minutes=1))
    name = f"tick-{int(first.timestamp()) // 60}"

    def ran():
        cj = cluster.kubectl_json("get", "cronjob", "tick")
        job = cluster.kubectl("get", "job", name, "-o", "json", check=False)
        if job.returncode != 0 or not condition(json.loads(job.stdout), "Complete"):
            return None
        return cj, json.loads(job.stdout)
    cj, job = poll(ran, timeout=(first - dt.datetime.now(dt.timezone.utc)).total_seconds() + PODS_DEADLINE,
                   what=f"job {name} of the CronJob")
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cj["status"]["lastScheduleTime"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    created = dt.datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert created >= first  # not before its time (how soon after is bench/jobs.py's figure)
    assert "tick" in cluster.kubectl("get", "cronjob", "tick").stdout


def test_deleting_a_cronjob_and_a_job_takes_what_they_own(cluster):
    """The garbage collector removes a deleted CronJob's Jobs and a deleted Job's pods; the
    Job controller lets go of the pods' tracking finalizer so they can go."""
    jobs_of_tick = [j["metadata"]["name"] for j in cluster.kubectl_json("get", "jobs")["items"]
                    if any(r["name"] == "tick" for r in j["metadata"].get("ownerReferences") or [])]
    assert jobs_of_tick
    cluster.kubectl("delete", "cronjob", "tick")
    cluster.kubectl("delete", "job", "idx", "--wait=false")

    def gone():
        left = {j["metadata"]["name"] for j in cluster.kubectl_json("get", "jobs")["items"]}
        pods = cluster.kubectl_json("get", "pods", "-l", "batch.kubernetes.io/job-name=idx")["items"]
        return not (left & set(jobs_of_tick + ["idx"])) and not pods
    poll(gone, timeout=PODS_DEADLINE, what="the CronJob's Jobs and the Job's pods to go")
