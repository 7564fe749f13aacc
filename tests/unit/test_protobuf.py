"""Kubernetes protobuf request bodies (sendo.api.protobuf): the wire decoder, checked with a
tiny encoder written here, with hypothesis round-trips and fuzzing. The proof against the
real kubectl's bodies is tests/integration/test_protobuf.py.
"""
from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendo.api.protobuf import ProtobufError, decode, is_protobuf


# --------------------------------------------------------------------------- tiny encoder

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers: 64-bit two's complement, as Go writes them
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(num: int, wt: int) -> bytes:
    return varint(num << 3 | wt)


def f_int(num: int, v: int) -> bytes:
    return tag(num, 0) + varint(v)


def f_bytes(num: int, b: bytes) -> bytes:
    return tag(num, 2) + varint(len(b)) + b


def f_str(num: int, s: str) -> bytes:
    return f_bytes(num, s.encode())


def f_msg(num: int, *parts: bytes) -> bytes:
    return f_bytes(num, b"".join(parts))


def f_map(num: int, items: dict[str, Any]) -> bytes:
    out = b""
    for k, v in items.items():
        out += f_msg(num, f_str(1, k), f_bytes(2, v) if isinstance(v, bytes) else f_str(2, v))
    return out


def envelope(api_version: str, kind: str, raw: bytes, encoding: str = "") -> bytes:
    unknown = f_msg(1, f_str(1, api_version), f_str(2, kind)) + f_bytes(2, raw)
    unknown += f_str(3, encoding) + f_str(4, "")
    return b"k8s\x00" + unknown


def meta(name: str = "x", **more: bytes) -> bytes:
    return f_msg(1, f_str(1, name), *more.values())


# --------------------------------------------------------------------------- the wire decoder

def test_varints_of_every_width_decode():
    from sendo.api.protobuf import fields

    for n in [0, 1, 127, 128, 300, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]:
        assert list(fields(f_int(5, n))) == [(5, 0, n)]


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=2**29 - 1))
def test_varint_round_trip(n, num):
    from sendo.api.protobuf import fields

    assert list(fields(f_int(num, n))) == [(num, 0, n)]


@given(st.integers(min_value=-2**31, max_value=2**31 - 1))
def test_int32_including_negative(value):
    body = envelope("scheduling.k8s.io/v1", "PriorityClass", meta("pc") + f_int(2, value))
    assert decode(body)["value"] == value  # value has no omitempty: 0 is printed too


@given(st.integers(min_value=-2**63, max_value=2**63 - 1))
def test_int64_including_negative(seconds):
    tol = f_msg(22, f_str(2, "Exists"), f_int(5, seconds))
    body = envelope("v1", "Pod", meta("p") + f_msg(2, tol))
    assert decode(body)["spec"]["tolerations"] == [{"operator": "Exists", "tolerationSeconds": seconds}]


keys = st.text(min_size=1, max_size=20)


@given(st.dictionaries(keys, st.text(max_size=50), max_size=8),
       st.dictionaries(keys, st.binary(max_size=50), max_size=8),
       st.dictionaries(keys, st.text(max_size=20), max_size=5))
