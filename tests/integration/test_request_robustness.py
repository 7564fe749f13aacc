"""The request path under input real clients and fuzzers send: typed query parameters, bounded
bodies, odd content types, escaped headers, concurrent patches. Each answer is a Status naming
what is wrong, never a 500 or a dropped connection, and a refused write stores nothing."""
import asyncio
import ssl
import threading

import aiohttp
import orjson
import pytest
from kubernetes import client as k8s, watch as k8s_watch

from conftest import wait_until

CMS = "/api/v1/namespaces/default/configmaps"
NS = "/api/v1/namespaces"


def cm(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": data}


async def call(server, method, url, body=None, ctype="application/json", headers=None):
    """(status, parsed body, headers) over real HTTPS; a dict or list goes as JSON, anything
    else (bytes, an async generator: a chunked body) as it is."""
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    h = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": ctype, **(headers or {})}
    data = orjson.dumps(body) if isinstance(body, (dict, list)) else body
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, server.cfg.url + url, data=data, headers=h) as r:
            raw = await r.read()
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = raw
            return r.status, parsed, r.headers


async def stored(server, name):
    status, _, _ = await call(server, "GET", f"{CMS}/{name}")
    return status == 200


# ---------------------------------------------------------------------------- query parameters
@pytest.mark.parametrize("spelling", ["True", "TRUE", "t", "1", ""])
async def test_watch_in_every_boolean_spelling_streams_events(server, spelling):
    """kubernetes_asyncio and the official client up to 36 send watch=True: they must get a
    watch (events), not a list."""
    status, _, _ = await call(server, "POST", CMS, cm("before"))
    assert status == 201
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    url = f"{server.cfg.url}{CMS}?watch={spelling}&allowWatchBookmarks={spelling}&timeoutSeconds=20"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(url, headers={"Authorization": f"Bearer {server.admin_token}"}) as r:
            assert r.status == 200
            first = orjson.loads(await asyncio.wait_for(r.content.readline(), 20))
            assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "before"
            await call(server, "POST", CMS, cm("after"))
            second = orjson.loads(await asyncio.wait_for(r.content.readline(), 20))
            assert second["type"] == "ADDED" and second["object"]["metadata"]["name"] == "after"


async def test_official_client_watch_gets_real_events(server, tmp_path):
    """kubernetes.watch.Watch() against the server: a watch that delivers the objects created
    while it runs. Client 37 sends watch=true (its typed arguments refuse the string "True");
    the spelling True that clients up to 36 sent is the wire-level test above. (The client
    is synchronous: it runs in a thread.)"""
    cfg = k8s.Configuration()
    cfg.host = server.cfg.url
    cfg.api_key = {"authorization": f"Bearer {server.admin_token}"}
    (tmp_path / "ca.crt").write_bytes(server.ca_pem)
    cfg.ssl_ca_cert = str(tmp_path / "ca.crt")
    api = k8s.ApiClient(cfg)
    v1 = k8s.CoreV1Api(api)

    w = k8s_watch.Watch()
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def run():
        try:
            for ev in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=20, allow_watch_bookmarks=True):
                seen.append((ev["type"], ev["object"].metadata.name))
                if ev["object"].metadata.name == "w-2":
                    w.stop()
        finally:
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        for i in range(3):
            await call(server, "POST", CMS, cm(f"w-{i}"))
        await wait_until(done.is_set, 30, what="the official client's watch to see w-2")
    finally:
        w.stop()
        await asyncio.to_thread(t.join, 30)
        api.close()
    assert ("ADDED", "w-2") in seen and ("ADDED", "w-0") in seen


@pytest.mark.parametrize("url, param", [
    (f"{CMS}?limit=abc", "limit"),
    (f"{CMS}?limit=1.5", "limit"),
    (f"{CMS}?watch=true&timeoutSeconds=nan", "timeoutSeconds"),
    (f"{CMS}?watch=maybe", "watch"),
    (f"{CMS}?watch=1&allowWatchBookmarks=yes", "allowWatchBookmarks"),
    (f"{CMS}?limit=99999999999999999999", "limit"),
])
async def test_bad_query_values_are_400_naming_the_parameter(server, url, param):
    status, body, _ = await call(server, "GET", url)
    assert status == 400 and body["reason"] == "BadRequest", body
    assert f'"{param}"' in body["message"]


