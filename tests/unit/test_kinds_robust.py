"""Hostile input through the real API: wrong JSON types in metadata, integers beyond int32.

Every answer must be a 4xx Status naming the field at fault: a fuzzer sent
`metadata.generateName: [1]` to every kind and got 500s, and `replicas: 2147483648`
was stored and made thousands of pods.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendo.client.rest import ApiError, path
from sendo.kinds import builtin_registry

RESOURCES = sorted(builtin_registry().all(), key=lambda r: (r.group, r.kind))
BY_KIND = {r.kind: r for r in RESOURCES}
META_FIELDS = ["name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
               "ownerReferences", "finalizers", "managedFields"]
# JSON of every shape: scalars of each type, and containers holding wrong types one level down
_scalar = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.text(max_size=5))
WRONG = st.one_of(
    _scalar,
    st.lists(_scalar, min_size=1, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), _scalar, min_size=1, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["apiVersion", "kind", "name", "uid", "controller", "manager",
                                              "fieldsV1", "time"]), _scalar | st.lists(_scalar, max_size=2)),
             min_size=1, max_size=2),
)


def _url(r, name: str | None = None) -> str:
    return path(r, "default" if r.namespaced else None, name)


async def _answer(client, method: str, url: str, body, content_type: str = "application/json") -> int:
    """The HTTP status; any error must be a Status below 500. Encoded with json: integers of any size."""
    data = None if body is None else json.dumps(body).encode()
    async with client.session.request(method, client.server + url, data=data,
                                      headers={"Content-Type": content_type}) as resp:
        answer = await resp.json(content_type=None)
        if resp.status >= 400:
            assert resp.status < 500, f"{method} {url} {body!r}: {resp.status} {answer}"
            assert answer.get("kind") == "Status", answer
        return resp.status


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([r.kind for r in RESOURCES]), field=st.sampled_from(META_FIELDS), value=WRONG)
async def test_wrong_metadata_types_never_5xx(client, kind, field, value):
    r = BY_KIND[kind]
    meta = {"name": "robust", field: value}
    if field == "generateName":
        meta.pop("name")
    body = {"apiVersion": r.api_version, "kind": r.kind, "metadata": meta}
    if await _answer(client, "POST", _url(r), body) < 300:  # a well-typed value by chance: tidy up
        await _answer(client, "DELETE", _url(r, "robust"), None)
    await _answer(client, "PUT", _url(r, "robust"), {**body, "metadata": {**meta, "name": "robust"}})


@pytest.fixture
async def configmap(client):
    cm = BY_KIND["ConfigMap"]
    await client.create(cm, {"metadata": {"name": "target", "namespace": "default"}, "data": {"a": "b"}})
    return cm


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(META_FIELDS), value=WRONG)
async def test_wrong_metadata_types_in_patches_never_5xx(client, configmap, field, value):
    url = _url(configmap, "target")
    await _answer(client, "PATCH", url, {"metadata": {field: value}}, "application/merge-patch+json")
    await _answer(client, "PATCH", url, {"metadata": {field: value}}, "application/strategic-merge-patch+json")
    await _answer(client, "PATCH", url, [{"op": "add", "path": f"/metadata/{field}", "value": value}],
                  "application/json-patch+json")
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target", field: value}}
    await _answer(client, "PATCH", url + "?fieldManager=fuzz&force=true", applied, "application/apply-patch+yaml")
    assert (await client.get(configmap, "default", "target"))["data"] == {"a": "b"}  # never a partial write


@pytest.mark.parametrize("field,value", [
    ("generateName", ["web-"]), ("generateName", {"a": "b"}), ("generateName", 5),
    ("labels", ["a"]), ("labels", {"a": 1}), ("finalizers", 5), ("ownerReferences", [{"uid": []}]),
    ("generation", "one"), ("annotations", {"a": None}),
])
async def test_wrong_metadata_type_is_422_naming_the_field(client, field, value):
    cm = BY_KIND["ConfigMap"]
    meta = {"name": "x", "namespace": "default", field: value}
    with pytest.raises(ApiError) as e:
        await client.create(cm, {"metadata": meta})
    assert e.value.status == 422
    fields = [c["field"] for c in e.value.body["details"]["causes"]]
    assert all(f.startswith(f"metadata.{field}") for f in fields), fields


INT32_FIELDS = [
    ("Deployment", "spec.replicas"), ("StatefulSet", "spec.minReadySeconds"),
    ("Deployment", "spec.revisionHistoryLimit"), ("Deployment", "spec.progressDeadlineSeconds"),
    ("ReplicaSet", "spec.replicas"), ("StatefulSet", "spec.replicas"), ("DaemonSet", "spec.minReadySeconds"),
    ("Job", "spec.parallelism"), ("Job", "spec.completions"), ("Job", "spec.backoffLimit"),
    ("CronJob", "spec.successfulJobsHistoryLimit"),
]


def _with(obj: dict, dotted: str, value) -> dict:
    cur = obj
    *parents, last = dotted.split(".")
    for p in parents:
        cur = cur.setdefault(p, {})
    cur[last] = value
    return obj


def _workload(kind: str) -> dict:
    template = {"metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}],
                         "restartPolicy": "Never" if kind in ("Job", "CronJob") else "Always"}}
    spec: dict = {"template": template}
    if kind not in ("Job", "CronJob"):
        spec["selector"] = {"matchLabels": {"app": "big"}}
    if kind == "StatefulSet":
        spec["serviceName"] = "big"
    if kind == "CronJob":
        spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
    return {"metadata": {"name": "big", "namespace": "default"}, "spec": spec}


@pytest.mark.parametrize("kind,field", INT32_FIELDS)
async def test_int32_fields_refuse_larger_numbers(client, kind, field):
    r = BY_KIND[kind]
    with pytest.raises(ApiError) as e:
        await client.create(r, _with(_workload(kind), field, 2**31))
    assert e.value.status == 422
    assert [c["field"] for c in e.value.body["details"]["causes"]] == [field]
    assert await client.get_or_none(r, "default", "big") is None
    await client.create(r, _with(_workload(kind), field, 2**31 - 1))  # the largest int32 is fine


async def test_scale_beyond_int32_is_refused(client):
    r = BY_KIND["Deployment"]
    await client.create(r, _workload("Deployment"))
    with pytest.raises(ApiError) as e:
        await client.patch(r, "default", "big", {"spec": {"replicas": 2**31}}, sub="scale")
    assert e.value.status == 422
    assert (await client.get(r, "default", "big"))["spec"]["replicas"] == 1
