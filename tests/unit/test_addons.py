"""The add-on manager without a server: the catalogue, the Addon kind's rules, the
controller's apply / prune / health decisions on the fake API, and the log shipper."""
import http.server
import json
import threading

import pytest
import yaml

from sendo.addons import FINALIZER, LABEL, catalogue, config_errors, render, substitute, values_of
from sendo.addons.generators import GENERATORS
from sendo.addons.logship import FileSink, HTTPSink, Shipper, running_containers
from sendo.cli.addons import parse_sets
from sendo.client import kind
from sendo.controllers.addons import AddonController, workload_waiting
from sendo.kinds.addons import AddonStrategy

ADDONS, NODES = kind("addons", "sendo.dev", "v1alpha1"), kind("nodes")
CONFIGMAPS, DAEMONSETS, ENDPOINTS = kind("configmaps"), kind("daemonsets", "apps"), kind("endpoints")
CM_PATH = "/api/v1/namespaces/kube-system/configmaps/sendo-prometheus-scrape"
DS_PATH = "/apis/apps/v1/namespaces/kube-system/daemonsets/sendo-log-shipper"
COMPONENTS = [{"component": "apiserver", "scheme": "https", "host": "127.0.0.1", "port": 6443},
              {"component": "controllers", "scheme": "http", "host": "127.0.0.1", "port": 10257},
              {"component": "agent", "scheme": "http", "host": "127.0.0.1", "port": 10250, "node": "n1"}]


def addon(name, enabled=True, config=None, **meta):
    return {"metadata": {"name": name, **meta}, "spec": {"enabled": enabled, "config": config or {}}}