def test_configmap_maps_round_trip(data, binary, labels):
    body = envelope("v1", "ConfigMap", meta("cm", labels=f_map(11, labels)) + f_map(2, data) + f_map(3, binary))
    got = decode(body)
    want: dict[str, Any] = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm"}}
    if labels:
        want["metadata"]["labels"] = labels
    if data:
        want["data"] = data
    if binary:
        want["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    assert got == want


@given(st.dictionaries(keys, st.binary(max_size=64), min_size=1, max_size=8),
       st.lists(st.text(max_size=30), max_size=6))
def test_secret_bytes_and_repeated_strings(data, finalizers):
    md = meta("s", fin=b"".join(f_str(14, f) for f in finalizers))
    got = decode(envelope("v1", "Secret", md + f_map(2, data) + f_str(3, "Opaque")))
    assert {k: base64.b64decode(v) for k, v in got["data"].items()} == data
    assert got["type"] == "Opaque"
    assert got["metadata"].get("finalizers", []) == finalizers


def deployment_parts(replicas: int, labels: dict[str, str]) -> list[bytes]:
    """A Deployment as a list of top-level fields (so unknown ones can be slipped between)."""
    container = f_msg(2, f_str(1, "web"), f_str(2, "nginx"), f_msg(6, f_int(3, 80)), f_msg(8))
    template = f_msg(3, f_msg(1, f_map(11, labels)), f_msg(2, container))
    spec = f_msg(2, f_int(1, replicas), f_msg(2, f_map(1, labels)), template, f_msg(4))
    return [meta("web", ns=f_str(3, "default")), spec, f_msg(3)]


def deployment_json(replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    ml = {"labels": labels} if labels else {}
    sel = {"matchLabels": labels} if labels else {}
    return {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": sel,
                     "template": {"metadata": ml, "spec": {"containers": [
                         {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}},
                     "strategy": {}},
            "status": {}}


unknown_field = st.one_of(
    st.builds(lambda n, v: f_int(n, v), st.integers(20, 2000), st.integers(0, 2**64 - 1)),
    st.builds(lambda n, b: f_bytes(n, b), st.integers(20, 2000), st.binary(max_size=20)),
    st.builds(lambda n, b: tag(n, 1) + b, st.integers(20, 2000), st.binary(min_size=8, max_size=8)),
    st.builds(lambda n, b: tag(n, 5) + b, st.integers(20, 2000), st.binary(min_size=4, max_size=4)),
)


@given(st.integers(0, 1000), st.dictionaries(keys, st.text(max_size=10), max_size=3),
       st.lists(unknown_field, max_size=4), st.randoms(use_true_random=False))
def test_nested_messages_and_unknown_fields_are_skipped(replicas, labels, unknown, rnd):
    parts = deployment_parts(replicas, labels)
    for u in unknown:  # fields newer than our tables, anywhere among the known ones
        parts.insert(rnd.randint(0, len(parts)), u)
    assert decode(envelope("apps/v1", "Deployment", b"".join(parts))) == deployment_json(replicas, labels)


def test_replicas_zero_is_kept_but_other_zero_scalars_are_omitted():
    raw = meta("web", gen=f_int(7, 0), uid=f_str(5, "")) + f_msg(2, f_int(1, 0), f_int(5, 0), f_int(7, 0))
    got = decode(envelope("apps/v1", "Deployment", raw))
    assert got["metadata"] == {"name": "web"}  # generation 0 and uid "" are omitempty in Go
    assert got["spec"] == {"replicas": 0}  # replicas is a pointer; minReadySeconds and paused are not


@given(st.lists(st.integers(min_value=-2**63, max_value=2**63 - 1), min_size=1, max_size=10))
def test_repeated_ints_packed_or_not(groups):
    packed = f_bytes(4, b"".join(varint(g) for g in groups))
    unpacked = b"".join(f_int(4, g) for g in groups)
    for enc in (packed, unpacked):
        body = envelope("v1", "Pod", meta("p") + f_msg(2, f_msg(14, enc)))
        assert decode(body)["spec"]["securityContext"] == {"supplementalGroups": groups}


def test_times_quantities_and_int_or_string():
    md = meta("svc", created=f_msg(8, f_int(1, 1700000000), f_int(2, 5)), deleted=f_msg(9),
              grace=f_int(10, 30))
    port = f_msg(1, f_str(1, "http"), f_int(3, 80), f_msg(4, f_int(1, 1), f_str(3, "web")))
    port2 = f_msg(1, f_int(3, 443), f_msg(4, f_int(1, 0), f_int(2, 8443)))
    got = decode(envelope("v1", "Service", md + f_msg(2, port, port2)))
    # an empty Time is Go's zero time: left out, like creationTimestamp in kubectl's own JSON
    assert got["metadata"] == {"name": "svc", "creationTimestamp": "2023-11-14T22:13:20Z",
                               "deletionGracePeriodSeconds": 30}
    assert got["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "web"},
                                    {"port": 443, "targetPort": 8443}]
    hard = f_map(1, {}) + b"".join(f_msg(1, f_str(1, k), f_msg(2, f_str(1, v)))
                                   for k, v in {"cpu": "1500m", "memory": "1Gi"}.items())
    got = decode(envelope("v1", "ResourceQuota", meta("q") + f_msg(2, hard)))
    assert got["spec"] == {"hard": {"cpu": "1500m", "memory": "1Gi"}}


def test_managed_fields_and_owner_references():
    entry = f_msg(17, f_str(1, "kubectl"), f_str(2, "Update"), f_str(3, "v1"),
                  f_msg(4, f_int(1, 0), f_int(2, 0)), f_str(6, "FieldsV1"),
                  f_msg(7, f_str(1, '{"f:data":{"f:a":{}}}')))
    owner = f_msg(13, f_str(1, "ReplicaSet"), f_str(3, "rs"), f_str(4, "uid-rs"), f_str(5, "apps/v1"),
                  f_int(6, 1), f_int(7, 0))
    got = decode(envelope("v1", "ConfigMap", meta("cm", owner=owner, entry=entry)))
    assert got["metadata"] == {
        "name": "cm",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "uid-rs",
                             "controller": True, "blockOwnerDeletion": False}],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                           "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:data": {"f:a": {}}}}]}


