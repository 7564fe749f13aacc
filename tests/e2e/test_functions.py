"""Functions (sendo.dev/v1alpha1) through one real `sendo up`, the real kubectl and the official
`kubernetes` client (CustomObjectsApi): apply the issue's YAML and call it over the ingress path,
the Service's cluster IP and the API's services proxy (`kubectl get --raw`); a syntax error
is refused naming the line; concurrency 2 with maxScale 1 takes 8 simultaneous requests
with never more than 2 in the handler; the function scales to zero and the next request
is held by the activator and answered; a cron trigger (`@every 3s`, as CronJobs accept it)
fires; an event trigger fires once per ConfigMap change.

Functions write what they see to files of this test's directory (the process runtime runs
them on this host), so the test observes invocations without a side channel of sendo's.
The http triggers name a Service port of this test's own (`http: {port: N}`; the default is
80): cluster IPs are handed out in order by every sendo on this shared machine, so another
cluster may hold <the same IP>:80, as other e2e tests avoid fixed Service ports."""
from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import json
import textwrap
import time
from pathlib import Path

import pytest

from .harness import Cluster, is_ready, poll, unique_port

NODE = "127.0.0.1"

HELLO_YAML = """
apiVersion: sendo.dev/v1alpha1
kind: Function
metadata: {name: hello, namespace: default}
spec:
  runtime: python3
  handler: main.handle
  source:
    inline: |
      def handle(event, context):
          return {"hello": (event.get("json") or {}).get("name", "world")}
  requirements: []
  env: []
  concurrency: 10
  minScale: 0
  maxScale: 10
  scaleToZeroAfterSeconds: 60
  timeoutSeconds: 30
  triggers:
  - http: {}
  - cron: {schedule: "*/5 * * * *", timeZone: "UTC"}
"""

BROKEN_YAML = """
apiVersion: sendo.dev/v1alpha1
kind: Function
metadata: {name: broken}
spec:
  handler: main.handle
  source:
    inline: |
      def handle(event, context):
          x = (1,
      y = 2
"""

BUSY_SOURCE = """
import threading, time
lock = threading.Lock()
now = 0
most = 0
def handle(event, context):
    global now, most
    with lock:
        now += 1
        most = max(most, now)
    time.sleep(0.4)
    with lock:
        now -= 1
    return {"most": most, "version": context.version}
"""