def node(name="n1", ip="127.0.0.1", port=10250):
    return {"metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}


def cluster(fake_api):
    fake_api.fake.put(ENDPOINTS, {"metadata": {"name": "kubernetes", "namespace": "default"},
                                  "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                               "ports": [{"name": "https", "port": 6443}]}]})
    ctl = fake_api.build(AddonController, controllers_url=lambda: "http://127.0.0.1:10257", python="/py")
    fake_api.add(NODES, node())
    return ctl


def stored(fake_api, name):
    return fake_api.fake.objects[f"/apis/sendo.dev/v1alpha1/addons/{name}"]


def conditions(obj):
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


# ----------------------------------------------------------------- catalogue


def test_every_addon_renders_with_its_defaults_and_every_placeholder_filled():
    facts = {"components": COMPONENTS, "python": "/py"}
    for entry in catalogue().values():
        if entry.builtin:
            assert not entry.manifests and not entry.options  # nothing to apply, nothing to set
            continue
        config = {"file": "/tmp/x.log"} if entry.one_of else {}
        vals = values_of(entry, config)
        vals.update({k: GENERATORS[g](vals, facts) for k, g in entry.generate.items()})
        objs = render(entry, vals)
        assert objs and "${" not in json.dumps(objs)
        assert all(o["metadata"]["labels"][LABEL] == entry.name for o in objs)


def test_a_placeholder_alone_keeps_its_type_inside_text_it_is_spliced():
    assert substitute({"a": "${x}", "b": "n-${x}"}, {"x": ["1"]}) == {"a": ["1"], "b": "n-['1']"}
    with pytest.raises(KeyError):
        substitute("${nope}", {})


def test_scrape_config_has_a_job_per_component_and_a_target_per_endpoint():
    entry = catalogue()["prometheus-scrape"]
    vals = values_of(entry, {"scrapeInterval": "5s", "jobPrefix": "x-", "resourceMetrics": False})
    doc = yaml.safe_load(GENERATORS["prometheus-scrape-config"](vals, {"components": COMPONENTS}))
    assert doc["global"]["scrape_interval"] == "5s"
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"x-apiserver", "x-controllers", "x-agent"}
    assert jobs["x-apiserver"]["scheme"] == "https" and jobs["x-apiserver"]["tls_config"]["ca_file"]
    assert jobs["x-agent"]["static_configs"] == [{"targets": ["127.0.0.1:10250"],
                                                  "labels": {"component": "agent", "node": "n1"}}]
    assert jobs["x-controllers"]["static_configs"][0]["targets"] == ["127.0.0.1:10257"]
    vals["resourceMetrics"] = True
    doc = yaml.safe_load(GENERATORS["prometheus-scrape-config"](vals, {"components": COMPONENTS}))
    resource = next(j for j in doc["scrape_configs"] if j["job_name"] == "x-agent-resource")
    assert resource["metrics_path"] == "/metrics/resource" and resource["static_configs"] == jobs["x-agent"]["static_configs"]


@pytest.mark.parametrize("config,field,reason", [
    ({"file": "/a", "bogus": 1}, "bogus", "FieldValueNotSupported"),
    ({"file": 3}, "file", "FieldValueTypeInvalid"),
    ({"file": "relative.log"}, "file", "FieldValueInvalid"),
    ({"url": "ftp://x/"}, "url", "FieldValueInvalid"),
    ({}, "file", "FieldValueRequired"),
    ({"file": "/a", "url": "http://127.0.0.1/"}, "url", "FieldValueForbidden"),
    ({"file": "/a", "namespaces": ["ok", 2]}, "namespaces[1]", "FieldValueTypeInvalid"),
])
def test_log_shipping_config_errors_name_the_option(config, field, reason):
    errors = config_errors(catalogue()["log-shipping"], config)
    assert [(f, r) for f, r, _ in errors] == [(field, reason)]


def test_a_good_config_has_no_errors():
    assert config_errors(catalogue()["log-shipping"], {"url": "http://127.0.0.1:9/x", "namespaces": ["a"]}) == []
    assert config_errors(catalogue()["prometheus-scrape"], {"scrapeInterval": "1m30s"}) == []
    assert [f for f, _, _ in config_errors(catalogue()["prometheus-scrape"], {"scrapeInterval": "soon"})] == \
        ["scrapeInterval"]


# ----------------------------------------------------------------- the kind


def causes(obj):
    s = AddonStrategy()
    s.default(obj)
    return [(c.field, c.reason) for c in s.validate(obj)]


def test_addon_kind_refuses_unknown_names_bad_config_and_switching_off_built_ins():
    assert causes(addon("nope")) == [("metadata.name", "FieldValueNotSupported")]
    assert causes(addon("prometheus-scrape", config={"colour": "red"})) == \
        [("spec.config.colour", "FieldValueNotSupported")]
    assert causes(addon("dns", enabled=False)) == [("spec.enabled", "FieldValueForbidden")]
    assert causes(addon("dns", config={"x": 1})) == [("spec.config", "FieldValueForbidden")]
    assert causes({"metadata": {"name": "prometheus-scrape"}, "spec": {"enabled": "yes"}})[0][0] == "spec.enabled"
    ok = {"metadata": {"name": "prometheus-scrape"}}
    assert causes(ok) == [] and ok["spec"]["enabled"] is True  # defaulted on


# ----------------------------------------------------------------- the controller


async def test_enabling_applies_under_the_addons_field_manager_and_records_it(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("prometheus-scrape", config={"scrapeInterval": "10s"}))
    writes = await fake_api.run(ctl, "prometheus-scrape")
    applies = [c for c in writes if c.content_type.startswith("application/apply-patch")]
    assert [c.path for c in applies] == [CM_PATH]
    assert fake_api.fake.calls[[c.path for c in fake_api.fake.calls].index(CM_PATH)].method == "PATCH"
    cm = fake_api.fake.objects[CM_PATH]
    assert cm["metadata"]["labels"][LABEL] == "prometheus-scrape"
    scrape = yaml.safe_load(cm["data"]["prometheus.yml"])
    assert scrape["global"]["scrape_interval"] == "10s"
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {"sendo-apiserver", "sendo-controllers",
                                                                 "sendo-agent", "sendo-agent-resource"}
    a = stored(fake_api, "prometheus-scrape")
    assert FINALIZER in a["metadata"]["finalizers"]
    assert a["status"]["applied"] == [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "kube-system",
                                       "name": "sendo-prometheus-scrape"}]
    assert conditions(a) == {"Applied": "True", "Healthy": "True", "Progressing": "False", "Degraded": "False"}
    again = await fake_api.run(ctl, "prometheus-scrape")  # nothing changed: only the idempotent apply
    assert [(c.method, c.path) for c in again] == [("PATCH", CM_PATH)]


async def test_the_field_manager_is_the_addons_own(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("prometheus-scrape"))
    calls = []
    orig = fake_api.fake.request

    async def spy(method, url, **kw):
        calls.append((method, url, kw.get("params")))
        return await orig(method, url, **kw)
    fake_api.fake.request = spy
    await ctl.reconcile("prometheus-scrape")
    assert (("PATCH", CM_PATH, {"fieldManager": "sendo-addons/prometheus-scrape", "force": "true"}) in calls)


async def applied_then(fake_api, change):
    """The scrape add-on applied once, then its Addon changed by `change`; returns the
    controller and the paths of what the fake server held before the add-on."""
    ctl = cluster(fake_api)
    before = set(fake_api.fake.objects)
    fake_api.add(ADDONS, addon("prometheus-scrape"))
    await fake_api.run(ctl, "prometheus-scrape")
    a = stored(fake_api, "prometheus-scrape")
    change(a)
    fake_api.add(ADDONS, a)
    return ctl, before


def disabled(a):
    a["spec"]["enabled"] = False


async def test_a_config_change_applies_the_new_render_and_prunes_what_it_no_longer_renders(fake_api):
    ctl, _ = await applied_then(fake_api, lambda a: a["spec"].update(config={"configMapName": "scrape-two"}))
    writes = await fake_api.run(ctl, "prometheus-scrape")
    new_path = "/api/v1/namespaces/kube-system/configmaps/scrape-two"
    assert ("DELETE", CM_PATH) in [(c.method, c.path) for c in writes]
    assert new_path in fake_api.fake.objects and CM_PATH not in fake_api.fake.objects
    assert [r["name"] for r in stored(fake_api, "prometheus-scrape")["status"]["applied"]] == ["scrape-two"]


async def test_pruning_leaves_an_object_someone_else_took_over(fake_api):
    def taken_over_and_disabled(a):
        del fake_api.fake.objects[CM_PATH]["metadata"]["labels"][LABEL]  # relabelled by its new owner
        disabled(a)
    ctl, _ = await applied_then(fake_api, taken_over_and_disabled)
    writes = await fake_api.run(ctl, "prometheus-scrape")
    assert "DELETE" not in [c.method for c in writes] and CM_PATH in fake_api.fake.objects
    assert stored(fake_api, "prometheus-scrape")["status"]["applied"] == []


async def test_disabling_removes_everything_it_applied_and_lets_go_of_the_addon(fake_api):
    ctl, before = await applied_then(fake_api, disabled)
    await fake_api.run(ctl, "prometheus-scrape")
    a = stored(fake_api, "prometheus-scrape")
    assert set(fake_api.fake.objects) - {"/apis/sendo.dev/v1alpha1/addons/prometheus-scrape"} == before
    assert FINALIZER not in (a["metadata"].get("finalizers") or [])
    assert a["status"]["applied"] == [] and conditions(a)["Applied"] == "False"
    assert await fake_api.run(ctl, "prometheus-scrape") == []  # level-triggered: nothing more to do


async def test_a_deleted_addon_is_cleaned_up_before_its_finalizer_goes(fake_api):
    ctl, _ = await applied_then(fake_api, lambda a: a["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"))
    writes = await fake_api.run(ctl, "prometheus-scrape")
    assert [(c.method, c.path) for c in writes][0] == ("DELETE", CM_PATH)
    assert FINALIZER not in stored(fake_api, "prometheus-scrape")["metadata"]["finalizers"]


async def test_a_failed_apply_prunes_nothing_and_says_why(fake_api):
    ctl, _ = await applied_then(fake_api, lambda a: a["spec"].update(config={"configMapName": "scrape-two"}))
    fake_api.fake.fail("PATCH", "/api/v1/namespaces/kube-system/configmaps/scrape-two", 403, "Forbidden")
    writes = await fake_api.run(ctl, "prometheus-scrape")
    assert "DELETE" not in [c.method for c in writes] and CM_PATH in fake_api.fake.objects
    a = stored(fake_api, "prometheus-scrape")
    assert conditions(a)["Applied"] == "False" and conditions(a)["Degraded"] == "True"
    assert "injected by the test" in a["status"]["message"]
    assert [r["name"] for r in a["status"]["applied"]] == ["sendo-prometheus-scrape"]


async def test_a_new_node_re_renders_the_scrape_config(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("prometheus-scrape"))
    await fake_api.run(ctl, "prometheus-scrape")
    fake_api.add(NODES, node("n2", "127.0.0.2", 10251))
    assert len(ctl.queue) == 1  # the node's endpoint is news for the scrape config
    await fake_api.run(ctl, "prometheus-scrape")
    scrape = yaml.safe_load(fake_api.fake.objects[CM_PATH]["data"]["prometheus.yml"])
    agent = next(j for j in scrape["scrape_configs"] if j["job_name"] == "sendo-agent")
    assert [t["targets"] for t in agent["static_configs"]] == [["127.0.0.1:10250"], ["127.0.0.2:10251"]]


async def test_log_shipping_is_healthy_only_once_its_daemonset_is_ready(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("log-shipping", config={"file": "/var/log/all.jsonl"}))
    recheck = await ctl.reconcile("log-shipping")
    ds = fake_api.fake.objects[DS_PATH]
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/py", "-m", "sendo.addons.logship", "--file", "/var/log/all.jsonl"]
    assert ds["spec"]["template"]["spec"]["runtimeClassName"] == "process"
    a = stored(fake_api, "log-shipping")
    assert conditions(a) == {"Applied": "True", "Healthy": "False", "Progressing": "True", "Degraded": "False"}
    assert "0 of 0" not in a["status"]["message"] and recheck
    ds["status"] = {"observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 1,
                    "updatedNumberScheduled": 1}
    fake_api.sync()
    assert await ctl.reconcile("log-shipping") is None
    assert conditions(stored(fake_api, "log-shipping"))["Healthy"] == "True"
    fake_api.fake.objects[DS_PATH]["status"]["numberReady"] = 0  # a shipper stopped being Ready: degraded
    fake_api.sync()
    assert await ctl.reconcile("log-shipping")
    assert conditions(stored(fake_api, "log-shipping")) == {"Applied": "True", "Healthy": "False",
                                                             "Progressing": "False", "Degraded": "True"}


def test_workload_readiness():
    ds = {"kind": "DaemonSet", "metadata": {"name": "d", "namespace": "n", "generation": 2},
          "status": {"observedGeneration": 1}}
    assert "generation 2" in workload_waiting(ds)
    ds["status"] = {"observedGeneration": 2, "desiredNumberScheduled": 2, "numberReady": 1,
                    "updatedNumberScheduled": 2}
    assert workload_waiting(ds) == "DaemonSet n/d: 1 of 2 pods ready (2 updated)"
    dep = {"kind": "Deployment", "metadata": {"name": "w", "generation": 1},
           "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "readyReplicas": 2}}
    assert workload_waiting(dep) is None
    assert workload_waiting({"kind": "ConfigMap", "metadata": {}}) is None


async def test_a_built_in_piece_is_reported_as_such_with_nothing_applied(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("dns"))
    writes = await fake_api.run(ctl, "dns")
    assert [c.method for c in writes] == ["PATCH"]  # its status only
    a = stored(fake_api, "dns")
    assert a["status"]["applied"] == [] and a["status"]["message"].startswith("built in")


# ----------------------------------------------------------------- the log shipper


class FakePodsAPI:
    """What the shipper asks the API: pods of its node, and each container's log stream."""

    def __init__(self, pods, logs):
        self.items, self.logs = pods, logs

    def pods(self, node):
        return [p for p in self.items if p["spec"]["nodeName"] == node]

    def open(self, path, params, timeout):
        import io
        ns, pod = path.split("/")[4], path.split("/")[6]
        return io.BytesIO("".join(line + "\n" for line in self.logs[(ns, pod, params["container"])]).encode())


def shipped_pod(name, node="n1", running=True, restarts=0):
    state = {"running": {}} if running else {"waiting": {}}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}, "spec": {"nodeName": node},
            "status": {"containerStatuses": [{"name": "c", "state": state, "restartCount": restarts}]}}