async def test_delete_with_a_bad_grace_period_or_dry_run_deletes_nothing(server):
    await call(server, "POST", CMS, cm("keep"))
    status, body, _ = await call(server, "DELETE", f"{CMS}/keep?gracePeriodSeconds=abc")
    assert status == 400 and '"gracePeriodSeconds"' in body["message"]
    status, body, _ = await call(server, "DELETE", f"{CMS}/keep?dryRun=Bogus")
    assert status == 422 and body["details"]["kind"] == "DeleteOptions"
    assert body["details"]["causes"][0]["field"] == "dryRun"
    status, body, _ = await call(server, "DELETE", f"{CMS}?dryRun=Bogus")
    assert status == 422
    # kubectl delete --dry-run=server puts dryRun in the DeleteOptions body
    status, body, _ = await call(server, "DELETE", f"{CMS}/keep", {"dryRun": ["All"]})
    assert status == 200
    assert await stored(server, "keep")
    status, _, _ = await call(server, "DELETE", f"{CMS}/keep?dryRun=All")
    assert status == 200 and await stored(server, "keep")
    status, _, _ = await call(server, "DELETE", f"{CMS}/keep")
    assert status == 200 and not await stored(server, "keep")


async def test_create_with_a_bogus_dry_run_is_refused_and_not_stored(server):
    status, body, _ = await call(server, "POST", f"{CMS}?dryRun=Bogus", cm("nope"))
    assert status == 422 and body["details"]["kind"] == "CreateOptions"
    assert not await stored(server, "nope")


def test_pod_log_options_reach_the_agent_in_one_spelling():
    from starlette.datastructures import QueryParams

    from sendo.api.errors import APIError
    from sendo.api.podlogs import agent_params
    from sendo.api.query import Query

    assert agent_params(Query(QueryParams("follow=True&previous=F&tailLines=%2B3"))) == {
        "follow": "true", "previous": "false", "tailLines": "3"}
    with pytest.raises(APIError) as e:
        agent_params(Query(QueryParams("tailLines=ten")))
    assert e.value.code == 400 and '"tailLines"' in e.value.message


# ---------------------------------------------------------------------------- bounded input
async def test_bodies_over_3_mib_are_413_and_not_stored(server):
    big = cm("big", v="x" * (3 * 1024 * 1024))
    status, body, _ = await call(server, "POST", CMS, big)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"

    async def chunks():  # no Content-Length: the limit holds while reading
        yield orjson.dumps(cm("big"))[:-1] + b',"x":"'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}'
    status, body, _ = await call(server, "POST", CMS, chunks())
    assert status == 413 and body["kind"] == "Status"
    assert not await stored(server, "big")


def pod(name, *args):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i", "command": ["sh"], "args": list(args)}]}}


async def test_objects_over_the_stored_size_limit_are_refused(server):
    """A body under 3 MiB can still make an object beyond what etcd would store (~1.5 MiB)."""
    pods = "/api/v1/namespaces/default/pods"
    status, body, _ = await call(server, "POST", pods, pod("huge", "x" * (900 * 1024), "y" * (700 * 1024)))
    assert status == 413 and body["reason"] == "RequestEntityTooLarge", body["message"]
    assert "limit is 1572864" in body["message"]
    status, _, _ = await call(server, "GET", f"{pods}/huge")
    assert status == 404
    deploys = "/apis/apps/v1/namespaces/default/deployments"
    template = {"metadata": {"labels": {"app": "g"}}, "spec": pod("g", "x" * (900 * 1024))["spec"]}
    status, _, _ = await call(server, "POST", deploys, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "grows"},
        "spec": {"selector": {"matchLabels": {"app": "g"}}, "template": template}})
    assert status == 201
    status, body, _ = await call(server, "PATCH", f"{deploys}/grows", [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "y" * (700 * 1024)}],
        "application/json-patch+json")
    assert status == 413, body["message"]
    _, obj, _ = await call(server, "GET", f"{deploys}/grows")
    assert len(obj["spec"]["template"]["spec"]["containers"][0]["args"]) == 1