TICK_SOURCE = """
import json, os
def handle(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"type": event["type"], "id": event["id"], "specversion": event["specversion"],
                            "source": event["source"],
                            "name": (event.get("data") or {}).get("metadata", {}).get("name")}) + "\\n")
    return "ok"
"""

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_function() -> str:
    """The function of the README's functions walkthrough, as a newcomer copies it."""
    text = README.read_text()
    step = text.index("**1. Write a function**")
    start = text.index("```python\n", step) + len("```python\n")
    return text[start:text.index("```", start)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("functions")
    c = Cluster(base, extra_env={"SENDO_INGRESS_HTTP_PORT": str(unique_port()),
                                 "SENDO_INGRESS_HTTPS_PORT": str(unique_port())})
    c.ingress_port = int(c.extra_env["SENDO_INGRESS_HTTP_PORT"])
    try:
        c.start()
        yield c
    finally:
        c._cleanup()


def call(ip: str, port: int, method: str, path: str, body: dict | None = None, timeout: float = 90.0,
         host: str | None = None) -> tuple[int, bytes]:
    assert ipaddress.ip_address(ip).is_loopback  # network safety: loopback only
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if host:
            headers["Host"] = host
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def answer(ip: str, port: int, method: str, path: str) -> tuple[int, bytes]:
    """call(), with a refused or reset connection as status 0: what a poll sees while the
    proxy has not yet bound a new Service's address."""
    try:
        return call(ip, port, method, path)
    except (ConnectionError, http.client.RemoteDisconnected):
        return 0, b""


def cluster_ip(cluster: Cluster, svc: str) -> str:
    return poll(lambda: cluster.kubectl_json("get", "svc", svc, "-o", "json")["spec"].get("clusterIP"),
                timeout=60, what=f"service {svc}")


def fn_status(cluster: Cluster, name: str) -> dict:
    return cluster.kubectl_json("get", "functions", name, "-o", "json").get("status") or {}


def custom_api(cluster: Cluster):
    from kubernetes import client
    return client.CustomObjectsApi(cluster.api())


def function_body(name: str, source: str, **spec) -> dict:
    return {"apiVersion": "sendo.dev/v1alpha1", "kind": "Function", "metadata": {"name": name},
            "spec": {"handler": "main.handle", "source": {"inline": textwrap.dedent(source)}, **spec}}


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_functions(cluster, tmp_path):
    # triggers first: they keep firing while the rest runs
    out = tmp_path / "events.jsonl"
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)  # a custom kind for the third trigger
    tick = function_body("tick", TICK_SOURCE, minScale=1, env=[{"name": "OUT", "value": str(out)}], triggers=[
        {"cron": {"schedule": "@every 3s"}},
        {"event": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "labelSelector": "app=x",
                   "types": ["ADDED", "MODIFIED"]}},
        {"event": {"apiVersion": "example.com/v1", "kind": "Widget", "namespace": "default"}}])
    cluster.kubectl("apply", "-f", "-", input=json.dumps(tick))

    # a syntax error is refused at apply, naming the field and the line
    r = cluster.kubectl("apply", "-f", "-", input=BROKEN_YAML, check=False)
    assert r.returncode != 0
    assert "spec.source.inline" in r.stderr and "line 2" in r.stderr, r.stderr
    assert "not found" in cluster.kubectl("get", "functions", "broken", check=False).stderr

    # the YAML; called through the ingress path and through the Service
    hello_port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=HELLO_YAML.replace("- http: {}", f"- http: {{port: {hello_port}}}"))
    poll(lambda: fn_status(cluster, "hello").get("url"), timeout=60, what="hello's URL in its status")
    code, body = poll(lambda: (lambda r: r if r[0] not in (404, 502) else None)(
        call(NODE, cluster.ingress_port, "POST", "/functions/default/hello", {"name": "sendo"})),
        timeout=30, what="the ingress route")  # 404/502 until the ingress and the proxy have caught up
    assert code == 200 and json.loads(body) == {"hello": "sendo"}, body
    ip = cluster_ip(cluster, "hello")
    code, body = call(ip, hello_port, "GET", "/anything")
    assert code == 200 and json.loads(body) == {"hello": "world"}, body
    # and through the API server's services proxy (`kubectl get --raw`, `kubectl proxy`)
    raw = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/default/services/hello:{hello_port}/proxy/anything")
    assert json.loads(raw.stdout) == {"hello": "world"}, raw.stdout
    table = cluster.kubectl("get", "functions").stdout
    assert "URL" in table and "/functions/default/hello" in table, table
    explained = cluster.kubectl("explain", "functions.spec.concurrency", check=False)
    assert explained.returncode == 0 and "integer" in explained.stdout, explained.stderr

    # concurrency 2, maxScale 1, created with the official client: 8 at once all answered, <= 2 inside
    api = custom_api(cluster)
    busy_port = unique_port()
    api.create_namespaced_custom_object("sendo.dev", "v1alpha1", "default", "functions", function_body(
        "busy", BUSY_SOURCE, concurrency=2, maxScale=1, scaleToZeroAfterSeconds=3,
        autoscaling={"stableWindowSeconds": 3, "panicWindowSeconds": 1}, triggers=[{"http": {"port": busy_port}}]))
    busy_ip = cluster_ip(cluster, "busy")
    poll(lambda: answer(busy_ip, busy_port, "GET", "/_sendo/stats")[0] == 200, timeout=60, what="busy's service")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _i: call(busy_ip, busy_port, "POST", "/", {}), range(8)))
    assert [c for c, _ in answers] == [200] * 8, answers
    assert max(json.loads(b)["most"] for _, b in answers) == 2, answers
    obj = api.get_namespaced_custom_object("sendo.dev", "v1alpha1", "default", "functions", "busy")
    assert obj["status"]["url"] == "/functions/default/busy"

    # scale to zero, then the next request is held while an instance starts, and answered
    poll(lambda: fn_status(cluster, "busy").get("readyInstances") == 0
         and not cluster.kubectl_json("get", "pods", "-l", "sendo.dev/function=busy", "-o", "json")["items"]
         and not cluster.kubectl_json("get", "pods", "-n", "kube-system", "-l",
                                      "sendo.dev/function-bridge=default.busy", "-o", "json")["items"],
         timeout=90, what="busy scaled to zero (no pod of its own, no warm worker serving it)")
    poll(lambda: [p for p in cluster.kubectl_json("get", "pods", "-n", "kube-system", "-l",
                                                  "sendo.dev/function-pool=true", "-o", "json")["items"]
                  if is_ready(p)], timeout=90, what="a generic worker ready in the warm pool")
    code, body = call(busy_ip, busy_port, "POST", "/", {})
    assert code == 200 and json.loads(body)["most"] == 1, body
    status = fn_status(cluster, "busy")
    assert status.get("coldStarts", 0) >= 1 and status.get("warmStarts", 0) >= 1, status  # a pool worker served it

    # metrics: the controllers' per function, the instance's own through the Service
    import re
    mport = re.findall(r"controllers http://127\.0\.0\.1:(\d+)/metrics", cluster.log_path.read_text())[-1]
    code, text = call(NODE, int(mport), "GET", "/metrics")
    assert re.search(r'sendo_function_cold_starts_total\{function="busy",namespace="default"\} [1-9]',
                     text.decode()), text.decode()[-2000:]
    code, text = call(busy_ip, busy_port, "GET", "/_sendo/metrics")
    assert code == 200 and 'sendo_function_invocations_total{code="200",function="busy"' in text.decode()

    # the event trigger: once per change of a selected ConfigMap, none for others
    cluster.kubectl("create", "configmap", "watched", "--from-literal=a=1")
    cluster.kubectl("label", "configmap", "watched", "app=x")           # MODIFIED (now selected: ADDED)
    cluster.kubectl("create", "configmap", "ignored", "--from-literal=a=1")
    cluster.kubectl("patch", "configmap", "watched", "-p", '{"data": {"a": "2"}}')
    cluster.kubectl("create", "configmap", "marker", "--from-literal=a=1")
    cluster.kubectl("label", "configmap", "marker", "app=x")
    poll(lambda: any(e["name"] == "marker" for e in lines(out)), timeout=90, what="the marker's event")
    seen = [e for e in lines(out) if e["type"].startswith("dev.sendo.cluster.")]
    assert [e["name"] for e in seen].count("watched") == 2, seen
    assert "ignored" not in [e["name"] for e in seen]
    assert all(e["specversion"] == "1.0" for e in seen)

    # the cron trigger fired (every 3 s), each tick once
    def cron_ticks():
        t = [e for e in lines(out) if e["type"] == "dev.sendo.function.cron"]
        return t if len(t) >= 2 else None
    ticks = poll(cron_ticks, timeout=60, what="two cron ticks")
    assert len({e["id"] for e in ticks}) == len(ticks)

    # an event trigger on a custom resource (the CRD's kind, found through discovery): once the
    # trigger has its starting bookmark, each change of a Widget is one invocation
    poll(lambda: "2" in (fn_status(cluster, "tick").get("eventResourceVersions") or {}), timeout=60,
         what="the Widget trigger watching")
    cluster.kubectl("apply", "-f", "-", input="apiVersion: example.com/v1\nkind: Widget\n"
                                                "metadata: {name: w1}\nspec: {size: 1}\n")
    cluster.kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec": {"size": 2}}')
    widgets = poll(lambda: (lambda w: w if len(w) >= 2 else None)(
        [e for e in lines(out) if e["name"] == "w1"]), timeout=60, what="two Widget events")
    assert [e["type"] for e in widgets] == ["dev.sendo.cluster.added", "dev.sendo.cluster.modified"], widgets
    assert all(e["source"] == "/apis/example.com/v1/widgets" for e in widgets), widgets

    walk_the_readme(cluster, tmp_path)
    source_files(cluster, tmp_path)

    # the event trigger resumes from its bookmark after a restart: nothing is handled twice, nothing lost
    cluster.restart()
    cluster.kubectl("patch", "configmap", "watched", "-p", '{"data": {"a": "3"}}')
    cluster.kubectl("create", "configmap", "marker2", "--from-literal=a=1")
    cluster.kubectl("label", "configmap", "marker2", "app=x")
    poll(lambda: any(e["name"] == "marker2" for e in lines(out)), timeout=90, what="marker2's event after restart")
    seen = [e["name"] for e in lines(out) if e["type"].startswith("dev.sendo.cluster.")]
    assert seen.count("watched") == 3 and seen.count("marker") == 1, seen
    # the README's step 3, continued: greet's per-minute schedule has fired by now (more than a
    # minute since it was set), and succeeded (the tick is recorded once its invocation is done)
    status = poll(lambda: (lambda s: s if (s.get("cron") or {}).get("1") else None)(fn_status(cluster, "greet")),
                  timeout=60, what="greet's cron tick recorded")
    assert not status.get("failedInvocations"), status
    assert "deleted" in sendo_fn(cluster, "delete", "greet").stdout
    poll(lambda: not cluster.kubectl_json("get", "all", "-l", "sendo.dev/function=greet", "-o", "json")["items"],
         timeout=60, what="greet's Deployment, pods and Service gone with it")