def test_the_shipper_follows_running_containers_of_its_node_into_a_file(tmp_path):
    out = tmp_path / "made-by-the-sink" / "all.jsonl"
    api = FakePodsAPI([shipped_pod("a"), shipped_pod("b", node="n2"), shipped_pod("c", running=False)],
                      {("default", "a", "c"): ["hello", "world"]})
    s = Shipper(api, "n1", FileSink(str(out)), [])
    s.sync()
    from tests.waiting import poll
    poll(lambda: len(out.read_text().splitlines()) == 2 and not s.live, timeout=10)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["pod"], r["container"], r["line"], r["node"]) for r in recs] == [
        ("a", "c", "hello", "n1"), ("a", "c", "world", "n1")]
    assert running_containers(shipped_pod("c", running=False)) == []


def test_the_http_sink_posts_json_lines_to_its_endpoint():
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        sink = HTTPSink.__new__(HTTPSink)  # no sender thread: send one batch directly
        sink.url = f"http://127.0.0.1:{srv.server_port}/logs"
        import urllib.request
        sink.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        assert sink.send([{"line": "one"}, {"line": "two"}])
    finally:
        srv.shutdown()
    assert got == [("application/x-ndjson", b'{"line": "one"}\n{"line": "two"}\n')]


def test_cli_sets_take_the_options_type_and_an_empty_value_removes_the_key():
    entry = catalogue()["log-shipping"]
    assert parse_sets(entry, ["namespaces=a, b", "file=/x", "url="]) == {
        "namespaces": ["a", "b"], "file": "/x", "url": None}
    assert parse_sets(catalogue()["prometheus-scrape"], ["resourceMetrics=false"]) == {"resourceMetrics": False}
    assert parse_sets(None, ["colour=red"]) == {"colour": "red"}  # the server names what is wrong
    with pytest.raises(ValueError):
        parse_sets(entry, ["novalue"])


