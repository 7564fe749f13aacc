"""What a Job's status may hold (kinds/batch.py validate_job_status): the Job controller
reads status back, so no writer may store one it cannot read."""
from __future__ import annotations

import pytest

from sendo.kinds import builtin_registry

JOB = next(r for r in builtin_registry().all() if r.kind == "Job")
UID = "0f1e2d3c-0000-4000-8000-000000000001"


def created(status: dict | None = None, **spec) -> dict:
    body = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    body.update(spec)
    obj = {"metadata": {"name": "pi", "namespace": "default", "uid": UID}, "spec": body}
    JOB.strategy.default(obj)
    JOB.strategy.prepare_create(obj)
    if status is not None:
        obj["status"] = status
    return obj


def texts(obj: dict) -> list[str]:
    return [c.text() for c in JOB.strategy.validate(obj)]


def test_a_status_the_controller_writes_is_valid():
    ok = created({"active": 1, "ready": 0, "succeeded": 2, "failed": 0, "startTime": "2026-01-01T00:00:00Z",
                  "completedIndexes": "0-1", "uncountedTerminatedPods": {"succeeded": ["a"], "failed": ["b"]},
                  "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]},
                 completionMode="Indexed", completions=3)
    assert texts(ok) == []


@pytest.mark.parametrize("status, spec, expected", [
    ({"succeeded": -1}, {}, "status.succeeded: Invalid value: -1: must be greater than or equal to 0"),
    ({"active": "two"}, {}, 'status.active: Invalid value: "two": must be'),
    ({"startTime": "yesterday"}, {}, 'status.startTime: Invalid value: "yesterday": must be an RFC 3339 date-time'),
    ({"completedIndexes": "0-2"}, {}, 'status.completedIndexes: Invalid value: "0-2": cannot set for non-indexed'),
    ({"completedIndexes": "2-1"}, {"completionMode": "Indexed", "completions": 3},
     'status.completedIndexes: Invalid value: "2-1": error parsing completedIndexes: first index is larger'),
    ({"completedIndexes": "0-7"}, {"completionMode": "Indexed", "completions": 3},
     'status.completedIndexes: Invalid value: "0-7": error parsing completedIndexes: too large index: "7"'),
    ({"uncountedTerminatedPods": {"succeeded": ["a"], "failed": ["a"]}}, {},
     'status.uncountedTerminatedPods.failed[0]: Duplicate value: "a"'),
    ({"uncountedTerminatedPods": {"succeeded": [""]}}, {},
     'status.uncountedTerminatedPods.succeeded[0]: Invalid value: "": must not be empty'),
    ({"conditions": [{"type": "Complete", "status": "True"}, {"type": "Failed", "status": "True"}]}, {},
     "status.conditions: Invalid value"),
    ({"conditions": ["Complete"]}, {}, 'status.conditions[0]: Invalid value: "Complete": must be'),
])
def test_status_the_controller_could_not_read_is_refused(status, spec, expected):
    got = texts(created(status, **spec))
    assert any(t.startswith(expected) for t in got), got


def test_negative_completions_are_refused():
    assert "spec.completions: Invalid value: -1: must be greater than or equal to 0" in texts(created(completions=-1))
