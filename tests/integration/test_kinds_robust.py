"""Hostile input through the real API: wrong JSON types in metadata, integers beyond int32.

Every answer must be a 4xx Status naming the field at fault: a fuzzer sent
`metadata.generateName: [1]` to every kind and got 500s, and `replicas: 2147483648`
was stored and made thousands of pods.
"""
from __future__ import annotations

import copy
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


# ----------------------------------------------------------------- any field of any kind

_T = {"metadata": {"labels": {"app": "s"}},
      "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                               "ports": [{"containerPort": 80, "name": "http"}],
                               "env": [{"name": "A", "value": "b"},
                                       {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                               "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                               "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                               "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
               "volumes": [{"name": "v", "emptyDir": {}}],
               "tolerations": [{"key": "k", "operator": "Exists"}],
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                   {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}]}}}}}
_SEL = {"matchLabels": {"app": "s"}}
_CLAIM = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def _template(**spec) -> dict:
    t = copy.deepcopy(_T)
    t["spec"].update(spec)
    return t


# One valid object of each built-in kind (the ones that hold more than metadata), with most
# of its optional structure filled in, so that every field path is somewhere to aim at.
SAMPLES = {
    "Pod": {"spec": _template()["spec"]},
    "Service": {"spec": {"selector": {"app": "s"}, "type": "NodePort", "sessionAffinity": "ClientIP",
                         "ports": [{"port": 80, "targetPort": "http", "name": "h"}]}},
    "ConfigMap": {"data": {"a": "b"}, "binaryData": {"b": "YQ=="}},
    "Secret": {"type": "Opaque", "data": {"a": "YQ=="}, "stringData": {"c": "d"}},
    "ServiceAccount": {"secrets": [{"name": "x"}], "imagePullSecrets": [{"name": "y"}]},
    "Endpoints": {"subsets": [{"addresses": [{"ip": "127.0.0.5"}], "ports": [{"port": 80, "name": "h"}]}]},
    "PersistentVolumeClaim": {"spec": copy.deepcopy(_CLAIM)},
    "Event": {"involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"}, "reason": "R",
              "message": "m", "type": "Normal", "count": 1},
    "Namespace": {"spec": {"finalizers": ["kubernetes"]}},
    "Node": {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "podCIDR": "127.64.0.0/24"}},
    "ReplicationController": {"spec": {"replicas": 1, "selector": {"app": "s"}, "template": _template()}},
    "Deployment": {"spec": {"replicas": 1, "selector": _SEL, "template": _template(), "strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}}},
    "ReplicaSet": {"spec": {"replicas": 1, "selector": _SEL, "template": _template()}},
    "DaemonSet": {"spec": {"selector": _SEL, "template": _template(), "updateStrategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}},
    "StatefulSet": {"spec": {"replicas": 1, "serviceName": "s", "selector": _SEL, "template": _template(),
                             "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": copy.deepcopy(_CLAIM)}]}},
    "Job": {"spec": {"parallelism": 1, "completions": 1, "backoffLimit": 2, "template": _template(
        restartPolicy="Never"), "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}}},
    "CronJob": {"spec": {"schedule": "*/5 * * * *", "timeZone": "UTC",
                         "jobTemplate": {"spec": {"template": _template(restartPolicy="OnFailure")}}}},
    "Ingress": {"spec": {"ingressClassName": "x", "tls": [{"hosts": ["a.example.com"], "secretName": "t"}],
                         "rules": [{"host": "a.example.com", "http": {"paths": [{
                             "path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}},
    "IngressClass": {"spec": {"controller": "sendo.io/ingress",
                              "parameters": {"kind": "X", "name": "y", "apiGroup": "g", "scope": "Cluster"}}},
    "NetworkPolicy": {"spec": {"podSelector": _SEL, "policyTypes": ["Ingress"], "ingress": [{
        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
        "ports": [{"port": 80, "endPort": 90, "protocol": "TCP"}]}]}},
    "EndpointSlice": {"addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.5"], "conditions": {"ready": True}}],
                      "ports": [{"port": 80, "name": "h", "protocol": "TCP"}]},
    "Lease": {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 10,
                       "renewTime": "2024-01-01T00:00:00.000000Z"}},
}


def _field_paths(v, prefix=()):
    """Every path below the object's top level, containers and leaves alike."""
    if prefix:
        yield prefix
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        yield from _field_paths(x, prefix + (k,))


FIELD_CASES = [(kind, p) for kind, sample in SAMPLES.items() for p in _field_paths(sample)]
ANY_WRONG = st.one_of(WRONG, st.sampled_from([None, [], {}, "", 2**31, 2**63, 2**70, -1]))


def _sample(kind: str, name: str, field: tuple = (), value=None) -> dict:
    """The sample object of a kind, named `name`, with `value` put at `field` when one is given."""
    r = BY_KIND[kind]
    body = {"apiVersion": r.api_version, "kind": kind, "metadata": {"name": name}, **copy.deepcopy(SAMPLES[kind])}
    if field:
        cur = body
        for k in field[:-1]:
            cur = cur[k]
        cur[field[-1]] = value
    return body


def _writes(r) -> list[tuple[str, str, str]]:
    """A create of a new object and an update of the stored sample: (name, method, URL)."""
    return [("fresh", "POST", _url(r)), ("sample", "PUT", _url(r, "sample"))]


@pytest.fixture
async def samples(client):
    for kind in SAMPLES:
        status = await _answer(client, "POST", _url(BY_KIND[kind]), _sample(kind, "sample"))
        assert status == 201, kind
    return SAMPLES


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(FIELD_CASES), value=ANY_WRONG)
async def test_wrong_types_anywhere_in_any_kind_never_5xx(client, samples, case, value):
    kind, field = case
    r = BY_KIND[kind]
    for name, method, url in _writes(r):
        if await _answer(client, method, url, _sample(kind, name, field, value)) < 300 and method == "POST":
            await _answer(client, "DELETE", _url(r, name), None)


@pytest.mark.parametrize("kind,field", [  # each one answered 500 once (a list or object used as a set member)
    ("Pod", ("spec", "containers", 0, "volumeMounts", 0, "name")),
    ("Job", ("spec", "template", "spec", "containers", 0, "name")),
    ("StatefulSet", ("spec", "template", "spec", "volumes", 0, "name")),
    ("Node", ("spec", "taints", 0, "key")),
    ("Node", ("spec",)),
    ("ReplicationController", ("spec", "template", "metadata", "labels")),
    ("Service", ("spec", "ports", 0, "port")),
])
async def test_found_by_fuzzing_each_is_a_4xx(client, samples, kind, field):
    for name, method, url in _writes(BY_KIND[kind]):
        assert 400 <= await _answer(client, method, url, _sample(kind, name, field, [1])) < 500


async def test_crd_version_name_of_the_wrong_type_is_a_4xx(client):
    body = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "foos.ex.com"},
            "spec": {"group": "ex.com", "scope": "Namespaced", "names": {"plural": "foos", "kind": "Foo"},
                     "versions": [{"name": ["v1"], "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    assert await _answer(client, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body) == 422


INT32_FIELDS = [
    ("Deployment", ("spec", "replicas")), ("Deployment", ("spec", "revisionHistoryLimit")),
    ("Deployment", ("spec", "progressDeadlineSeconds")),
    ("Deployment", ("spec", "strategy", "rollingUpdate", "maxSurge")),
    ("ReplicaSet", ("spec", "replicas")), ("StatefulSet", ("spec", "replicas")),
    ("StatefulSet", ("spec", "minReadySeconds")), ("DaemonSet", ("spec", "minReadySeconds")),
    ("DaemonSet", ("spec", "updateStrategy", "rollingUpdate", "maxUnavailable")),
    ("ReplicationController", ("spec", "replicas")),
    ("Job", ("spec", "parallelism")), ("Job", ("spec", "completions")), ("Job", ("spec", "backoffLimit")),
    ("Job", ("spec", "podFailurePolicy", "rules", 0, "onExitCodes", "values", 0)),
    ("CronJob", ("spec", "successfulJobsHistoryLimit")), ("EndpointSlice", ("ports", 0, "port")),
    ("Pod", ("spec", "containers", 0, "readinessProbe", "periodSeconds")),
]


def _dotted(field: tuple) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in field).lstrip(".")


@pytest.mark.parametrize("kind,field", INT32_FIELDS)
async def test_int32_fields_refuse_larger_numbers(client, kind, field):
    r = BY_KIND[kind]
    for too_big in (2**31, -(2**31) - 1, 2**63):
        with pytest.raises(ApiError) as e:
            await client.create(r, _sample(kind, "big", field, too_big), "default")
        assert e.value.status == 422
        assert [c["field"] for c in e.value.body["details"]["causes"]] == [_dotted(field)]
        assert await client.get_or_none(r, "default", "big") is None


async def test_scale_beyond_int32_is_refused(client):
    r = BY_KIND["Deployment"]
    await client.create(r, _sample("Deployment", "big"), "default")
    with pytest.raises(ApiError) as e:
        await client.patch(r, "default", "big", {"spec": {"replicas": 2**31}}, sub="scale")
    assert e.value.status == 422
    assert (await client.get(r, "default", "big"))["spec"]["replicas"] == 1