# ----------------------------------------------------------------- a piece sendo makes itself

SC_PATH = "/apis/storage.k8s.io/v1/storageclasses/local-path"
STORAGECLASSES = kind("storageclasses", "storage.k8s.io")


def local_path_class(labels):
    return {"metadata": {"name": "local-path", "labels": labels}, "provisioner": "sendo.io/local-path"}


@pytest.mark.parametrize("labels,deleted", [
    ({"app.kubernetes.io/managed-by": "sendo"}, True),  # made by the persistentvolume loop
    ({}, False),  # a class of the user's that happens to have the name
])
async def test_disabling_local_path_storage_deletes_the_class_sendo_made(fake_api, labels, deleted):
    ctl = cluster(fake_api)
    fake_api.add(STORAGECLASSES, local_path_class(labels))
    fake_api.add(ADDONS, addon("local-path-storage", enabled=False))
    await fake_api.run(ctl, "local-path-storage")
    assert (SC_PATH not in fake_api.fake.objects) == deleted


async def test_enabling_local_path_storage_applies_the_default_class(fake_api):
    ctl = cluster(fake_api)
    fake_api.add(ADDONS, addon("local-path-storage"))
    await fake_api.run(ctl, "local-path-storage")
    sc = fake_api.fake.objects[SC_PATH]
    assert sc["provisioner"] == "sendo.io/local-path"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert conditions(stored(fake_api, "local-path-storage"))["Healthy"] == "True"