def walk_the_readme(cluster: Cluster, tmp_path: Path) -> None:
    """README "Functions", steps 1 to 5, as written there, with one difference: the Service port is
    this test's own (`--trigger http=PORT`, see the module docstring) instead of 80."""
    port = unique_port()
    http = f"http={port}"
    src = tmp_path / "main.py"
    src.write_text(readme_function())
    assert len(src.read_text().strip().splitlines()) <= 10
    ingress = "/functions/default/greet"

    # 2. deploy with one command, call it over HTTP (Service, Ingress), list it, read its logs
    assert "created" in sendo_fn(cluster, "deploy", "greet", "--file", str(src), "--trigger", http).stdout
    r = sendo_fn(cluster, "invoke", "greet", "--data", '{"name": "sendo"}')
    assert json.loads(r.stdout) == {"hello": "sendo"}, r
    code, body = poll(lambda: (lambda r: r if r[0] not in (404, 502) else None)(
        call(NODE, cluster.ingress_port, "POST", ingress, {"name": "you"})), timeout=30, what="greet's route")
    assert code == 200 and json.loads(body) == {"hello": "you"}, body
    listed = sendo_fn(cluster, "list").stdout
    assert "greet" in listed and ingress in listed, listed
    poll(lambda: "greeting sendo" in sendo_fn(cluster, "logs", "greet").stdout, timeout=30,
         what="the handler's log line in `sendo fn logs`")

    # 3. a schedule and a ConfigMap trigger, in one deploy
    sendo_fn(cluster, "deploy", "greet", "--file", str(src), "--trigger", http, "--trigger", "cron=* * * * *",
             "--trigger", "event=ConfigMap,label=app=x")
    poll(lambda: "2" in (fn_status(cluster, "greet").get("eventResourceVersions") or {}), timeout=60,
         what="greet's ConfigMap trigger watching")
    cluster.kubectl("create", "configmap", "settings", "--from-literal=color=blue")
    cluster.kubectl("label", "configmap", "settings", "app=x")
    rv = cluster.kubectl_json("patch", "configmap", "settings", "-p", '{"data": {"color": "red"}}')["metadata"][
        "resourceVersion"]
    poll(lambda: int((fn_status(cluster, "greet").get("eventResourceVersions") or {}).get("2") or 0) >= int(rv),
         timeout=60, what="greet's ConfigMap trigger past the patch")  # kubectl is quicker to start than sendo
    poll(lambda: (lambda t: "event dev.sendo.cluster.added default/settings" in t
                  and "event dev.sendo.cluster.modified default/settings" in t)(sendo_fn(cluster, "logs", "greet").stdout),
         timeout=60, what="both ConfigMap events in greet's log")

    # 4. cap its concurrency: a deploy that names no trigger keeps them
    sendo_fn(cluster, "deploy", "greet", "--file", str(src), "--concurrency", "2", "--max-scale", "1",
             "--scale-to-zero-after", "15")
    spec = cluster.kubectl_json("get", "functions", "greet")["spec"]
    assert (spec["concurrency"], spec["maxScale"], len(spec["triggers"])) == (2, 1, 3), spec
    ip = cluster_ip(cluster, "greet")
    poll(lambda: (lambda r: r[0] == 200 and json.loads(r[1]).get("concurrency") == 2)(
        answer(ip, port, "GET", "/_sendo/stats")), timeout=60, what="an instance with the new concurrency")
    poll(lambda: (lambda st: st.get("readyVersion") == st.get("version"))(fn_status(cluster, "greet")),
         timeout=60, what="every ready instance of greet on the new version")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _i: call(NODE, cluster.ingress_port, "POST", ingress, {}), range(8)))
    assert [(c, json.loads(b)) for c, b in answers] == [(200, {"hello": "world"})] * 8, answers
    assert time.monotonic() - t0 >= 4 * 0.5 - 0.05  # two at a time, 0.5 s each: never faster than this

    # 5. it scales to zero and back
    poll(lambda: fn_status(cluster, "greet").get("readyInstances") == 0, timeout=90, what="greet at zero")
    r = sendo_fn(cluster, "invoke", "greet")
    assert json.loads(r.stdout) == {"hello": "world"}, r
    poll(lambda: fn_status(cluster, "greet").get("readyInstances") == 1, timeout=30, what="greet back at one")