LAUGHS = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
"""


async def test_yaml_alias_bombs_are_refused(server):
    status, body, _ = await call(server, "POST", CMS, LAUGHS, "application/yaml")
    assert status == 400 and "aliases" in body["message"]
    status, body, _ = await call(server, "PATCH", f"{CMS}/lol?fieldManager=t", LAUGHS,
                                 "application/apply-patch+yaml")
    assert status == 400 and "aliases" in body["message"]
    assert not await stored(server, "lol")
    # a few aliases are ordinary YAML
    ok = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: alias, labels: &l {a: b}, annotations: *l}\n"
    status, body, _ = await call(server, "POST", CMS, ok, "application/yaml")
    assert status == 201 and body["metadata"]["annotations"] == {"a": "b"}


@pytest.mark.parametrize("extra", [
    b"x: !!binary aGVsbG8=", b"x: !!set {a, b}", b"x: .nan", b"x: 123456789012345678901234567890",
    b"x: {1: a, 2.5: b, null: c}", b"x: !!timestamp 2020-01-01T10:00:00Z", b"x: [!!binary aGk=]",
    b"? [a]\n: b", b"x: !!omap [a: 1]"])
async def test_yaml_values_json_lacks_are_converted_or_refused_never_500(server, extra):
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: odd, annotations: {t: 2020-01-01}}\n" + extra
    status, body, _ = await call(server, "POST", CMS, doc, "application/yaml")
    assert status in (201, 400), body
    if status == 201:  # timestamps stay the strings they were written as
        assert body["metadata"]["annotations"] == {"t": "2020-01-01"}
        await call(server, "DELETE", f"{CMS}/odd")


def nested(depth):
    v = "x"
    for _ in range(depth):
        v = {"a": v}
    return v


async def test_deep_nesting_is_400_in_bodies_patches_and_yaml(server):
    await call(server, "POST", CMS, cm("deep"))
    deep_yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\nx: " + b"[" * 5000 + b"]" * 5000
    status, body, _ = await call(server, "POST", CMS, deep_yaml, "application/yaml")
    assert status == 400 and "deeply" in body["message"]
    status, body, _ = await call(server, "PATCH", f"{CMS}/deep", b'{"x":' + b"[" * 500 + b"]" * 500 + b"}",
                                 "application/merge-patch+json")
    assert status == 400 and "deeply" in body["message"], body
    status, body, _ = await call(server, "PATCH", f"{CMS}/deep", {"x": nested(200)},
                                 "application/strategic-merge-patch+json")
    assert status == 400
    status, body, _ = await call(server, "POST", CMS, cm("d2") | {"x": nested(200)})
    assert status == 400 and not await stored(server, "d2")
    status, body, _ = await call(server, "PATCH", f"{CMS}/d3?fieldManager=t", cm("d3") | {"x": nested(200)},
                                 "application/apply-patch+yaml")
    assert status == 400 and not await stored(server, "d3")
    # nesting that real manifests have is fine, unknown fields included
    status, body, _ = await call(server, "POST", f"{CMS}?fieldValidation=Warn", cm("d4") | {"x": nested(90)})
    assert status == 201


# ---------------------------------------------------------------------------- request-level errors
async def test_a_non_utf8_charset_is_415(server):
    body = orjson.dumps(cm("u16")).decode().encode("utf-16")
    status, resp, _ = await call(server, "POST", CMS, body, "application/json; charset=utf-16")
    assert status == 415 and resp["reason"] == "UnsupportedMediaType" and "utf-16" in resp["message"]
    status, resp, _ = await call(server, "POST", CMS, cm("u8"), "application/json; charset=UTF-8")
    assert status == 201
    assert not await stored(server, "u16")


async def test_exact_list_at_a_future_revision_is_504_too_large(server):
    status, body, _ = await call(server, "GET", f"{CMS}?resourceVersion=99999999999999&resourceVersionMatch=Exact")
    assert status == 504 and body["reason"] == "Timeout"
    assert body["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                          "message": "Too large resource version"}]
    assert body["message"].startswith("Timeout: Too large resource version: 99999999999999, current: ")
    status, body, _ = await call(server, "GET", f"{CMS}?resourceVersion=99999999999999999999999"
                                 "&resourceVersionMatch=Exact")
    assert status == 504
    status, body, _ = await call(server, "GET", f"{CMS}?resourceVersion=abc&resourceVersionMatch=Exact")
    assert status == 400
    status, body, _ = await call(server, "GET", f"{CMS}?resourceVersion=1&resourceVersionMatch=Bogus")
    assert status == 422 and body["details"]["causes"][0]["field"] == "resourceVersionMatch"
    status, body, _ = await call(server, "GET", f"{CMS}?watch=1&resourceVersion=99999999999999")
    assert status == 504


async def test_finalize_with_finalizers_not_a_list_is_422(server):
    await call(server, "POST", NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fin"}})
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fin"}, "spec": {"finalizers": 5}}
    status, body, _ = await call(server, "PUT", f"{NS}/fin/finalize", ns)
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.finalizers", body
    status, body, _ = await call(server, "PUT", f"{NS}/fin/finalize", ns | {"spec": 5})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec"


async def test_warnings_with_control_characters_arrive_escaped(server):
    """fieldValidation=Warn names an unknown field "x\\ny": the newline must not end the header
    (uvicorn dropped the response after the object was stored)."""
    obj = cm("warned") | {"x\ny": 1, 'q"uote': 2}
    status, body, headers = await call(server, "POST", f"{CMS}?fieldValidation=Warn", obj)
    assert status == 201 and body["metadata"]["name"] == "warned"
    warnings = headers.getall("Warning")
    assert '299 - "unknown field \\"x\\ny\\""' in warnings, warnings
    assert '299 - "unknown field \\"q\\"uote\\""' in warnings


@pytest.mark.parametrize("ctype", ["application/merge-patch+json", "application/strategic-merge-patch+json"])
async def test_a_patch_whose_metadata_is_not_an_object_is_400(server, ctype):
    await call(server, "POST", CMS, cm("pm"))
    status, body, _ = await call(server, "PATCH", f"{CMS}/pm", b'{"metadata": 5}', ctype)
    assert status == 400 and "metadata" in body["message"], body


SWEEP_BODIES = [b"", b"null", b"[]", b"5", b'"x"', b"{}", b'{"metadata": 5}', b'{"metadata": {"name": 5}}',
                b'{"gracePeriodSeconds": 1.5}', b'{"preconditions": 5}', b'{"propagationPolicy": 5}',
                b'{"dryRun": [5]}', b'{"data": 5}', b'[{"op": "add", "path": 5}]', b"\xff\xfe",
                b'{"metadata": {"labels": [1]}}', b'{"kind": 5}']
SWEEP_TYPES = ["application/json", "application/merge-patch+json", "application/json-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/yaml",
               "application/json; charset=latin-1", "bogus/; ;;="]


async def test_a_sweep_of_malformed_writes_gets_no_5xx(server):
    """Hand-made hostile writes over every write verb and body format: each answer is a 4xx
    (or a success), never a 5xx or a dropped connection. Bounded: 4 x 3 x 8 x 17 requests."""
    await call(server, "POST", CMS, cm("a"))
    urls = [f"{CMS}/a?fieldManager=f", "/api/v1/namespaces/default/finalize", CMS]
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    failures = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for url in urls:
                for ctype in SWEEP_TYPES:
                    for body in SWEEP_BODIES:
                        h = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": ctype}
                        async with s.request(method, server.cfg.url + url, data=body, headers=h) as r:
                            if r.status >= 500:
                                failures.append((method, url, ctype, body, r.status, await r.text()))
    assert failures == []


# ---------------------------------------------------------------------------- concurrency
async def test_concurrent_merge_patches_on_one_key_all_apply(server):
    """32 writers patching one object without a resourceVersion: every patch applies (Kubernetes
    retries non-conditional patches until they do; a fixed 20 retries failed here), bounded
    in count and time."""
    writers, per_writer = 32, 6
    await call(server, "POST", CMS, cm("hot"))
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    h = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/merge-patch+json"}
    failures = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=writers)) as s:
        async def writer(w):
            for i in range(per_writer):
                patch = orjson.dumps({"data": {f"w{w}": str(i)}})
                async with s.patch(f"{server.cfg.url}{CMS}/hot", data=patch, headers=h) as r:
                    if r.status != 200:
                        failures.append((r.status, await r.text()))
        async with asyncio.timeout(240):
            await asyncio.gather(*(writer(w) for w in range(writers)))
    assert failures == []
    _, obj, _ = await call(server, "GET", f"{CMS}/hot")
    assert obj["data"] == {f"w{w}": str(per_writer - 1) for w in range(writers)}
