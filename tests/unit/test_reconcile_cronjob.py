"""CronJob controller with an injected clock, one reconcile at a time on the fake API."""
import datetime as dt
import zoneinfo

import pytest

from sendo.client import kind
from sendo.controllers.cronjob import CronJobController, Schedule, job_name, unmet_time

CJS, JOBS = kind("cronjobs", "batch"), kind("jobs", "batch")
NS = "default"
JOB_URL = f"/apis/batch/v1/namespaces/{NS}/jobs"
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def cronjob(name="tick", status=None, created="2026-01-01T11:59:30Z", **spec):
    s = {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "suspend": False,
         "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
         "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                         "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                        "containers": [{"name": "c", "image": "x"}]}}}}}
    s.update(spec)
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "creationTimestamp": created},
            "spec": s, "status": status or {}}


def owned_job(name, owner="tick", done=None, at="2026-01-01T11:00:00Z"):
    status = {"startTime": at}
    if done:
        status["conditions"] = [{"type": done, "status": "True", "lastTransitionTime": at}]
        if done == "Complete":
            status["completionTime"] = at
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "creationTimestamp": at,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": owner,
                                              "uid": f"uid-{owner}", "controller": True}]},
            "spec": {}, "status": status}


def build(fake_api, t):
    clock = Clock(t)
    cc = fake_api.build(CronJobController, now=clock)
    events = []
    cc.recorder.emit = lambda obj, typ, reason, msg: events.append((typ, reason, msg))
    return cc, clock, events


def job_posts(calls):
    return [c.body for c in calls if c.method == "POST" and c.path == JOB_URL]


def last_status(calls):
    return [c.body["status"] for c in calls if c.method == "PUT" and c.path.endswith("/status")][-1]


def test_schedules_macros_time_zones_and_every():
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    assert Schedule("@hourly", UTC).next_after(T0) == T0 + dt.timedelta(hours=1)
    assert Schedule("@midnight", UTC).next_after(T0) == dt.datetime(2026, 1, 2, tzinfo=UTC)
    # 09:00 in Tokyo is 00:00 UTC
    assert Schedule("0 9 * * *", tokyo).next_after(T0) == dt.datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert Schedule("@every 90s", UTC).next_after(T0) == T0 + dt.timedelta(seconds=90)
    assert Schedule("0 0 ? * MON-FRI", UTC).next_after(T0) == dt.datetime(2026, 1, 2, tzinfo=UTC)


def test_unmet_time_finds_only_the_most_recent_and_counts_the_missed():
    s = Schedule("* * * * *", UTC)
    assert unmet_time(s, T0, T0 + dt.timedelta(seconds=59)) == (None, 0)
    assert unmet_time(s, T0, T0 + dt.timedelta(minutes=3, seconds=10)) == (T0 + dt.timedelta(minutes=3), 3)
    latest, missed = unmet_time(s, T0, T0 + dt.timedelta(hours=5, seconds=1))
    assert latest == T0 + dt.timedelta(hours=5) and missed == 300


def test_job_names_are_minutes_since_the_epoch():
    assert job_name("tick", T0) == f"tick-{int(T0.timestamp()) // 60}"


async def test_nothing_runs_before_the_first_time_and_it_wakes_for_it(fake_api):
    cc, clock, _ = build(fake_api, T0 - dt.timedelta(seconds=20))
    fake_api.add(CJS, cronjob())
    again = await cc.reconcile(f"{NS}/tick")
    assert job_posts(fake_api.fake.writes()) == []
    assert 19.9 < again < 20.1