def source_files(cluster: Cluster, tmp_path: Path) -> None:
    """`sendo fn deploy --dir`: a package and a data file; new contents roll out a new version and the
    old archive goes; `source.files.path`: a directory on the node; bad paths get a 422 naming the field."""
    shop = tmp_path / "shop"
    (shop / "lib").mkdir(parents=True)
    (shop / "lib" / "__init__.py").write_text("")
    (shop / "lib" / "word.txt").write_text("ahoy\n")
    (shop / "lib" / "words.py").write_text("import pathlib\nWORD = (pathlib.Path(__file__).parent / 'word.txt')"
                                           ".read_text().strip()\n")
    (shop / "main.py").write_text("from lib.words import WORD\ndef handle(event, context):\n    return WORD\n")
    http = f"http={unique_port()}"
    assert "created" in sendo_fn(cluster, "deploy", "shop", "--dir", str(shop), "--trigger", http).stdout
    assert sendo_fn(cluster, "invoke", "shop").stdout.strip() == "ahoy"
    (shop / "lib" / "word.txt").write_text("ahoy there\n")
    assert "configured" in sendo_fn(cluster, "deploy", "shop", "--dir", str(shop)).stdout
    shop_ip, shop_port = cluster_ip(cluster, "shop"), int(http.split("=")[1])
    poll(lambda: answer(shop_ip, shop_port, "GET", "/") == (200, b"ahoy there"), timeout=90,
         what="the new contents served")
    packed = cluster.kubectl_json("get", "configmaps", "-l", "sendo.dev/function-files=shop")["items"]
    assert len(packed) == 1 and packed[0]["metadata"]["ownerReferences"][0]["kind"] == "Function", packed
    assert "deleted" in sendo_fn(cluster, "delete", "shop").stdout
    poll(lambda: not cluster.kubectl_json("get", "configmaps", "-l", "sendo.dev/function-files=shop")["items"],
         timeout=60, what="the packed ConfigMap gone with its function")

    on_node = function_body("local", "", triggers=[{"http": {"port": unique_port()}}])
    on_node["spec"]["source"] = {"files": {"path": "srv/../etc"}}
    r = cluster.kubectl("apply", "-f", "-", input=json.dumps(on_node), check=False)
    assert r.returncode != 0 and "spec.source.files.path" in r.stderr, r.stderr
    on_node["spec"]["source"] = {"files": {"path": str(shop)}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(on_node))
    port = on_node["spec"]["triggers"][0]["http"]["port"]
    code, body = call(cluster_ip(cluster, "local"), port, "GET", "/")
    assert code == 200 and body.decode() == "ahoy there", body


def sendo_fn(cluster: Cluster, *args: str):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "fn", *args], capture_output=True, text=True,
                       timeout=150, env={**cluster.env(), "KUBECONFIG": str(cluster.kubeconfig)})
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r