@pytest.mark.parametrize("enabled,created", [(False, False), (True, True), (None, True)])
async def test_the_persistentvolume_loop_makes_the_class_unless_the_addon_is_disabled(fake_api, enabled, created):
    from sendo.controllers.persistentvolume import PersistentVolumeController
    pv = fake_api.build(PersistentVolumeController)
    if enabled is not None:
        fake_api.add(ADDONS, addon("local-path-storage", enabled=enabled))
    await pv._default_class()
    assert (SC_PATH in fake_api.fake.objects) == created


@pytest.mark.parametrize("enabled", [True, False])
async def test_deleting_the_local_path_addon_goes_back_to_the_default_on(fake_api, enabled):
    ctl = cluster(fake_api)
    fake_api.add(STORAGECLASSES, local_path_class({"app.kubernetes.io/managed-by": "sendo"}))
    fake_api.add(ADDONS, addon("local-path-storage", enabled=enabled))
    await fake_api.run(ctl, "local-path-storage")
    a = stored(fake_api, "local-path-storage")
    assert FINALIZER in a["metadata"]["finalizers"]  # held also while disabled
    assert (SC_PATH in fake_api.fake.objects) == enabled
    a["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    fake_api.add(ADDONS, a)
    await fake_api.run(ctl, "local-path-storage")
    assert SC_PATH in fake_api.fake.objects
    assert FINALIZER not in stored(fake_api, "local-path-storage")["metadata"]["finalizers"]
