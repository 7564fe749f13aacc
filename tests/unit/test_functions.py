"""Functions: the invoker (a real aiohttp server on loopback), the autoscaler's maths, the
kind's checks and what the controller derives from a Function."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sendo.client import kind
from sendo.controllers.function import backoff_delays, desired_deployment, desired_ingress, http_enabled
from sendo.functions.autoscale import Autoscaler, Settings
from sendo.functions.events import cluster_event, cron_event
from sendo.functions.invoker import Gate, Invoker, QueueFull, load_handler, to_response
from sendo.kinds.function import FUNCTION_RESOURCE, version_of


# ----------------------------------------------------------------- invoker

@pytest.fixture
async def serve():
    clients = []

    async def start(source: str, **kw) -> TestClient:
        inv = Invoker(load_handler(source, "main.handle"), name="f", **kw)
        c = TestClient(TestServer(inv.app(), host="127.0.0.1"))
        await c.start_server()
        c.invoker = inv
        clients.append(c)
        return c
    yield start
    for c in clients:
        await c.close()


async def test_http_event_shape_and_json_answer(serve):
    c = await serve("def handle(event, context):\n    return {'e': event, 'fn': context.function_name}\n",
                    path_prefix="/functions/default/f")
    r = await c.post("/functions/default/f/sub?x=1", json={"name": "a"})
    assert r.status == 200 and r.content_type == "application/json"
    body = await r.json()
    e = body["e"]
    assert (e["method"], e["path"], e["query"], e["json"]) == ("POST", "/sub", {"x": "1"}, {"name": "a"})
    assert e["body"] == '{"name": "a"}' and body["fn"] == "f"
    r = await c.get("/elsewhere")
    assert (await r.json())["e"]["path"] == "/elsewhere" and (await r.json())["e"]["json"] is None


@pytest.mark.parametrize("result, status, ctype, body", [
    ({"a": 1}, 200, "application/json", b'{"a":1}'),
    ([1, 2], 200, "application/json", b"[1,2]"),
    ("hi", 200, "text/plain; charset=utf-8", b"hi"),
    (b"\x00", 200, "application/octet-stream", b"\x00"),
    ((201, {"id": 3}), 201, "application/json", b'{"id":3}'),
    ((404, "no"), 404, "text/plain; charset=utf-8", b"no"),
    (None, 204, "text/plain", b""),
])
def test_return_conventions(result, status, ctype, body):
    assert to_response(result)[:3] == (status, ctype, body)


def test_three_tuple_sets_headers():
    assert to_response((202, "x", {"X-A": 1}))[3] == {"X-A": "1"}


async def test_exception_is_500_and_the_traceback_only_in_the_log(serve, capsys):
    c = await serve("def handle(event, context):\n    raise ValueError('secret detail')\n")
    r = await c.get("/")
    text = await r.text()
    assert r.status == 500 and "secret detail" not in text and "invocationId" in text
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: secret detail" in err


async def test_timeout_is_504(serve):
    c = await serve("import time\ndef handle(event, context):\n    time.sleep(1.0)\n    return 'late'\n",
                    timeout=0.2)
    r = await c.get("/")
    assert r.status == 504


async def test_async_handler_and_cloud_event(serve):
    c = await serve("async def handle(event, context):\n    return event['type']\n")
    r = await c.post("/_sendo/event", json={"specversion": "1.0", "type": "t.x", "id": "1", "source": "/s"})
    assert r.status == 200 and await r.text() == "t.x"


async def test_concurrency_is_capped_and_the_rest_queue(serve):
    c = await serve(
        "import threading, time\nlock = threading.Lock()\nnow = most = 0\n"
        "def handle(event, context):\n    global now, most\n    with lock:\n        now += 1; most = max(most, now)\n"
        "    time.sleep(0.1)\n    with lock:\n        now -= 1\n    return most\n", concurrency=2, queue_depth=10)
    answers = await asyncio.gather(*(c.get("/") for _ in range(8)))
    assert [r.status for r in answers] == [200] * 8
    assert max([int(await r.text()) for r in answers]) == 2
    stats = await (await c.get("/_sendo/stats")).json()
    assert stats["invocations"] == 8 and stats["inFlight"] == 0


async def test_beyond_the_queue_bound_is_429(serve):
    release = threading.Event()
    c = await serve("def handle(event, context):\n    EV.wait(5)\n    return 'ok'\n", concurrency=1, queue_depth=1)
    c.invoker.fn.__globals__["EV"] = release
    first = asyncio.ensure_future(c.get("/"))
    second = asyncio.ensure_future(c.get("/"))
    t0 = time.monotonic()
    while c.invoker.gate.in_flight < 2 and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.01)  # until one runs and one waits
    third = await c.get("/")
    assert third.status == 429
    release.set()
    assert [(await first).status, (await second).status] == [200, 200]
    assert (await (await c.get("/_sendo/stats")).json())["rejected"] == 1


async def test_gate_hands_slots_over_in_order():
    g = Gate(1, 2)
    await g.acquire()
    order = []

    async def waiter(i):
        await g.acquire()
        order.append(i)
    tasks = [asyncio.ensure_future(waiter(i)) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await g.acquire()
    assert g.in_flight == 3
    g.release()
    await asyncio.sleep(0)
    g.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1] and g.running == 1


# ----------------------------------------------------------------- autoscaler

def test_target_is_concurrency_times_utilization():
    assert Settings(concurrency=10).target == pytest.approx(7.0)


def test_stable_mode_averages_the_window():
    a = Autoscaler(Settings(concurrency=10, max_scale=100))
    for t in range(60):
        a.record(float(t), 14.0, True)
    assert a.desired(59.0, ready=2) == 2  # 14 / 7
    for t in range(60, 120):
        a.record(float(t), 35.0, True)
    assert a.desired(119.0, ready=2) == 5  # the window now holds only 35s; panic also says 5


def test_panic_scales_up_at_once_and_never_down_while_it_lasts():
    a = Autoscaler(Settings(concurrency=10, max_scale=100, stable_window=60, panic_window=6))
    for t in range(53):
        a.record(float(t), 7.0, True)
    for t in range(53, 60):  # the panic window's 7 samples (53..59)
        a.record(float(t), 70.0, True)  # 10x the target of the one instance
    assert a.desired(59.0, ready=1) == 10 and a.in_panic(59.0)
    for t in range(60, 70):
        a.record(float(t), 7.0, True)
    assert a.desired(69.0, ready=10) == 10  # still panicking: no scale down
    assert not a.in_panic(59.0 + 61)


def test_scale_to_zero_only_after_idle_time_and_bounds():
    s = Settings(concurrency=1, target_utilization=1.0, scale_to_zero_after=10, stable_window=5, panic_window=1)
    a = Autoscaler(s)
    a.record(0.0, 1.0, True)
    assert a.desired(0.0, ready=0) == 1  # demand at zero: one instance
    for t in range(1, 10):
        a.record(float(t), 0.0, False)
    assert a.desired(9.0, ready=1) == 1  # idle, but not for long enough
    a.record(10.5, 0.0, False)
    assert a.desired(10.5, ready=1) == 0
    s.min_scale = 2
    assert a.desired(11.0, ready=0) == 2
    s.min_scale, s.max_scale = 0, 1
    for t in range(12, 20):
        a.record(float(t), 50.0, True)
    assert a.desired(19.0, ready=1) == 1


def test_settings_from_spec():
    s = Settings.from_spec({"concurrency": 2, "maxScale": 1, "scaleToZeroAfterSeconds": 3,
                            "autoscaling": {"stableWindowSeconds": 3, "panicWindowSeconds": 1}})
    assert (s.concurrency, s.max_scale, s.scale_to_zero_after, s.stable_window, s.panic_window) == (2, 1, 3, 3, 1)


# ----------------------------------------------------------------- kind and controller

def fn(source="def handle(event, context):\n    return 1\n", **spec):
    o = {"apiVersion": "sendo.dev/v1alpha1", "kind": "Function",
         "metadata": {"name": "f", "namespace": "default", "uid": "u1"},
         "spec": {"handler": "main.handle", "source": {"inline": source}, **spec}}
    FUNCTION_RESOURCE.strategy.default(o)
    return o


def texts(o):
    return [c.text() for c in FUNCTION_RESOURCE.strategy.validate(o)]


def test_syntax_error_names_the_field_and_line():
    (msg,) = texts(fn("def handle(e, c):\n    return 1\nx = [\n"))
    assert msg.startswith("spec.source.inline:") and "line 3" in msg


def test_handler_must_resolve():
    assert texts(fn(handler="handle")) == ['spec.handler: Invalid value: "handle": must be module.function, '
                                           'e.g. main.handle']
    assert "defines no top-level 'other'" in texts(fn(handler="main.other"))[0]
    assert texts(fn("from x import handle\n")) == []


def test_schema_and_cross_field_checks():
    assert any(t.startswith("spec.concurrency") for t in texts(fn(concurrency=0)))
    assert any(t.startswith("spec.minScale") for t in texts(fn(minScale=3, maxScale=2)))
    assert any(t.startswith("spec.triggers[0].cron.schedule") for t in texts(fn(triggers=[{"cron": {"schedule": "x"}}])))
    assert texts(fn(triggers=[{"cron": {"schedule": "@every 5s", "timeZone": "Asia/Tokyo"}}, {"http": {}},
                              {"event": {"kind": "ConfigMap"}}])) == []
    assert fn()["spec"]["concurrency"] == 10 and fn()["spec"]["maxScale"] == 10


def test_version_changes_with_code_not_with_scale():
    a = fn()
    v = version_of(a["spec"])
    assert version_of({**a["spec"], "maxScale": 3, "triggers": [{"http": {}}]}) == v
    assert version_of(fn("def handle(e, c):\n    return 2\n")["spec"]) != v
    d = desired_deployment(a, 0)
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["template"]["metadata"]["labels"]["sendo.dev/function-version"] == v
    env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FUNCTION_SOURCE"] == a["spec"]["source"]["inline"] and env["FUNCTION_CONCURRENCY"] == "10"


def test_http_trigger_and_route():
    assert http_enabled({}) and http_enabled({"triggers": [{"http": {}}]})
    assert not http_enabled({"triggers": [{"cron": {"schedule": "* * * * *"}}]})
    path = desired_ingress(fn())["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/functions/default/f" and path["backend"]["service"]["port"]["number"] == 80


def test_backoff_grows_and_is_capped():
    d = backoff_delays(8, base=0.5, cap=4)
    assert d[0] < d[1] < d[2] and max(d) <= 4 * 1.1


def test_cloud_events():
    import datetime as dt
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    e = cron_event("ns", "f", "* * * * *", t)
    assert e["specversion"] == "1.0" and e["id"] == cron_event("ns", "f", "* * * * *", t)["id"]
    c = cluster_event("MODIFIED", {"metadata": {"name": "cm", "namespace": "ns", "uid": "u", "resourceVersion": "7"}},
                      "/api/v1/configmaps")
    assert c["type"] == "dev.sendo.cluster.modified" and c["id"] == "u/7/MODIFIED" and c["subject"] == "ns/cm"
    assert c["data"]["metadata"]["name"] == "cm"


# ----------------------------------------------------------------- reconcile, on the fake API

FNS = FUNCTION_RESOURCE
PODS_R = kind("pods")
FN_URL = "/apis/sendo.dev/v1alpha1/namespaces/default/functions/f"


def stored_fn(**spec):
    o = fn(**spec)
    o["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    return o


def ready_pod(name="fn-f-1"):
    from sendo.controllers.function import LABEL
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {LABEL: "f"}},
            "spec": {"containers": [{"name": "function", "image": "x"}]},
            "status": {"phase": "Running", "podIP": "127.64.0.9",
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


async def test_reconcile_builds_the_function_then_rests(fake_api):
    from sendo.controllers.function import FunctionController
    c = fake_api.build(FunctionController)
    fake_api.add(FNS, stored_fn())
    writes = await fake_api.run(c, "default/f")
    # the warm pool (there is a Function now: a generic worker per node), then the finalizer
    assert [(w.method, w.path) for w in writes] == [("POST", "/apis/apps/v1/namespaces/kube-system/daemonsets"),
                                                    ("PATCH", FN_URL)]
    pool = writes[0].body
    assert pool["kind"] == "DaemonSet" and pool["spec"]["template"]["spec"]["runtimeClassName"] == "process"
    assert pool["spec"]["template"]["spec"]["containers"][0]["env"][1] == {"name": "FUNCTION_GENERIC", "value": "1"}
    writes = await fake_api.run(c, "default/f")
    made = sorted((w.method, w.path.rsplit("/", 1)[-1]) for w in writes)
    assert made == [("PATCH", "status"), ("POST", "deployments"), ("POST", "endpointslices"),
                    ("POST", "ingresses"), ("POST", "services")], made
    dep = next(w.body for w in writes if w.path.endswith("deployments"))
    assert dep["metadata"]["name"] == "fn-f" and dep["spec"]["replicas"] == 0
    sl = next(w.body for w in writes if w.path.endswith("endpointslices"))
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "f"
    assert sl["ports"][0]["port"] == c.state["default/f"].activator_port > 0
    status = next(w.body for w in writes if w.path.endswith("status"))["status"]
    assert status["url"] == "/functions/default/f" and status["readyInstances"] == 0
    assert await fake_api.run(c, "default/f") == []  # level-triggered: nothing more to do

    # demand, then a ready instance: the activator leaves the data path, but only once the
    # endpoints controller lists the instance (the Service never has no endpoint)
    c.state["default/f"].scaler.wanted = 1
    fake_api.add(PODS_R, ready_pod())
    writes = await fake_api.run(c, "default/f")
    assert ("DELETE", "f-activator") not in [(w.method, w.path.rsplit("/", 1)[-1]) for w in writes]
    assert await c.reconcile("default/f") > 0  # looked at again soon
    fake_api.add(kind("endpointslices", "discovery.k8s.io"), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "f-abcde", "namespace": "default", "labels": {"kubernetes.io/service-name": "f"}},
        "endpoints": [{"addresses": ["127.64.0.9"], "conditions": {"ready": True}}]})
    writes = await fake_api.run(c, "default/f")
    assert ("DELETE", "f-activator") in [(w.method, w.path.rsplit("/", 1)[-1]) for w in writes]


async def test_deletion_removes_what_the_function_made_then_its_finalizer(fake_api):
    from sendo.controllers.function import FINALIZER, FunctionController
    c = fake_api.build(FunctionController)
    fake_api.add(FNS, stored_fn())
    await fake_api.run(c, "default/f")
    await fake_api.run(c, "default/f")
    obj = fake_api.fake.objects[FN_URL]
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    fake_api.sync()
    writes = await fake_api.run(c, "default/f")
    deleted = sorted(w.path.rsplit("/", 2)[-2] for w in writes if w.method == "DELETE")
    assert deleted == ["deployments", "endpointslices", "ingresses", "services"], writes
    assert writes[-1].method == "PATCH" and writes[-1].body["metadata"]["finalizers"] == []
    assert "default/f" not in c.state
    fake_api.fake.remove(FNS, "default", "f")
    writes = await fake_api.run(c, "default/f")  # no Function left: the pool goes
    assert [(w.method, w.path) for w in writes] == [
        ("DELETE", "/apis/apps/v1/namespaces/kube-system/daemonsets/sendo-function-pool")]


async def test_failed_event_invocations_are_retried_then_given_up_with_an_event(fake_api, monkeypatch):
    """An instance (a loopback server of this test) that keeps answering 500: every retry reaches
    it, then an InvocationFailed Warning Event and status.failedInvocations."""
    from aiohttp import web

    from sendo.controllers import function as fmod
    hits = []

    async def always_500(request):
        hits.append(await request.json())
        return web.Response(status=500)
    app = web.Application()
    app.router.add_post("/_sendo/event", always_500)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    monkeypatch.setattr(fmod, "INVOKER_PORT", server.port)
    monkeypatch.setattr(fmod, "backoff_delays", lambda n: [0.0] * n)
    try:
        c = fake_api.build(fmod.FunctionController)
        await c.start()
        fake_api.add(FNS, stored_fn())
        await fake_api.run(c, "default/f")
        pod = ready_pod()
        pod["status"]["podIP"] = "127.0.0.1"
        fake_api.add(PODS_R, pod)
        await fake_api.run(c, "default/f")
        events = []
        monkeypatch.setattr(c.recorder, "emit", lambda obj, typ, reason, msg: events.append((typ, reason, msg)))
        fake_api.fake.calls.clear()
        ok = await c.invoke_event("default/f", {"id": "e1", "type": "t"}, "event", retries=2)
        assert ok is False and [h["id"] for h in hits] == ["e1"] * 3
        assert events and events[0][:2] == ("Warning", "InvocationFailed") and "HTTP 500" in events[0][2]
        patch = [w for w in fake_api.fake.writes() if w.path.endswith("/status")][-1]
        assert patch.body == {"status": {"failedInvocations": 1}}
    finally:
        await server.close()


async def test_a_generic_worker_becomes_the_function_it_is_given(monkeypatch):
    import os

    from sendo.controllers.function import specialize_env
    from sendo.functions.invoker import Generic
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what specialising sets stays in this test
    g = Generic()
    c = TestClient(TestServer(g.app(), host="127.0.0.1"))
    await c.start_server()
    try:
        assert (await (await c.get("/_sendo/stats")).json())["generic"] is True
        assert (await c.get("/")).status == 503
        f = fn("import os\ndef handle(event, context):\n    return [os.environ['GREETING'], context.function_name]\n",
               env=[{"name": "GREETING", "value": "hi"}])
        env = specialize_env(f)
        assert env["FUNCTION_NAME"] == "f" and env["GREETING"] == "hi" and "POD_IP" not in env
        assert (await c.post("/_sendo/specialize", data=json.dumps(env))).status == 200
        assert await (await c.get("/functions/default/f/x")).json() == ["hi", "f"]
        assert (await c.post("/_sendo/specialize", data=json.dumps(env))).status == 409
        assert (await (await c.get("/_sendo/stats")).json())["invocations"] == 1
    finally:
        await c.close()
    with_ref = fn(env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert specialize_env(with_ref) is None  # needs the kubelet: the function's own pods only


# ----------------------------------------------------------------- source.files

def files_fn(files, **spec):
    o = fn(**spec)
    o["spec"]["source"] = {"files": files}
    return o


def test_files_source_checks_name_the_field():
    assert texts(files_fn({"path": "/srv/fn/hello"})) == []
    assert texts(files_fn({"configMapRef": {"name": "hello-files-1"}})) == []
    for bad in ("relative/dir", "/", "/srv/../etc", "/srv//x", "/srv/./x"):
        (msg,) = texts(files_fn({"path": bad}))
        assert msg.startswith("spec.source.files.path: Invalid value"), (bad, msg)
    assert texts(files_fn({}))[0].startswith("spec.source.files: Invalid value: exactly one of path or configMapRef")
    both = fn()
    both["spec"]["source"]["files"] = {"path": "/srv/x"}
    assert texts(both)[0].startswith("spec.source: Invalid value: exactly one of inline, configMapRef or files")


def test_files_source_in_the_deployment_and_the_warm_worker():
    from sendo.controllers.function import FILES_MOUNT, specialize_env

    on_node = files_fn({"path": "/srv/fn/hello"})
    env = {e["name"]: e.get("value") for e in desired_deployment(on_node, 1)["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["FUNCTION_FILES"] == "/srv/fn/hello" and "FUNCTION_SOURCE" not in env
    assert specialize_env(on_node)["FUNCTION_FILES"] == "/srv/fn/hello"  # plain: a warm worker can take it

    packed = files_fn({"configMapRef": {"name": "f-files-abc"}})
    pod = desired_deployment(packed, 1)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "function-files", "configMap": {"name": "f-files-abc"}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == FILES_MOUNT
    assert {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}["FUNCTION_FILES_ZIP"] == \
        f"{FILES_MOUNT}/files.zip"
    assert specialize_env(packed) is None  # without the archive it needs the volume
    given = specialize_env(packed, "UEsFBg==")
    assert given["FUNCTION_FILES_ZIP_DATA"] == "UEsFBg==" and "FUNCTION_FILES_ZIP" not in given
    assert version_of(packed["spec"]) != version_of(files_fn({"configMapRef": {"name": "f-files-abd"}})["spec"])


def test_pack_and_load_a_directory(tmp_path, monkeypatch):
    import base64
    import sys

    from sendo.cli.fn import files_configmap, pack_directory
    from sendo.functions.invoker import from_env

    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "junk.pyc").write_bytes(b"x")
    (src / "lib" / "__init__.py").write_text("")
    (src / "lib" / "greet.py").write_text("import os\nWORD = open(os.path.join(os.path.dirname(__file__), "
                                          "'word.txt')).read().strip()\n")
    (src / "lib" / "word.txt").write_text("ahoy\n")
    (src / "main.py").write_text("from lib.greet import WORD\ndef handle(event, context):\n    return WORD\n")
    archive = pack_directory(src)
    assert archive == pack_directory(src)  # same files, same bytes: no new version
    cm = files_configmap("f", "default", archive)
    assert cm["metadata"]["name"].startswith("f-files-") and cm["metadata"]["labels"] == {
        "sendo.dev/function-files": "f"}
    monkeypatch.setattr(sys, "path", list(sys.path))
    for m in ("main", "lib", "lib.greet"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    inv = from_env({"FUNCTION_FILES_ZIP_DATA": cm["binaryData"]["files.zip"], "FUNCTION_HANDLER": "main.handle",
                    "FUNCTION_CACHE_DIR": str(tmp_path / "cache")})
    assert inv.fn({}, None) == "ahoy"
    (unpacked,) = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("files-")]
    assert not (unpacked / "__pycache__" / "junk.pyc").exists()
    for m in ("main", "lib", "lib.greet"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    assert from_env({"FUNCTION_FILES": str(src), "FUNCTION_HANDLER": "main.handle"}).fn({}, None) == "ahoy"
    with pytest.raises(RuntimeError, match="not a directory on this node"):
        from_env({"FUNCTION_FILES": str(tmp_path / "nope"), "FUNCTION_HANDLER": "main.handle"})
    evil = tmp_path / "evil.zip"
    import zipfile
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.py", "x = 1\n")
    with pytest.raises(RuntimeError, match="unsafe path"):
        from_env({"FUNCTION_FILES_ZIP_DATA": base64.b64encode(evil.read_bytes()).decode(),
                  "FUNCTION_CACHE_DIR": str(tmp_path / "cache")})


# ----------------------------------------------------------------- the cold path with a warm worker

async def test_cold_start_claims_a_worker_and_writes_only_after_the_answer():
    """The activator's claim of a warm worker: the worker's 200 to /_sendo/specialize is the claim,
    the request is answered by it, and the API writes (the pool patch) come after; a new version of
    the function retires the worker."""
    import random

    import aiohttp

    from sendo.controllers.function import INVOKER_PORT, FunctionController
    from sendo.functions.invoker import Generic
    from tests.fakeapi import FakeClient, FakeInformers

    ip = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    runner = aiohttp.web.AppRunner(Generic().app())
    await runner.setup()
    await aiohttp.web.TCPSite(runner, ip, INVOKER_PORT).start()
    client = FakeClient()
    informers = FakeInformers(client)
    c = FunctionController(client, informers)
    c._session = aiohttp.ClientSession(trust_env=False)
    try:
        f = fn("def handle(event, context):\n    return {'hi': event['json']}\n")
        f["metadata"]["finalizers"] = ["sendo.dev/function"]
        informers.add(FUNCTION_RESOURCE, f)
        informers.add(kind("pods"), {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "w1", "namespace": "kube-system",
            "labels": {"sendo.dev/function-pool": "true", "sendo.dev/function-worker": "true"}},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})
        await c.reconcile("default/f")
        before = len(client.writes())
        written_at_answer = []
        real_forward = c._forward

        async def forward(key, request, later):
            resp = await real_forward(key, request, later)
            written_at_answer.append(len(client.writes()))
            return resp
        c._forward = forward
        # through the activator's listener, as the service proxy sends it
        port = c.state["default/f"].activator_port
        async with c._session.post(f"http://127.0.0.1:{port}/functions/default/f/x?q=1", json={"a": 1}) as r:
            assert r.status == 200 and await r.json() == {"hi": {"a": 1}}, await r.text()
            assert "X-Sendo-Specialized" not in r.headers
        assert written_at_answer == [before], client.writes()[before:]  # nothing written before the answer
        assert c.state["default/f"].bridge["metadata"]["name"] == "w1"
        assert c.state["default/f"].warm_starts == 1 and c.state["default/f"].cold_starts == 1
        for _ in range(100):  # the deferred writes run once the answer is out
            if c._background or any(w.method == "PATCH" and w.path.endswith("/pods/w1") for w in client.writes()):
                break
            await asyncio.sleep(0.01)
        await asyncio.gather(*c._background)
        # the next request goes to the same worker, now the function's instance
        async with c._session.post(f"http://127.0.0.1:{port}/functions/default/f/", json=2) as r:
            assert r.status == 200 and await r.json() == {"hi": 2}
        assert c.state["default/f"].cold_starts == 1
        patch = [w for w in client.writes()[before:] if w.method == "PATCH" and w.path.endswith("/pods/w1")]
        assert patch and patch[0].body["metadata"]["labels"] == {"sendo.dev/function-pool": None,
                                                                   "sendo.dev/function-bridge": "default.f"}
        assert c.state["default/f"].bridge_version == version_of(f["spec"])

        # a second claim of the same worker is refused by it (409): it runs one function only
        async with c._session.post(f"http://{ip}:{INVOKER_PORT}/_sendo/specialize",
                                   json={"FUNCTION_SOURCE": "x = 1\n"}) as r:
            assert r.status == 409

        # new code: the worker running the old one is retired
        informers.add(FUNCTION_RESOURCE, {**f, "spec": {**f["spec"], "source": {
            "inline": "def handle(event, context):\n    return 2\n"}}})
        await c.reconcile("default/f")
        assert c.state["default/f"].bridge is None
        assert any(w.method == "DELETE" and w.path.endswith("/pods/w1") for w in client.writes())
    finally:
        for key in list(c.state):
            await c._forget(key, retire=False)
        await c._session.close()
        await runner.cleanup()