async def test_a_run_creates_one_job_named_by_its_time(fake_api):
    cc, clock, events = build(fake_api, T0 + dt.timedelta(seconds=0.3))
    fake_api.add(CJS, cronjob(timeZone="Asia/Tokyo"))
    calls = await fake_api.run(cc, f"{NS}/tick")
    (body,) = job_posts(calls)
    m = body["metadata"]
    assert m["name"] == job_name("tick", T0) and m["labels"] == {"team": "a"}
    assert m["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == "2026-01-01T21:00:00+09:00"
    assert m["ownerReferences"][0]["kind"] == "CronJob" and m["ownerReferences"][0]["controller"]
    status = last_status(calls)
    assert status["lastScheduleTime"] == "2026-01-01T12:00:00Z"
    assert [r["name"] for r in status["active"]] == [m["name"]]
    assert ("Normal", "SuccessfulCreate", f"Created job {m['name']}") in events
    # the job watch is behind: no second run of the same time
    assert job_posts(await fake_api.run(cc, f"{NS}/tick", sync=(CJS,))) == []


async def test_after_an_outage_one_catch_up_run_and_a_warning_past_100_missed(fake_api):
    cc, clock, events = build(fake_api, T0 + dt.timedelta(hours=3, seconds=5))
    fake_api.add(CJS, cronjob(status={"lastScheduleTime": "2026-01-01T12:00:00Z"}))
    calls = await fake_api.run(cc, f"{NS}/tick")
    (body,) = job_posts(calls)
    assert body["metadata"]["name"] == job_name("tick", T0 + dt.timedelta(hours=3))
    assert [e for e in events if e[1] == "TooManyMissedTimes"] == [
        ("Warning", "TooManyMissedTimes", "too many missed start times: 180. Set or decrease "
                                          ".spec.startingDeadlineSeconds or check clock skew")]


async def test_a_few_missed_times_make_no_warning(fake_api):
    cc, clock, events = build(fake_api, T0 + dt.timedelta(minutes=50, seconds=5))
    fake_api.add(CJS, cronjob(status={"lastScheduleTime": "2026-01-01T12:00:00Z"}))
    assert len(job_posts(await fake_api.run(cc, f"{NS}/tick"))) == 1
    assert not [e for e in events if e[1] == "TooManyMissedTimes"]


async def test_starting_deadline_skips_a_late_run(fake_api):
    cc, clock, events = build(fake_api, T0 + dt.timedelta(seconds=30))
    fake_api.add(CJS, cronjob(startingDeadlineSeconds=10))
    assert job_posts(await fake_api.run(cc, f"{NS}/tick")) == []
    clock.t = T0 + dt.timedelta(minutes=1, seconds=5)
    assert len(job_posts(await fake_api.run(cc, f"{NS}/tick"))) == 1


async def test_forbid_skips_while_a_job_runs_and_replace_deletes_it(fake_api):
    cc, clock, events = build(fake_api, T0 + dt.timedelta(seconds=1))
    fake_api.add(CJS, cronjob(concurrencyPolicy="Forbid"))
    fake_api.add(JOBS, owned_job("tick-old"))
    calls = await fake_api.run(cc, f"{NS}/tick")
    assert job_posts(calls) == []
    assert any(e[1] == "JobAlreadyActive" for e in events)
    assert [r["name"] for r in last_status(calls)["active"]] == ["tick-old"]

    stored = fake_api.fake.objects[f"/apis/batch/v1/namespaces/{NS}/cronjobs/tick"]
    stored["spec"]["concurrencyPolicy"] = "Replace"
    stored["metadata"]["resourceVersion"] = "99999"
    calls = await fake_api.run(cc, f"{NS}/tick")
    assert [c.path for c in calls if c.method == "DELETE"] == [f"{JOB_URL}/tick-old"]
    assert len(job_posts(calls)) == 1


async def test_suspended_cronjob_runs_nothing(fake_api):
    cc, clock, _ = build(fake_api, T0 + dt.timedelta(minutes=5))
    fake_api.add(CJS, cronjob(suspend=True))
    assert job_posts(await fake_api.run(cc, f"{NS}/tick")) == []


async def test_history_limits_delete_the_oldest_finished_jobs(fake_api):
    cc, clock, _ = build(fake_api, T0 - dt.timedelta(seconds=20))
    fake_api.add(CJS, cronjob(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=0))
    fake_api.add(JOBS, *[owned_job(f"tick-{i}", done="Complete", at=f"2026-01-01T11:0{i}:00Z") for i in range(4)],
                 owned_job("tick-f", done="Failed"), owned_job("tick-run"))
    calls = await fake_api.run(cc, f"{NS}/tick")
    assert sorted(c.path for c in calls if c.method == "DELETE") == [
        f"{JOB_URL}/tick-0", f"{JOB_URL}/tick-1", f"{JOB_URL}/tick-f"]
    status = last_status(calls)
    assert status["lastSuccessfulTime"] == "2026-01-01T11:03:00Z"
    assert [r["name"] for r in status["active"]] == ["tick-run"]


@pytest.mark.parametrize("schedule, now, fires", [
    ("@hourly", T0 + dt.timedelta(seconds=2), True),
    ("@hourly", T0 + dt.timedelta(minutes=30), True),  # created 11:59:30: 12:00 has come
    ("30 * * * *", T0 + dt.timedelta(minutes=29), False),
])
async def test_macros_fire_at_their_times(fake_api, schedule, now, fires):
    cc, clock, _ = build(fake_api, now)
    fake_api.add(CJS, cronjob(schedule=schedule))
    assert len(job_posts(await fake_api.run(cc, f"{NS}/tick"))) == (1 if fires else 0)