def test_binding_for_schedulers():
    target = f_msg(2, f_str(1, "Node"), f_str(3, "n1"))
    got = decode(envelope("v1", "Binding", meta("p1", ns=f_str(3, "default")) + target))
    assert got == {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "p1", "namespace": "default"},
                   "target": {"kind": "Node", "name": "n1"}}


def test_delete_options_under_any_api_version():
    raw = f_int(1, 0) + f_msg(2, f_str(1, "uid-1")) + f_str(4, "Foreground") + f_str(5, "All")
    for gv in ("v1", "meta.k8s.io/v1", "apps/v1"):
        assert decode(envelope(gv, "DeleteOptions", raw)) == {
            "kind": "DeleteOptions", "apiVersion": gv, "gracePeriodSeconds": 0,
            "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]}


def test_is_protobuf():
    assert is_protobuf("application/vnd.kubernetes.protobuf")
    assert is_protobuf("application/vnd.kubernetes.protobuf; charset=binary")
    assert not is_protobuf("application/json")
    assert not is_protobuf("")


GOOD = envelope("v1", "ConfigMap", meta("cm") + f_map(2, {"a": "b"}))


@pytest.mark.parametrize("body, problem", [
    (b"", "magic"),
    (b"{\"kind\": \"ConfigMap\"}", "magic"),
    (GOOD[:-6], "past the end"),
    (b"k8s\x00\x0a\x80", "truncated varint"),
    (b"k8s\x00" + f_int(1, 5), "wire type"),
    (b"k8s\x00\x08" + b"\xff" * 11, "longer than 10 bytes"),
    (b"k8s\x00\x0b", "wire type 3"),
    (b"k8s\x00\x02\x00", "field number 0"),
    (envelope("apps/v1", "StatefulSet", meta("s")), "no protobuf schema for apps/v1 StatefulSet"),
    (envelope("v1", "", b""), "no apiVersion and kind"),
    (envelope("v1", "ConfigMap", b"", encoding="gzip"), "content encoding 'gzip'"),
    (envelope("v1", "ConfigMap", f_msg(1, f_bytes(1, b"\xff\xfe"))), "not valid UTF-8"),
    (envelope("v1", "ConfigMap", f_msg(1, f_int(1, 7))), "ObjectMeta.name has wire type 0"),
    (envelope("v1", "ConfigMap", f_str(1, "x")), "truncated varint"),
    (envelope("apps/v1", "Deployment", f_int(2, 3)), "expected a message"),
    (envelope("v1", "ConfigMap", f_int(2, 3)), "expected a map entry"),
    (envelope("v1", "Namespace", meta("n") + f_msg(3, f_str(1, "Active"))), "status"),
    (envelope("v1", "ResourceQuota", f_msg(2, f_msg(1, f_str(1, "cpu"), f_msg(2)))), "quantity has no value"),
])
def test_malformed_bodies_raise_protobuf_error(body, problem):
    with pytest.raises(ProtobufError) as e:
        decode(body)
    assert problem in str(e.value)
    assert "as JSON" in str(e.value) and "kubectl apply -f" in str(e.value)


def test_empty_status_is_accepted_and_nonempty_refused():
    zeros = f_msg(3, f_int(1, 0), f_msg(2), f_msg(3, f_int(1, 0)))
    assert decode(envelope("apps/v1", "Deployment", meta("d") + zeros))["status"] == {}
    with pytest.raises(ProtobufError):
        decode(envelope("apps/v1", "Deployment", meta("d") + f_msg(3, f_int(2, 3))))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_protobuf_error(junk):
    for body in (b"k8s\x00" + junk, envelope("apps/v1", "Deployment", junk), envelope("v1", "Pod", junk)):
        try:
            assert isinstance(decode(body), dict)
        except ProtobufError:
            pass


@given(st.data())
def test_mutated_real_bodies_decode_or_raise_protobuf_error(data):
    body = bytearray(envelope("apps/v1", "Deployment", b"".join(deployment_parts(3, {"app": "web"}))))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    body = body[:data.draw(st.integers(4, len(body)))]
    try:
        assert isinstance(decode(bytes(body)), dict)
    except ProtobufError:
        pass
