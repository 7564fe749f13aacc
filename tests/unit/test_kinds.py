"""Per-kind defaults, validation and table printers (sendo.kinds)."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendo.kinds import builtin_registry
from sendo.kinds.printing import human_age, human_duration, selector_string
from sendo.kinds.quantity import format_bytes, format_cpu, parse_bytes, parse_cpu, parse_quantity
from sendo.kinds.validation import (is_dns1123_label, is_dns1123_subdomain, is_port_name, is_qualified_name,
                                    selector_matches)

REG = builtin_registry()
RES = {r.kind: r for r in REG.all()}


def ago(**kw) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(kind: str, obj: dict) -> dict:
    """What the API server does on create, minus metadata: default, prepare, keep causes aside."""
    s = RES[kind].strategy
    s.default(obj)
    s.prepare_create(obj)
    return obj


def causes_of(kind: str, obj: dict) -> list[str]:
    s = RES[kind].strategy
    s.default(obj)
    return [c.text() for c in s.validate(obj)]


def update_causes(kind: str, new: dict, old: dict) -> list[str]:
    s = RES[kind].strategy
    s.default(new)
    s.prepare_update(new, old)
    return [c.text() for c in s.validate(new) + s.validate_update(new, old)]


def fields(kind: str, obj: dict) -> list[str]:
    s = RES[kind].strategy
    s.default(obj)
    return [c.field for c in s.validate(obj)]


def row(kind: str, obj: dict) -> dict:
    """Printer cells keyed by column name."""
    p = RES[kind].printer
    cells = p.row(obj)
    assert len(cells) == len(p.columns)
    return {c.name: v for c, v in zip(p.columns, cells)}


def pod(**spec) -> dict:
    base = {"containers": [{"name": "web", "image": "nginx:1.25"}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(seconds=30)},
            "spec": base}


def deployment(**spec) -> dict:
    base = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(minutes=3, seconds=2)},
            "spec": base}


# ============================================================================ quantities


@pytest.mark.parametrize("text,millicores", [
    ("100m", 100), ("0.5", 500), ("2", 2000), ("1.5", 1500), ("0.1m", 1), ("1e3", 1_000_000),
    ("+250m", 250), (".5", 500), ("1k", 1_000_000), (3, 3000), (0.25, 250),
])
def test_parse_cpu(text, millicores):
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize("text,n", [
    ("128Mi", 128 * 2**20), ("1G", 10**9), ("1.5Gi", 3 * 2**29), ("1e3", 1000), ("1k", 1000),
    ("1Ki", 1024), ("1E", 10**18), ("1E3", 1000), ("2Ti", 2 * 2**40), ("500m", 1), ("0", 0), (512, 512),
])
def test_parse_bytes(text, n):
    assert parse_bytes(text) == n


@pytest.mark.parametrize("text", ["", "abc", "1Zi", "1K", "--1", "1e", "1.2.3", " 1", "1 Gi", "Mi", "1e999999",
                                  None, True, [], "∞"])
def test_bad_quantities_raise_value_error_with_the_form(text):
    with pytest.raises(ValueError) as e:
        parse_quantity(text)
    assert "invalid quantity" in str(e.value)


def test_format_helpers_for_node_capacity():
    assert format_cpu(2000) == "2"
    assert format_cpu(1500) == "1500m"
    assert format_bytes(24591148 * 1024) == "24591148Ki"
    assert format_bytes(2 * 2**30) == "2Gi"
    assert format_bytes(1000) == "1000"
    assert format_bytes(0) == "0"


@given(st.integers(min_value=0, max_value=10**12))
def test_cpu_round_trip(m):
    assert parse_cpu(format_cpu(m)) == m


@given(st.integers(min_value=0, max_value=2**70))
def test_bytes_round_trip(n):
    assert parse_bytes(format_bytes(n)) == n


@given(st.integers(min_value=0, max_value=10**6),
       st.sampled_from([("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("k", 10**3), ("M", 10**6), ("", 1)]))
def test_suffixes_multiply(n, suffix):
    text, factor = suffix
    assert parse_bytes(f"{n}{text}") == n * factor


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_decimal_cores(whole, frac):
    assert parse_cpu(f"{whole}.{frac:03d}") == whole * 1000 + frac


@given(st.text(max_size=12))
def test_parser_only_raises_value_error(text):
    try:
        parse_quantity(text)
    except ValueError:
        pass


# ============================================================================ names


@given(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z"))
def test_dns_labels_accepted(name):
    assert is_dns1123_label(name) == []
    assert is_dns1123_subdomain(name) == []


@given(st.lists(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z"), min_size=2, max_size=5))
def test_dns_subdomains_accepted_but_not_as_labels(parts):
    name = ".".join(parts)
    assert is_dns1123_subdomain(name) == []
    assert "must not contain dots" in is_dns1123_label(name)
    assert ("must be no more than 63 characters" in is_dns1123_label(name)) == (len(name) > 63)


@given(st.text(alphabet=string.ascii_letters + string.digits + "-._/ A", min_size=1, max_size=70))
def test_dns_label_rejects_what_the_rule_rejects(name):
    ok = (len(name) <= 63 and all(c in string.ascii_lowercase + string.digits + "-" for c in name)
          and name[0] != "-" and name[-1] != "-")
    assert (is_dns1123_label(name) == []) == ok


@pytest.mark.parametrize("name,ok", [("app", True), ("example.com/app", True), ("App_1.x", True),
                                     ("/app", False), ("a/b/c", False), ("-app", False), ("x" * 64, False),
                                     ("Example.com/app", False)])
def test_qualified_names(name, ok):
    assert (is_qualified_name(name) == []) == ok


@pytest.mark.parametrize("name,ok", [("http", True), ("web-8080", True), ("8080", False), ("a--b", False),
                                     ("-http", False), ("http-metrics-abcd", False), ("HTTP", False)])
def test_port_names(name, ok):
    assert (is_port_name(name) == []) == ok


# ============================================================================ Pod


def test_minimal_pod_is_valid_and_defaulted():
    p = create("Pod", pod())
    assert RES["Pod"].strategy.validate(p) == []
    spec = p["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True
    assert spec["securityContext"] == {}
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_defaults_do_not_override_what_the_user_set():
    p = create("Pod", pod(restartPolicy="Never", terminationGracePeriodSeconds=5))
    assert p["spec"]["restartPolicy"] == "Never"
    assert p["spec"]["terminationGracePeriodSeconds"] == 5


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_default(image, policy):
    p = create("Pod", pod(containers=[{"name": "c", "image": image}]))
    assert p["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_container_and_probe_defaults():
    p = create("Pod", pod(containers=[{
        "name": "c", "image": "x:1", "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
        volumes=[{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "cfg"}}]))
    c = p["spec"]["containers"][0]
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert p["spec"]["volumes"][0]["emptyDir"] == {}
    assert p["spec"]["volumes"][1]["configMap"]["defaultMode"] == 0o644
    assert RES["Pod"].strategy.validate(p) == []


@pytest.mark.parametrize("resources,qos", [
    (None, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
])
def test_qos_class_on_create(resources, qos):
    c = {"name": "c", "image": "x:1"}
    if resources:
        c["resources"] = resources
    p = create("Pod", pod(containers=[c]))
    assert p["status"]["qosClass"] == qos


def test_limits_become_requests_for_pods():
    p = create("Pod", pod(containers=[{"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]))
    assert p["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1"}


def test_clients_cannot_create_status():
    p = pod()
    p["status"] = {"phase": "Running", "podIP": "1.2.3.4"}
    create("Pod", p)
    assert p["status"]["phase"] == "Pending" and "podIP" not in p["status"]


def c0(**fields) -> dict:
    return {"containers": [{"name": "web", "image": "nginx:1", **fields}]}


@pytest.mark.parametrize("spec,expected", [
    ({"containers": []}, "spec.containers: Required value"),
    ({"containers": None}, "spec.containers: Required value"),
    ({"containers": "web"}, "spec.containers: Invalid value: \"web\": must be an array"),
    ({"containers": [{"image": "x"}]}, "spec.containers[0].name: Required value"),
    ({"containers": [{"name": "Web", "image": "x"}]}, "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label"),
    ({"containers": [{"name": "web"}]}, "spec.containers[0].image: Required value"),
    ({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}, 'spec.containers[1].name: Duplicate value: "a"'),
    ({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "y"}]},
     'spec.containers[0].name: Duplicate value: "a"'),
    (c0(ports=[{"containerPort": 0}]), "spec.containers[0].ports[0].containerPort: Required value"),
    (c0(ports=[{"containerPort": 70000}]), "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    (c0(ports=[{"containerPort": "80"}]), "spec.containers[0].ports[0].containerPort: Invalid value: \"80\": must be an integer"),
    (c0(ports=[{"containerPort": 80, "protocol": "HTTP"}]),
     'spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    (c0(ports=[{"containerPort": 80, "name": "web-http-metrics-x"}]), "spec.containers[0].ports[0].name: Invalid value: \"web-http-metrics-x\": must be no more than 15 characters"),
    (c0(ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]),
     'spec.containers[0].ports[1].name: Duplicate value: "http"'),
    (c0(env=[{"value": "x"}]), "spec.containers[0].env[0].name: Required value"),
    (c0(env=[{"name": "A=B"}]), "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name"),
    (c0(env=[{"name": "A", "valueFrom": {}}]), "spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of"),
    (c0(env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"},
                                         "secretKeyRef": {"name": "s", "key": "k"}}}]),
     "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"),
    (c0(env=[{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
     "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"),
    (c0(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
     "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value"),
    (c0(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.secret"}}}]),
     'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.secret"'),
    (c0(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
     'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1'),
    (c0(resources={"requests": {"memory": "lots"}}),
     'spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match'),
    (c0(resources={"requests": {"cpu": "-1"}}),
     'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0'),
    (c0(resources={"requests": {"gpu": "1"}}),
     'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers'),
    (c0(resources={"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}),
     'spec.containers[0].resources.requests: Invalid value: "1": must be equal to example.com/gpu limit of 2'),
    ({"restartPolicy": "Sometimes", **c0()},
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"'),
    ({"dnsPolicy": "Google", **c0()}, 'spec.dnsPolicy: Unsupported value: "Google"'),
    ({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], **c0()},
     'spec.volumes[1].name: Duplicate value: "a"'),
    ({"volumes": [{"name": "a", "emptyDir": {}, "hostPath": {"path": "/"}}], **c0()},
     "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"),
    (c0(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
     'spec.containers[0].volumeMounts[0].name: Not found: "data"'),
    ({"volumes": [{"name": "d", "emptyDir": {}}], **c0(volumeMounts=[{"name": "d"}])},
     "spec.containers[0].volumeMounts[0].mountPath: Required value"),
    (c0(livenessProbe={"periodSeconds": 5}),
     "spec.containers[0].livenessProbe: Required value: must specify a handler type"),
    (c0(livenessProbe={"exec": {"command": ["true"]}, "successThreshold": 2}),
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ({"activeDeadlineSeconds": 0, **c0()},
     "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ({"terminationGracePeriodSeconds": -5, **c0()},
     "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}], **c0()},
     "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'"),
    ({"nodeSelector": {"disk": "fast ssd"}, **c0()}, 'spec.nodeSelector: Invalid value: "fast ssd"'),
])
def test_pod_rules(spec, expected):
    p = pod()
    p["spec"] = spec
    texts = causes_of("Pod", p)
    assert any(t.startswith(expected) for t in texts), texts


def test_pod_labels_and_annotations_are_checked():
    p = pod()
    p["metadata"]["labels"] = {"bad key": "v", "ok": "bad value!"}
    p["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    texts = causes_of("Pod", p)
    assert any(t.startswith('metadata.labels: Invalid value: "bad key": name part must consist') for t in texts)
    assert any(t.startswith('metadata.labels: Invalid value: "bad value!"') for t in texts)
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in texts


def test_every_problem_is_reported_at_once():
    p = pod()
    p["spec"] = {"containers": [{"name": "A"}], "restartPolicy": "x"}
    assert set(fields("Pod", p)) >= {"spec.containers[0].name", "spec.containers[0].image", "spec.restartPolicy"}


# ---------------------------------------------------------------------------- pod updates


def stored_pod(**spec) -> dict:
    return create("Pod", pod(**spec))


def test_pod_update_may_change_images_and_shorten_deadline():
    old = stored_pod(activeDeadlineSeconds=100)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["activeDeadlineSeconds"] = 50
    assert update_causes("Pod", new, old) == []


def test_pod_update_may_not_change_other_fields():
    old = stored_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    texts = update_causes("Pod", new, old)
    assert len(texts) == 1
    assert texts[0].startswith("spec: Forbidden: pod updates may not change fields other than "
                               "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`")
    assert "spec.containers[0].ports" in texts[0]


def test_pod_update_deadline_rules():
    old = stored_pod(activeDeadlineSeconds=100)
    longer = copy.deepcopy(old)
    longer["spec"]["activeDeadlineSeconds"] = 200
    assert "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value" in \
        update_causes("Pod", longer, old)
    removed = copy.deepcopy(old)
    del removed["spec"]["activeDeadlineSeconds"]
    assert any(t.startswith("spec.activeDeadlineSeconds: Invalid value: null: must not update")
               for t in update_causes("Pod", removed, old))


def test_pod_update_tolerations_may_only_be_added():
    t1 = {"key": "a", "operator": "Exists", "effect": "NoSchedule"}
    old = stored_pod(tolerations=[t1])
    added = copy.deepcopy(old)
    added["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    assert update_causes("Pod", added, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["tolerations"] = [{"key": "z", "operator": "Exists"}]
    assert "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds" in \
        update_causes("Pod", changed, old)


def test_pod_update_grace_period_is_fixed():
    old = stored_pod()
    new = copy.deepcopy(old)
    new["spec"]["terminationGracePeriodSeconds"] = 60
    assert any(t.startswith("spec: Forbidden: pod updates") for t in update_causes("Pod", new, old))


def test_pod_node_name_is_set_once():
    old = stored_pod()
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "node-a"
    assert update_causes("Pod", bound, old) == []
    moved = copy.deepcopy(bound)
    moved["spec"]["nodeName"] = "node-b"
    texts = update_causes("Pod", moved, bound)
    assert texts == ['spec.nodeName: Invalid value: "node-b": field is immutable once the pod is bound to a node']


def test_unchanged_pod_update_passes_even_when_client_omits_defaults():
    old = stored_pod()
    new = pod()  # what a client sends back without the defaulted fields
    new["status"] = old["status"]
    assert update_causes("Pod", new, old) == []


# ---------------------------------------------------------------------------- pod printer


def running_pod() -> dict:
    p = stored_pod()
    p["spec"]["nodeName"] = "node-a"
    p["status"] = {"phase": "Running", "podIP": "127.0.1.5", "podIPs": [{"ip": "127.0.1.5"}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0,
                                          "state": {"running": {"startedAt": ago(seconds=20)}}}]}
    return p


def test_printer_running_pod():
    cells = row("Pod", running_pod())
    assert cells == {"Name": "web-1", "Ready": "1/1", "Status": "Running", "Restarts": "0", "Age": "30s",
                     "IP": "127.0.1.5", "Node": "node-a", "Nominated Node": "<none>", "Readiness Gates": "<none>"}
    assert [c.name for c in RES["Pod"].printer.columns if c.priority == 0] == ["Name", "Ready", "Status", "Restarts", "Age"]


def test_printer_crash_loop_pod():
    p = running_pod()
    p["status"]["containerStatuses"] = [{
        "name": "web", "ready": False, "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(minutes=5)}}}]
    cells = row("Pod", p)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == ("0/1", "CrashLoopBackOff", "5 (5m ago)")


def test_printer_terminating_pod():
    p = running_pod()
    p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row("Pod", p)["Status"] == "Terminating"


@pytest.mark.parametrize("status,expected", [
    ({"phase": "Pending"}, "Pending"),
    ({"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
     "ContainerCreating"),
    ({"phase": "Succeeded", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
     "Completed"),
    ({"phase": "Failed", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 137}}}]},
     "ExitCode:137"),
    ({"phase": "Failed", "reason": "Evicted"}, "Evicted"),
])
def test_printer_pod_status_cell(status, expected):
    p = stored_pod()
    p["status"] = status
    assert row("Pod", p)["Status"] == expected


def test_printer_init_containers():
    p = stored_pod(initContainers=[{"name": "migrate", "image": "x:1"}, {"name": "seed", "image": "x:1"}])
    p["status"] = {"phase": "Pending", "initContainerStatuses": [
        {"name": "migrate", "state": {"terminated": {"exitCode": 0}}},
        {"name": "seed", "state": {"running": {}}}]}
    assert row("Pod", p)["Status"] == "Init:1/2"
    p["status"]["initContainerStatuses"][1] = {"name": "seed", "restartCount": 3,
                                               "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    cells = row("Pod", p)
    assert cells["Status"] == "Init:CrashLoopBackOff" and cells["Restarts"] == "3"


def test_printer_pod_survives_garbage():
    p = {"metadata": {"name": "x"}, "spec": "nope", "status": {"containerStatuses": ["a", {"state": 3}]}}
    cells = row("Pod", p)
    assert cells["Name"] == "x" and cells["Age"] == "<unknown>"


# ============================================================================ ages


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"), (600, "10m"), (179 * 60, "179m"),
    (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"), (8 * 3600, "8h"), (47 * 3600, "47h"), (2 * 86400, "2d"),
    (2 * 86400 + 3600, "2d1h"), (30 * 86400, "30d"), (800 * 86400, "2y70d"), (-1, "0s"), (-5, "<invalid>"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_human_age_of_timestamps():
    now = dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)
    assert human_age("2024-01-01T00:00:00Z", now) == "2d"
    assert human_age("2024-01-02T23:59:55.123456Z", now) == "4s"
    assert human_age(None, now) == "<unknown>"
    assert human_age("yesterday", now) == "<unknown>"


# ============================================================================ Deployment / ReplicaSet


def test_minimal_deployment_is_valid_and_defaulted():
    d = create("Deployment", deployment())
    assert RES["Deployment"].strategy.validate(d) == []
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in tspec  # a Pod default, not a template default
    assert d["status"] == {}


def test_deployment_status_is_cleared_on_create():
    d = deployment()
    d["status"] = {"replicas": 9}
    assert create("Deployment", d)["status"] == {}


def tmpl(**spec_fields) -> dict:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}], **spec_fields}}


@pytest.mark.parametrize("changes,expected", [
    ({"selector": None}, "spec.selector: Required value"),
    ({"selector": {}}, "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                       "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"),
    ({"selector": {"matchLabels": {"app": "api"}}},
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`'),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["web"]}]}},
     'spec.selector.matchExpressions[0].operator: Unsupported value: "Near"'),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}},
     "spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    ({"selector": {"matchLabels": {"app": "bad value"}}}, 'spec.selector.matchLabels: Invalid value: "bad value"'),
    ({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}}},
     "spec.template.spec.containers[0].image: Required value"),
    ({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
     "spec.template.spec.containers: Required value"),
    ({"template": None}, "spec.template: Required value"),
    ({"template": tmpl(restartPolicy="Never")},
     'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'),
    ({"template": tmpl(activeDeadlineSeconds=5)}, "spec.template.spec.activeDeadlineSeconds: Forbidden"),
    ({"replicas": -1}, "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ({"replicas": "3"}, 'spec.replicas: Invalid value: "3": must be an integer'),
    ({"strategy": {"type": "BlueGreen"}},
     'spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"'),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {}}},
     "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"),
    ({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
     'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0'),
    ({"strategy": {"rollingUpdate": {"maxSurge": "lots"}}},
     'spec.strategy.rollingUpdate.maxSurge: Invalid value: "lots": a valid percent string must be'),
    ({"strategy": {"rollingUpdate": {"maxUnavailable": "120%"}}},
     'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "120%": must not be greater than 100%'),
    ({"strategy": {"rollingUpdate": {"maxSurge": -1}}},
     "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"),
    ({"progressDeadlineSeconds": 5, "minReadySeconds": 10},
     "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"),
])
def test_deployment_rules(changes, expected):
    d = deployment()
    for k, v in changes.items():
        if v is None:
            d["spec"].pop(k)
        else:
            d["spec"][k] = v
    texts = causes_of("Deployment", d)
    assert any(t.startswith(expected) for t in texts), texts


def test_deployment_selector_with_expressions_matches_template():
    d = deployment(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
    assert causes_of("Deployment", d) == []


def test_deployment_selector_is_immutable_but_the_rest_is_not():
    old = create("Deployment", deployment())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert update_causes("Deployment", new, old) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert update_causes("Deployment", new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"x"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_printer_deployment():
    d = create("Deployment", deployment(replicas=3))
    d["status"] = {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    assert row("Deployment", d) == {"Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "3m2s",
                                    "Containers": "web", "Images": "nginx:1.25", "Selector": "app=web"}
    fresh = create("Deployment", deployment())
    assert row("Deployment", fresh)["Ready"] == "0/1"


def replicaset(**spec) -> dict:
    d = deployment(**spec)
    d["kind"] = "ReplicaSet"
    return d


def test_replicaset_defaults_rules_and_printer():
    rs = create("ReplicaSet", replicaset())
    assert rs["spec"]["replicas"] == 1 and "strategy" not in rs["spec"]
    assert RES["ReplicaSet"].strategy.validate(rs) == []
    rs["status"] = {"replicas": 1, "readyReplicas": 1}
    assert row("ReplicaSet", rs) == {"Name": "web", "Desired": 1, "Current": 1, "Ready": 1, "Age": "3m2s",
                                     "Containers": "web", "Images": "nginx:1.25", "Selector": "app=web"}
    bad = replicaset(selector={"matchLabels": {"app": "other"}})
    assert any("`selector` does not match template `labels`" in t for t in causes_of("ReplicaSet", bad))
    old = create("ReplicaSet", replicaset())
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web2"}}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web2"}
    assert any(t.endswith("field is immutable") for t in update_causes("ReplicaSet", new, old))


def test_selector_string_and_matching():
    sel = {"matchLabels": {"tier": "fe", "app": "web"},
           "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                {"key": "canary", "operator": "DoesNotExist"}]}
    assert selector_string(sel) == "app=web,!canary,env in (dev,prod),tier=fe"
    assert selector_matches(sel, {"app": "web", "tier": "fe", "env": "dev"})
    assert not selector_matches(sel, {"app": "web", "tier": "fe", "env": "qa"})
    assert not selector_matches(sel, {"app": "web", "tier": "fe", "env": "dev", "canary": "1"})
    assert selector_string({}) == ""


# ============================================================================ Namespace and Node


def test_namespace_defaults_and_rules():
    ns = create("Namespace", {"metadata": {"name": "team-a", "creationTimestamp": ago(days=2)}})
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team-a"
    assert RES["Namespace"].strategy.validate(ns) == []
    assert row("Namespace", ns) == {"Name": "team-a", "Status": "Active", "Age": "2d"}
    replaced = {"metadata": {"name": "team-a"}}  # kubectl replace without spec keeps the finalizer
    assert update_causes("Namespace", replaced, ns) == [] and replaced["spec"]["finalizers"] == ["kubernetes"]
    released = {"metadata": {"name": "team-a"}, "spec": {"finalizers": []}}  # the namespace controller, done
    update_causes("Namespace", released, ns)
    assert released["spec"]["finalizers"] == []
    bad = {"metadata": {"name": "team-b"}, "spec": {"finalizers": ["not a/qualified/name"]}}
    assert any(t.startswith("spec.finalizers[0]: Invalid value") for t in causes_of("Namespace", bad))


def node(**kw) -> dict:
    n = {"metadata": {"name": "node-a", "creationTimestamp": ago(hours=3),
                      "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
         "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "a"}],
                    "nodeInfo": {"kubeletVersion": "v1.31.0-sendo", "osImage": "Debian GNU/Linux 12",
                                 "kernelVersion": "6.1.0", "containerRuntimeVersion": "process://0.1"},
                    "capacity": {"cpu": "2", "memory": "4028092Ki", "pods": "110"}}}
    n.update(kw)
    return n


def test_printer_node():
    n = create("Node", node())
    assert n["status"]["allocatable"] == n["status"]["capacity"]
    assert row("Node", n) == {"Name": "node-a", "Status": "Ready", "Roles": "control-plane,worker", "Age": "3h",
                              "Version": "v1.31.0-sendo", "Internal-IP": "127.0.0.1", "External-IP": "<none>",
                              "OS-Image": "Debian GNU/Linux 12", "Kernel-Version": "6.1.0",
                              "Container-Runtime": "process://0.1"}


@pytest.mark.parametrize("conditions,unschedulable,status", [
    ([{"type": "Ready", "status": "False"}], False, "NotReady"),
    ([{"type": "Ready", "status": "Unknown"}], True, "NotReady,SchedulingDisabled"),
    ([], False, "Unknown"),
    ([{"type": "Ready", "status": "True"}], True, "Ready,SchedulingDisabled"),
])
def test_printer_node_status(conditions, unschedulable, status):
    n = node(spec={"unschedulable": unschedulable})
    n["status"]["conditions"] = conditions
    n["metadata"]["labels"] = {}
    cells = row("Node", n)
    assert cells["Status"] == status and cells["Roles"] == "<none>"


def test_node_taints_and_pod_cidr():
    n = node(spec={"taints": [{"key": "gpu", "effect": "NoWork"}]})
    assert any(t.startswith('spec.taints[0].effect: Unsupported value: "NoWork"') for t in causes_of("Node", n))
    old = create("Node", node(spec={"podCIDR": "10.0.0.0/24"}))
    new = copy.deepcopy(old)
    new["spec"]["podCIDR"] = "10.0.1.0/24"
    assert any(t.startswith("spec.podCIDR: Forbidden") for t in update_causes("Node", new, old))


# ============================================================================ Event


def event(**kw) -> dict:
    e = {"metadata": {"name": "web-1.17a", "namespace": "default"},
         "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
         "reason": "Started", "message": "Started container web ", "type": "Normal",
         "source": {"component": "kubelet", "host": "node-a"},
         "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=40), "count": 3}
    e.update(kw)
    return e


def test_event_rules_and_printer():
    assert causes_of("Event", event()) == []
    e = event()
    del e["involvedObject"]
    assert causes_of("Event", e) == ["involvedObject: Required value"]
    other = event(involvedObject={"kind": "Pod", "name": "x", "namespace": "kube-system"})
    assert causes_of("Event", other) == ['involvedObject.namespace: Invalid value: "kube-system": does not match event.namespace']
    assert row("Event", event()) == {"Last Seen": "40s", "Type": "Normal", "Reason": "Started", "Object": "pod/web-1",
                                     "Subobject": "", "Source": "kubelet, node-a", "Message": "Started container web",
                                     "First Seen": "10m", "Count": 3, "Name": "web-1.17a"}
    visible = [c.name for c in RES["Event"].printer.columns if c.priority == 0]
    assert visible == ["Last Seen", "Type", "Reason", "Object", "Message"]


# ============================================================================ ConfigMap and Secret


def test_configmap_rules_and_printer():
    cm = {"metadata": {"name": "cfg", "creationTimestamp": ago(seconds=9)}, "data": {"app.conf": "x=1", "b": "2"},
          "binaryData": {"logo.png": base64.b64encode(b"\x89PNG").decode()}}
    assert causes_of("ConfigMap", cm) == []
    assert row("ConfigMap", cm) == {"Name": "cfg", "Data": 3, "Age": "9s"}
    bad = {"metadata": {"name": "cfg"}, "data": {"bad key!": "x", "k": "v"}, "binaryData": {"k": "dg=="}}
    texts = causes_of("ConfigMap", bad)
    assert any(t.startswith('data[bad key!]: Invalid value: "bad key!": a valid config key must consist of') for t in texts)
    assert 'binaryData: Invalid value: "k": duplicate of key present in data' in texts
    big = {"metadata": {"name": "cfg"}, "data": {"k": "x" * (1024 * 1024)}}
    assert causes_of("ConfigMap", big) == ["Too long: must have at most 1048576 bytes"]


def test_immutable_configmap():
    old = {"metadata": {"name": "cfg"}, "data": {"k": "v"}, "immutable": True}
    new = copy.deepcopy(old)
    new["data"]["k"] = "w"
    assert update_causes("ConfigMap", new, old) == ["data: Forbidden: field is immutable when `immutable` is set"]


def test_secret_defaults_merge_string_data():
    s = create("Secret", {"metadata": {"name": "db", "creationTimestamp": ago(days=2)},
                          "data": {"user": base64.b64encode(b"old").decode()},
                          "stringData": {"user": "admin", "password": "s3cret"}})
    assert "stringData" not in s
    assert s["type"] == "Opaque"
    assert base64.b64decode(s["data"]["user"]) == b"admin"
    assert base64.b64decode(s["data"]["password"]) == b"s3cret"
    assert RES["Secret"].strategy.validate(s) == []
    assert row("Secret", s) == {"Name": "db", "Type": "Opaque", "Data": 2, "Age": "2d"}


def test_secret_rules():
    texts = causes_of("Secret", {"metadata": {"name": "db"}, "data": {"password": "not base64!"}})
    assert len(texts) == 1 and texts[0].startswith("data[password]: Invalid value:")
    assert "not base64!" not in texts[0]  # never echo secret material
    tls = causes_of("Secret", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {}})
    assert tls == ["data[tls.crt]: Required value", "data[tls.key]: Required value"]
    old = create("Secret", {"metadata": {"name": "db"}, "data": {}})
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    new["data"] = {"username": "YQ=="}
    assert update_causes("Secret", new, old) == ['type: Invalid value: "kubernetes.io/basic-auth": field is immutable']


# ============================================================================ Service


def service(**spec) -> dict:
    base = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(hours=50)}, "spec": base}


def test_service_defaults_and_printer():
    s = create("Service", service())
    assert RES["Service"].strategy.validate(s) == []
    assert s["spec"]["type"] == "ClusterIP" and s["spec"]["sessionAffinity"] == "None"
    assert s["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert row("Service", s) == {"Name": "web", "Type": "ClusterIP", "Cluster-IP": "<none>", "External-IP": "<none>",
                                 "Port(s)": "80/TCP", "Age": "2d2h", "Selector": "app=web"}
    np = create("Service", service(type="NodePort", clusterIP="10.0.0.7",
                                   ports=[{"port": 80, "nodePort": 30080, "targetPort": "http"}]))
    assert RES["Service"].strategy.validate(np) == []
    cells = row("Service", np)
    assert (cells["Cluster-IP"], cells["Port(s)"]) == ("10.0.0.7", "80:30080/TCP")
    lb = create("Service", service(type="LoadBalancer"))
    assert row("Service", lb)["External-IP"] == "<pending>"


@pytest.mark.parametrize("spec,expected", [
    ({"ports": []}, "spec.ports: Required value"),
    ({"ports": [{"port": 0}]}, "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ({"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]}, 'spec.ports[1].name: Duplicate value: "http"'),
    ({"ports": [{"port": 80}, {"port": 81, "name": "b"}]}, "spec.ports[0].name: Required value"),
    ({"ports": [{"port": 80, "protocol": "ICMP"}]}, 'spec.ports[0].protocol: Unsupported value: "ICMP"'),
    ({"ports": [{"port": 80, "targetPort": "Web_Port"}]}, 'spec.ports[0].targetPort: Invalid value: "Web_Port"'),
    ({"ports": [{"port": 80, "targetPort": 0.5}]}, "spec.ports[0].targetPort: Invalid value: 0.5: must be an integer"),
    ({"type": "Magic"}, 'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ({"ports": [{"port": 80, "nodePort": 30001}]}, "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    ({"clusterIP": "300.1.1.1"}, 'spec.clusterIP: Invalid value: "300.1.1.1": must be a valid IP address'),
    ({"sessionAffinity": "Sticky"}, 'spec.sessionAffinity: Unsupported value: "Sticky"'),
    ({"type": "ExternalName", "ports": []}, "spec.externalName: Required value"),
])
def test_service_rules(spec, expected):
    texts = causes_of("Service", service(**spec))
    assert any(t.startswith(expected) for t in texts), texts


def test_service_without_ports_when_headless_or_external_name():
    assert causes_of("Service", service(ports=[], clusterIP="None")) == []
    assert causes_of("Service", service(ports=[], type="ExternalName", externalName="db.example.com")) == []


def test_service_cluster_ip_is_kept_and_immutable():
    old = create("Service", service(clusterIP="10.0.0.7"))
    resent = service()  # kubectl replace without the allocated IP
    assert update_causes("Service", resent, old) == []
    assert resent["spec"]["clusterIP"] == "10.0.0.7"
    moved = service(clusterIP="10.0.0.8")
    assert update_causes("Service", moved, old) == ['spec.clusterIP: Invalid value: "10.0.0.8": field is immutable']


# ============================================================================ Lease


def test_lease_rules_and_printer():
    lease = {"metadata": {"name": "sendo-scheduler", "creationTimestamp": ago(seconds=3)},
             "spec": {"holderIdentity": "server-1", "leaseDurationSeconds": 15, "renewTime": "2024-01-01T00:00:00.000000Z"}}
    assert causes_of("Lease", lease) == []
    assert row("Lease", lease) == {"Name": "sendo-scheduler", "Holder": "server-1", "Age": "3s"}
    assert row("Lease", {"metadata": {"name": "free"}, "spec": {}})["Holder"] == ""
    bad = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}
    assert causes_of("Lease", bad) == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]


# ============================================================================ every kind


def test_every_builtin_kind_has_rules_and_columns():
    for r in REG.all():
        if "list" not in r.verbs:  # the review kinds are only ever created, never listed
            assert r.printer is None and r.verbs == ["create"], r.kind
            continue
        assert r.printer is not None, r.kind
        assert r.printer.columns[0].name in ("Name", "Last Seen"), r.kind


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "image", "containers", "ports", "containerPort", "spec", "template", "selector",
                         "matchLabels", "labels", "metadata", "data", "env", "resources", "limits", "cpu",
                         "status", "type", "stringData", "involvedObject", "volumes", "tolerations"]) | st.text(max_size=4),
        inner, max_size=4),
    max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(RES)), spec=json_values, extra=st.dictionaries(st.sampled_from(
    ["data", "stringData", "binaryData", "involvedObject", "type", "immutable", "status"]), json_values, max_size=3))
def test_malformed_objects_never_crash(kind, spec, extra):
    """Any JSON at all must give causes (a 422), never an exception (a 500)."""
    obj = {"metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}}, "spec": spec, **extra}
    r = RES[kind]
    s = r.strategy
    s.default(obj)
    s.prepare_create(obj)
    s.validate(obj)
    s.validate_update(obj, copy.deepcopy(obj))
    s.prepare_update(copy.deepcopy(obj), obj)
    if r.printer is not None:  # every listable kind has one (above)
        assert len(r.printer.row(obj)) == len(r.printer.columns)
