"""Defaults, validation and table printers of ServiceAccount, Endpoints, EndpointSlice, PersistentVolumeClaim,
Job, CronJob, DaemonSet and StatefulSet, and the newer Service rules (sendo.kinds)."""
from __future__ import annotations

import copy
import datetime as dt

import pytest

from sendo.api.patch import strategic_merge_patch
from sendo.kinds import builtin_registry
from sendo.kinds.batch import cron_schedule_error

REG = builtin_registry()
RES = {r.kind: r for r in REG.all()}
UID = "0f1e2d3c-0000-4000-8000-000000000001"


def ago(**kw) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(kind: str, obj: dict, uid: str = UID) -> dict:
    """What the API server does on create: uid first, then defaults and server-set fields."""
    obj.setdefault("metadata", {}).setdefault("uid", uid)
    s = RES[kind].strategy
    s.default(obj)
    s.prepare_create(obj)
    return obj


def causes_of(kind: str, obj: dict) -> list[str]:
    s = RES[kind].strategy
    s.default(obj)
    return [c.text() for c in s.validate(obj)]


def created_causes(kind: str, obj: dict) -> list[str]:
    return [c.text() for c in RES[kind].strategy.validate(create(kind, obj))]


def update_causes(kind: str, new: dict, old: dict) -> list[str]:
    s = RES[kind].strategy
    s.default(new)
    s.prepare_update(new, old)
    return [c.text() for c in s.validate(new) + s.validate_update(new, old)]


def row(kind: str, obj: dict, *, wide: bool = True) -> dict:
    p = RES[kind].printer
    cells = p.row(obj)
    assert len(cells) == len(p.columns)
    return {c.name: v for c, v in zip(p.columns, cells) if wide or c.priority == 0}


def meta(name: str = "x", **extra) -> dict:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(minutes=5), **extra}


def has(texts: list[str], expected: str) -> bool:
    return any(t.startswith(expected) for t in texts)


# ============================================================================ ServiceAccount


def test_service_account_rules_and_printer():
    sa = create("ServiceAccount", {"metadata": meta("builder"), "secrets": [{"name": "a"}, {"name": "b"}]})
    assert RES["ServiceAccount"].strategy.validate(sa) == []
    assert row("ServiceAccount", sa) == {"Name": "builder", "Secrets": 2, "Age": "5m"}
    assert RES["ServiceAccount"].short_names == ["sa"] and not RES["ServiceAccount"].strategy.has_status
    bad = {"metadata": meta(), "secrets": [{"name": "Not_OK"}], "imagePullSecrets": "x",
           "automountServiceAccountToken": "yes"}
    texts = causes_of("ServiceAccount", bad)
    assert has(texts, 'secrets[0].name: Invalid value: "Not_OK"')
    assert has(texts, 'imagePullSecrets: Invalid value: "x": must be an array')
    assert has(texts, 'automountServiceAccountToken: Invalid value: "yes": must be a boolean')


# ============================================================================ Endpoints


def endpoints(*subsets) -> dict:
    return {"metadata": meta("web"), "subsets": list(subsets)}


def test_endpoints_defaults_and_loopback_pod_ips():
    ep = create("Endpoints", endpoints({"addresses": [{"ip": "127.64.0.5"}], "ports": [{"port": 8080}]}))
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    assert RES["Endpoints"].strategy.validate(ep) == []


@pytest.mark.parametrize("subset,expected", [
    ({"ports": [{"port": 80}]}, "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"),
    ({"addresses": [{"ip": "300.0.0.1"}]}, 'subsets[0].addresses[0].ip: Invalid value: "300.0.0.1": must be a valid IP'),
    ({"addresses": [{}]}, "subsets[0].addresses[0].ip: Required value"),
    ({"addresses": [{"ip": "0.0.0.0"}]}, 'subsets[0].addresses[0].ip: Invalid value: "0.0.0.0": may not be unspecified'),
    ({"addresses": [{"ip": "169.254.1.1"}]}, "subsets[0].addresses[0].ip: Invalid value: \"169.254.1.1\": may not be "
                                             "in the link-local range"),
    ({"notReadyAddresses": [{"ip": "127.64.0.1", "hostname": "No_Host"}]},
     'subsets[0].notReadyAddresses[0].hostname: Invalid value: "No_Host"'),
    ({"addresses": [{"ip": "127.64.0.1"}], "ports": [{"port": 80}, {"port": 81, "name": "b"}]},
     "subsets[0].ports[0].name: Required value"),
    ({"addresses": [{"ip": "127.64.0.1"}], "ports": [{"port": 70000}]},
     "subsets[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ({"addresses": [{"ip": "127.64.0.1"}], "ports": [{"port": 80, "protocol": "ICMP"}]},
     'subsets[0].ports[0].protocol: Unsupported value: "ICMP"'),
])
def test_endpoints_rules(subset, expected):
    texts = causes_of("Endpoints", endpoints(subset))
    assert has(texts, expected), texts


def test_endpoints_printer():
    assert row("Endpoints", endpoints())["Endpoints"] == "<none>"
    two = endpoints({"addresses": [{"ip": "127.64.0.1"}, {"ip": "127.64.0.2"}], "ports": [{"port": 8080}]})
    assert row("Endpoints", two) == {"Name": "web", "Endpoints": "127.64.0.1:8080,127.64.0.2:8080", "Age": "5m"}
    many = endpoints({"addresses": [{"ip": f"127.64.0.{i}"} for i in range(1, 6)],
                      "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]})
    assert row("Endpoints", many)["Endpoints"] == "127.64.0.1:80,127.64.0.2:80,127.64.0.3:80 + 7 more..."
    headless = endpoints({"addresses": [{"ip": "127.64.0.1"}, {"ip": "fd00::1"}]})
    assert row("Endpoints", headless)["Endpoints"] == "127.64.0.1,fd00::1"
    v6 = endpoints({"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 443}]})
    assert row("Endpoints", v6)["Endpoints"] == "[fd00::1]:443"


# ============================================================================ EndpointSlice


def eps(**fields) -> dict:
    obj = {"metadata": meta("web-abc12", labels={"kubernetes.io/service-name": "web"}), "addressType": "IPv4",
           "endpoints": [{"addresses": ["127.64.0.7"], "conditions": {"ready": True}}],
           "ports": [{"name": "http", "port": 8080}]}
    obj.update(fields)
    return obj


def test_endpointslice_defaults_rules_and_printer():
    es = create("EndpointSlice", eps())
    assert es["ports"][0]["protocol"] == "TCP"
    assert RES["EndpointSlice"].strategy.validate(es) == []
    assert RES["EndpointSlice"].group == "discovery.k8s.io" and RES["EndpointSlice"].api_version == "discovery.k8s.io/v1"
    assert row("EndpointSlice", es) == {"Name": "web-abc12", "AddressType": "IPv4", "Ports": "8080",
                                        "Endpoints": "127.64.0.7", "Age": "5m"}
    bare = create("EndpointSlice", eps(ports=None, endpoints=None))
    cells = row("EndpointSlice", bare)
    assert (cells["Ports"], cells["Endpoints"]) == ("<unset>", "<unset>")
    many = create("EndpointSlice", eps(endpoints=[{"addresses": [f"127.64.0.{i}"]} for i in range(1, 6)],
                                       ports=[{"port": p} for p in (1, 2, 3, 4)]))
    cells = row("EndpointSlice", many)
    assert cells["Endpoints"] == "127.64.0.1,127.64.0.2,127.64.0.3 + 2 more..." and cells["Ports"] == "1,2,3 + 1 more..."


@pytest.mark.parametrize("fields,expected", [
    ({"addressType": None}, "addressType: Required value"),
    ({"addressType": "IPX"}, 'addressType: Unsupported value: "IPX": supported values: "FQDN", "IPv4", "IPv6"'),
    ({"endpoints": [{"addresses": []}]}, "endpoints[0].addresses: Required value: must contain at least 1 address"),
    ({"endpoints": [{"addresses": ["fd00::1"]}]}, 'endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a '
                                                  'valid IPv4 address'),
    ({"addressType": "IPv6", "endpoints": [{"addresses": ["127.64.0.1"]}]},
     'endpoints[0].addresses[0]: Invalid value: "127.64.0.1": must be a valid IPv6 address'),
    ({"addressType": "FQDN", "endpoints": [{"addresses": ["localhost"]}]},
     'endpoints[0].addresses[0]: Invalid value: "localhost": should be a domain with at least two segments'),
    ({"endpoints": [{"addresses": ["127.64.0.1"], "nodeName": "Bad_Node"}]}, 'endpoints[0].nodeName: Invalid value'),
    ({"endpoints": [{"addresses": ["127.64.0.1"], "conditions": {"ready": "yes"}}]},
     'endpoints[0].conditions.ready: Invalid value: "yes": must be a boolean'),
    ({"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}, 'ports[1].name: Duplicate value: "a"'),
    ({"ports": [{"port": 1, "protocol": "ICMP"}]}, 'ports[0].protocol: Unsupported value: "ICMP"'),
    ({"endpoints": [{"addresses": [str(i)]} for i in range(1001)]}, "endpoints: Too many: 1001: must have at most 1000"),
])
def test_endpointslice_rules(fields, expected):
    texts = causes_of("EndpointSlice", eps(**fields))
    assert has(texts, expected), texts


def test_endpointslice_address_type_is_immutable():
    old = create("EndpointSlice", eps())
    new = eps(addressType="IPv6", endpoints=[{"addresses": ["fd00::7"]}])
    assert update_causes("EndpointSlice", new, old) == ['addressType: Invalid value: "IPv6": field is immutable']


# ============================================================================ PersistentVolumeClaim


def pvc(**spec) -> dict:
    body = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    body.update(spec)
    return {"metadata": meta("data"), "spec": body}


def test_pvc_defaults_and_printer():
    claim = create("PersistentVolumeClaim", pvc(storageClassName="local"))
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"] == {"phase": "Pending"}
    assert RES["PersistentVolumeClaim"].strategy.validate(claim) == []
    assert row("PersistentVolumeClaim", claim) == {
        "Name": "data", "Status": "Pending", "Volume": "", "Capacity": "", "Access Modes": "", "StorageClass": "local",
        "VolumeAttributesClass": "<unset>", "Age": "5m", "VolumeMode": "Filesystem"}
    bound = copy.deepcopy(claim)
    bound["spec"]["volumeName"] = "pv-1"
    bound["status"] = {"phase": "Bound", "capacity": {"storage": "2Gi"},
                       "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]}
    bound["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "old-style"}
    cells = row("PersistentVolumeClaim", bound)
    assert (cells["Status"], cells["Volume"], cells["Capacity"], cells["Access Modes"], cells["StorageClass"]) == \
        ("Bound", "pv-1", "2Gi", "RWO,RWX", "old-style")
    bound["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row("PersistentVolumeClaim", bound)["Status"] == "Terminating"


@pytest.mark.parametrize("spec,expected", [
    ({"accessModes": []}, "spec.accessModes: Required value: at least 1 access mode is required"),
    ({"accessModes": ["ReadWriteSometimes"]}, 'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported '
                                             'values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"'),
    ({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]},
     "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"),
    ({"resources": {}}, "spec.resources[storage]: Required value"),
    ({"resources": {"requests": {"storage": "0"}}}, 'spec.resources[storage]: Invalid value: "0": must be greater than zero'),
    ({"resources": {"requests": {"storage": "lots"}}}, 'spec.resources[storage]: Invalid value: "lots"'),
    ({"storageClassName": "Fast_SSD"}, 'spec.storageClassName: Invalid value: "Fast_SSD"'),
    ({"volumeMode": "Tape"}, 'spec.volumeMode: Unsupported value: "Tape": supported values: "Block", "Filesystem"'),
    ({"selector": {"matchLabels": {"a": "-"}}}, "spec.selector.matchLabels: Invalid value"),
    ({"dataSource": {"kind": "Snapshot", "name": "s"}},
     "spec.dataSource: Invalid value: \"Snapshot\": must be 'PersistentVolumeClaim' when referencing the default apiGroup"),
])
def test_pvc_rules(spec, expected):
    texts = causes_of("PersistentVolumeClaim", pvc(**spec))
    assert has(texts, expected), texts


def test_pvc_spec_is_fixed_but_a_bound_claim_may_grow():
    old = create("PersistentVolumeClaim", pvc())
    bigger = pvc(resources={"requests": {"storage": "2Gi"}})
    assert has(update_causes("PersistentVolumeClaim", bigger, old),
               "spec: Forbidden: spec is immutable after creation except resources.requests")
    bound = copy.deepcopy(old)
    bound["spec"]["volumeName"] = "pv-1"
    bound["status"] = {"phase": "Bound"}
    grow = copy.deepcopy(bound)
    grow["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert update_causes("PersistentVolumeClaim", grow, bound) == []
    shrink = copy.deepcopy(bound)
    shrink["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert update_causes("PersistentVolumeClaim", shrink, bound) == [
        "spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
    modes = copy.deepcopy(bound)
    modes["spec"]["accessModes"] = ["ReadOnlyMany"]
    assert has(update_causes("PersistentVolumeClaim", modes, bound), "spec: Forbidden: spec is immutable")
    # binding sets volumeName once, and an unset class may be set once
    binding = copy.deepcopy(old)
    binding["spec"].update(volumeName="pv-9", storageClassName="local")
    assert update_causes("PersistentVolumeClaim", binding, old) == []


# ============================================================================ Job


def job(**spec) -> dict:
    body = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    body.update(spec)
    return {"metadata": meta("pi"), "spec": body}


def test_job_defaults_and_generated_selector():
    j = create("Job", job())
    spec = j["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"]) == \
        (1, 1, 6, "NonIndexed")
    assert (spec["suspend"], spec["manualSelector"], spec["podReplacementPolicy"]) == \
        (False, False, "TerminatingOrFailed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}
    assert spec["template"]["metadata"]["labels"] == {
        "controller-uid": UID, "batch.kubernetes.io/controller-uid": UID, "job-name": "pi",
        "batch.kubernetes.io/job-name": "pi"}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30  # pod spec defaults too
    assert j["status"] == {}
    assert RES["Job"].strategy.validate(j) == []
    # parallelism alone leaves completions unset (a work queue); labels come from the template
    q = create("Job", job(parallelism=3, template={"metadata": {"labels": {"app": "q"}},
                                                    "spec": job()["spec"]["template"]["spec"]}))
    assert "completions" not in q["spec"] and q["metadata"]["labels"] == {"app": "q"}
    per_index = create("Job", job(completionMode="Indexed", completions=3, backoffLimitPerIndex=1))
    assert per_index["spec"]["backoffLimit"] == 2**31 - 1


def test_manual_selector_is_kept_and_must_match():
    manual = job(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    j = create("Job", manual)
    assert j["spec"]["selector"] == {"matchLabels": {"app": "x"}}
    assert RES["Job"].strategy.validate(j) == []
    wrong = job(manualSelector=True, selector={"matchLabels": {"app": "y"}})
    wrong["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    assert has(created_causes("Job", wrong), "spec.template.metadata.labels: Invalid value: "
                                             'map[string]string{"app":"x"}: `selector` does not match template `labels`')


def test_generated_labels_that_were_tampered_with_are_refused():
    j = create("Job", job())
    j["spec"]["template"]["metadata"]["labels"]["controller-uid"] = "someone-else"
    texts = [c.text() for c in RES["Job"].strategy.validate(j)]
    assert has(texts, 'spec.template.metadata.labels[controller-uid]: Invalid value: "someone-else"')
    foreign = job(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}})
    assert has(created_causes("Job", foreign), "spec.selector: Invalid value: v1.LabelSelector")


@pytest.mark.parametrize("spec,expected", [
    ({"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
     'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'),
    ({"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}},
     "spec.template.spec.restartPolicy: Required value"),
    ({"parallelism": -1}, "spec.parallelism: Invalid value: -1: must be greater than or equal to 0"),
    ({"backoffLimit": -2}, "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0"),
    ({"activeDeadlineSeconds": -5}, "spec.activeDeadlineSeconds: Invalid value: -5"),
    ({"completionMode": "Sometimes"}, 'spec.completionMode: Unsupported value: "Sometimes": supported values: '
                                      '"NonIndexed", "Indexed"'),
    ({"completionMode": "Indexed", "completions": None, "parallelism": 2},
     "spec.completions: Required value: when completion mode is Indexed"),
    ({"completionMode": "Indexed", "completions": 2, "parallelism": 100001},
     "spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is Indexed"),
    ({"backoffLimitPerIndex": 1}, "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"),
    ({"maxFailedIndexes": 1, "completionMode": "Indexed", "completions": 3},
     "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"),
    ({"suspend": "no"}, 'spec.suspend: Invalid value: "no": must be a boolean'),
    ({"podReplacementPolicy": "Sometimes"}, 'spec.podReplacementPolicy: Unsupported value: "Sometimes"'),
    ({"successPolicy": {"rules": [{"succeededCount": 1}]}},
     "spec.successPolicy: Invalid value"),
    ({"completionMode": "Indexed", "completions": 5, "successPolicy": {"rules": [{"succeededIndexes": "3-1"}]}},
     'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "3-1": error parsing succeededIndexes: first index'),
    ({"completionMode": "Indexed", "completions": 5, "successPolicy": {"rules": [{"succeededCount": 9}]}},
     "spec.successPolicy.rules[0].succeededCount: Invalid value: 9: must be less than or equal to 5"),
    ({"managedBy": "nothing"}, 'spec.managedBy: Invalid value: "nothing": must be a domain-prefixed path'),
])
def test_job_rules(spec, expected):
    texts = created_causes("Job", job(**spec))
    assert has(texts, expected), texts


@pytest.mark.parametrize("policy,expected", [
    ({"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]},
     "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator"),
    ({"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1]}}]},
     "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [3,1]: must be ordered"),
    ({"rules": [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [1]}}]},
     'spec.podFailurePolicy.rules[0].action: Unsupported value: "Explode"'),
    ({"rules": [{"action": "Ignore"}]},
     "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required"),
    ({"rules": [{"action": "FailIndex", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
     'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set'),
    ({"rules": [{"action": "Count", "onExitCodes": {"operator": "In", "values": [1], "containerName": "nope"}}]},
     'spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "nope": must be one of the container'),
])
def test_pod_failure_policy_rules(policy, expected):
    texts = created_causes("Job", job(podFailurePolicy=policy))
    assert has(texts, expected), texts


def test_pod_failure_policy_defaults_and_needs_never():
    j = create("Job", job(podFailurePolicy={"rules": [{"action": "Ignore",
                                                       "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
    assert j["spec"]["podReplacementPolicy"] == "Failed"
    assert j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"
    assert RES["Job"].strategy.validate(j) == []
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert has([c.text() for c in RES["Job"].strategy.validate(j)],
               'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported')


def test_indexed_job_name_must_leave_room_for_the_index():
    long = job(completionMode="Indexed", completions=10)
    long["metadata"]["name"] = "a" * 62
    assert has(created_causes("Job", long), "metadata.name: Invalid value")


def test_job_update_rules():
    old = create("Job", job())
    same = copy.deepcopy(old)
    same["spec"]["parallelism"] = 4
    same["spec"]["suspend"] = True
    assert update_causes("Job", same, old) == []
    more = copy.deepcopy(old)
    more["spec"]["completions"] = 3
    assert update_causes("Job", more, old) == ["spec.completions: Invalid value: 3: field is immutable"]
    image = copy.deepcopy(old)
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine"
    assert has(update_causes("Job", image, old), "spec.template: Invalid value")
    selector = copy.deepcopy(old)
    selector["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert has(update_causes("Job", selector, old), "spec.selector: Invalid value")
    # a suspended Job that never started may still be steered to other nodes
    suspended = create("Job", job(suspend=True))
    moved = copy.deepcopy(suspended)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    moved["spec"]["template"]["metadata"]["annotations"] = {"note": "x"}
    assert update_causes("Job", moved, suspended) == []
    started = copy.deepcopy(suspended)
    started["status"] = {"startTime": ago(seconds=9)}
    assert has(update_causes("Job", copy.deepcopy(moved), started), "spec.template: Invalid value")


@pytest.mark.parametrize("status,deleting,cell", [
    ({}, False, "Running"),
    ({"conditions": [{"type": "Complete", "status": "True"}]}, False, "Complete"),
    ({"conditions": [{"type": "Failed", "status": "True"}]}, True, "Failed"),
    ({"conditions": [{"type": "Suspended", "status": "True"}]}, False, "Suspended"),
    ({"conditions": [{"type": "Suspended", "status": "True"}]}, True, "Terminating"),
    ({"conditions": [{"type": "FailureTarget", "status": "True"}]}, False, "FailureTarget"),
    ({"conditions": [{"type": "Complete", "status": "False"}]}, False, "Running"),
])
def test_job_status_cell(status, deleting, cell):
    j = create("Job", job())
    j["status"] = status
    if deleting:
        j["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row("Job", j)["Status"] == cell


def test_job_printer():
    j = create("Job", job(completions=3, parallelism=2))
    j["status"] = {"succeeded": 2, "startTime": ago(minutes=3, seconds=2)}
    cells = row("Job", j)
    assert cells["Completions"] == "2/3" and cells["Duration"] == "3m2s" and cells["Age"] == "5m"
    assert (cells["Containers"], cells["Images"]) == ("c", "busybox")
    assert cells["Selector"] == f"batch.kubernetes.io/controller-uid={UID}"
    j["status"]["completionTime"] = ago(minutes=2)
    assert row("Job", j)["Duration"] == "62s"
    queue = create("Job", job(parallelism=4))
    assert row("Job", queue)["Completions"] == "0/1 of 4" and row("Job", queue)["Duration"] == ""
    assert row("Job", create("Job", job(parallelism=1, completions=None)))["Completions"] == "0/1"
    assert [c.name for c in RES["Job"].printer.columns if c.priority == 0] == \
        ["Name", "Status", "Completions", "Duration", "Age"]


# ============================================================================ CronJob


@pytest.mark.parametrize("schedule", [
    "*/5 * * * *", "0 0 * * MON-FRI", "0 12 1 jan,jul ?", "30 2 1-31/2 * sun", "0 0 * * 0-6", "5/15 * * * *",
    "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually", "@every 1h30m",
    "@every 90s", "0,15,30,45 * * * *",
])
def test_valid_cron_schedules(schedule):
    assert cron_schedule_error(schedule) is None


@pytest.mark.parametrize("schedule,error", [
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("* 24 * * *", "end of range (24) above maximum (23): 24"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/2/3 * * * *", "too many slashes: */2/3"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("* *", "expected exactly 5 fields, found 2: [* *]"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("@every soon", 'failed to parse duration @every soon: time: invalid duration "soon"'),
    ("* * * smarch *", 'failed to parse int from smarch: strconv.Atoi: parsing "smarch": invalid syntax'),
])
def test_invalid_cron_schedules(schedule, error):
    assert cron_schedule_error(schedule) == error


def cronjob(**spec) -> dict:
    body = {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": job()["spec"]["template"]}}}
    body.update(spec)
    return {"metadata": meta("tick"), "spec": body}


def test_cronjob_defaults_and_printer():
    cj = create("CronJob", cronjob())
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert "completions" not in spec["jobTemplate"]["spec"]  # a Job's own defaults come when it is made
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert cj["status"] == {} and RES["CronJob"].strategy.validate(cj) == []
    assert row("CronJob", cj, wide=False) == {"Name": "tick", "Schedule": "*/1 * * * *", "Timezone": "<none>",
                                              "Suspend": "False", "Active": 0, "Last Schedule": "<none>", "Age": "5m"}
    cj["spec"]["timeZone"] = "Europe/Paris"
    cj["status"] = {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(seconds=40)}
    cells = row("CronJob", cj)
    assert (cells["Timezone"], cells["Active"], cells["Last Schedule"], cells["Containers"]) == \
        ("Europe/Paris", 1, "40s", "c")
    assert RES["CronJob"].short_names == ["cj"]


@pytest.mark.parametrize("spec,expected", [
    ({"schedule": ""}, "spec.schedule: Required value"),
    ({"schedule": "0 25 * * *"}, 'spec.schedule: Invalid value: "0 25 * * *": end of range (25) above maximum (23): 25'),
    ({"schedule": "CRON_TZ=UTC * * * * *"}, 'spec.schedule: Invalid value: "CRON_TZ=UTC * * * * *": cannot use TZ or '
                                            'CRON_TZ in schedule, use timeZone field instead'),
    ({"timeZone": "Europe/Pariss"}, 'spec.timeZone: Invalid value: "Europe/Pariss": unknown time zone Europe/Pariss'),
    ({"timeZone": "Local"}, 'spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone'),
    ({"timeZone": ""}, 'spec.timeZone: Invalid value: "": timeZone must be nil or non-empty string'),
    ({"timeZone": "../etc/passwd"}, 'spec.timeZone: Invalid value: "../etc/passwd": unknown time zone'),
    ({"concurrencyPolicy": "Sometimes"}, 'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: '
                                         '"Allow", "Forbid", "Replace"'),
    ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds: Invalid value: -1"),
    ({"successfulJobsHistoryLimit": -1}, "spec.successfulJobsHistoryLimit: Invalid value: -1"),
    ({"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
     "spec.jobTemplate.spec.template.spec.restartPolicy: Required value"),
    ({"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": job()["spec"]["template"]}}},
     "spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector"),
    ({"jobTemplate": {"spec": {"manualSelector": True, "template": job()["spec"]["template"]}}},
     'spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: "nil", "false"'),
    ({"jobTemplate": None}, "spec.jobTemplate.spec.template: Required value"),
])
def test_cronjob_rules(spec, expected):
    texts = created_causes("CronJob", cronjob(**spec))
    assert has(texts, expected), texts


def test_cronjob_name_leaves_room_for_the_job_suffix():
    cj = cronjob()
    cj["metadata"]["name"] = "n" * 53
    assert has(created_causes("CronJob", cj), "metadata.name: Invalid value")
    cj["metadata"]["name"] = "n" * 52
    assert created_causes("CronJob", cj) == []


# ============================================================================ DaemonSet


def ds(**spec) -> dict:
    body = {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "a", "image": "agent:1"}], "nodeSelector": {"os": "linux"}}}}
    body.update(spec)
    return {"metadata": meta("agent"), "spec": body}


def test_daemonset_defaults_generation_and_printer():
    d = create("DaemonSet", ds())
    strategy = d["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert d["spec"]["revisionHistoryLimit"] == 10 and d["status"] == {
        "currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}
    assert d["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert RES["DaemonSet"].strategy.validate(d) == []
    d["status"] = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2}
    assert row("DaemonSet", d) == {"Name": "agent", "Desired": 3, "Current": 3, "Ready": 2, "Up-to-date": 3,
                                   "Available": 2, "Node Selector": "os=linux", "Age": "5m", "Containers": "a",
                                   "Images": "agent:1", "Selector": "app=agent"}
    changed = copy.deepcopy(d)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    assert update_causes("DaemonSet", changed, d) == []
    assert changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"
    same = copy.deepcopy(d)
    update_causes("DaemonSet", same, d)
    assert same["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"


@pytest.mark.parametrize("spec,expected", [
    ({"selector": {}}, "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                       "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"),
    ({"selector": {"matchLabels": {"app": "other"}}}, "spec.template.metadata.labels: Invalid value"),
    ({"updateStrategy": {"type": "Sometimes"}}, 'spec.updateStrategy: Unsupported value: "Sometimes"'),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}},
     "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}},
     "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}}},
     'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%'),
    ({"minReadySeconds": -1}, "spec.minReadySeconds: Invalid value: -1"),
])
def test_daemonset_rules(spec, expected):
    texts = created_causes("DaemonSet", ds(**spec))
    assert has(texts, expected), texts


def test_daemonset_template_must_restart_always_and_selector_is_fixed():
    d = ds()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert has(created_causes("DaemonSet", d), 'spec.template.spec.restartPolicy: Unsupported value: "Never"')
    old = create("DaemonSet", ds())
    moved = ds(selector={"matchLabels": {"app": "agent", "v": "2"}})
    moved["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert has(update_causes("DaemonSet", moved, old), "spec.selector: Invalid value")


# ============================================================================ StatefulSet


def sts(**spec) -> dict:
    body = {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "postgres:16",
                                                  "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}]}
    body.update(spec)
    return {"metadata": meta("db"), "spec": body}


def test_statefulset_defaults_claim_mounts_and_printer():
    s = create("StatefulSet", sts())
    spec = s["spec"]
    assert (spec["replicas"], spec["podManagementPolicy"], spec["revisionHistoryLimit"]) == (1, "OrderedReady", 10)
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"] == {"phase": "Pending"}
    assert RES["StatefulSet"].strategy.validate(s) == []  # the mount names a claim template, not a volume
    assert "volumes" not in spec["template"]["spec"]
    # not omitempty in Kubernetes: a client waiting on status.availableReplicas reads 0 at once
    assert s["status"] == {"replicas": 0, "availableReplicas": 0}
    s["status"] = {"readyReplicas": 1}
    s["spec"]["replicas"] = 3
    assert row("StatefulSet", s) == {"Name": "db", "Ready": "1/3", "Age": "5m", "Containers": "db",
                                     "Images": "postgres:16"}
    assert "scale" in RES["StatefulSet"].subresources and RES["StatefulSet"].short_names == ["sts"]


@pytest.mark.parametrize("spec,expected", [
    ({"podManagementPolicy": "Chaos"}, "spec.podManagementPolicy: Invalid value: \"Chaos\": must be 'OrderedReady' "
                                       "or 'Parallel'"),
    ({"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}},
     "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy "
     "'RollingUpdate'"),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}},
     "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"),
    ({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Shred"}},
     'spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Shred"'),
    ({"replicas": -1}, "spec.replicas: Invalid value: -1"),
    ({"ordinals": {"start": -1}}, "spec.ordinals.start: Invalid value: -1"),
    ({"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]},
     "spec.volumeClaimTemplates[0].spec.resources[storage]: Required value"),
    ({"volumeClaimTemplates": [{"spec": {}}]}, "spec.volumeClaimTemplates[0].metadata.name: Required value"),
    ({"volumeClaimTemplates": []}, "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\""),
    ({"selector": {}}, "spec.selector: Invalid value"),
])
def test_statefulset_rules(spec, expected):
    texts = created_causes("StatefulSet", sts(**spec))
    assert has(texts, expected), texts


def test_statefulset_only_some_fields_may_change():
    old = create("StatefulSet", sts())
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:17"
    scaled["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert update_causes("StatefulSet", scaled, old) == []
    bigger = copy.deepcopy(old)
    bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert update_causes("StatefulSet", bigger, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
        "are forbidden"]


# ============================================================================ Service (newer rules)


def service(**spec) -> dict:
    body = {"ports": [{"port": 80}], "selector": {"app": "web"}}
    body.update(spec)
    return {"metadata": meta("web"), "spec": body}


def test_cluster_ip_and_cluster_ips_are_one_field():
    one = create("Service", service(clusterIP="127.32.0.9"))
    assert one["spec"]["clusterIPs"] == ["127.32.0.9"]
    other = create("Service", service(clusterIPs=["127.32.0.10"]))
    assert other["spec"]["clusterIP"] == "127.32.0.10"
    assert has(causes_of("Service", service(clusterIP="127.32.0.9", clusterIPs=["127.32.0.8"])),
               'spec.clusterIPs: Invalid value: []string{"127.32.0.8"}: first value must match `clusterIP`')


@pytest.mark.parametrize("spec,expected", [
    ({"type": "ExternalName", "externalName": "db.example.com", "ports": [], "ipFamilies": ["IPv4"]},
     "spec.ipFamilies: Forbidden: may not be set for ExternalName services"),
    ({"ipFamilies": ["IPv5"]}, 'spec.ipFamilies[0]: Unsupported value: "IPv5"'),
    ({"ipFamilies": ["IPv4", "IPv4"]}, 'spec.ipFamilies[1]: Duplicate value: "IPv4"'),
    ({"ipFamilyPolicy": "Whatever"}, 'spec.ipFamilyPolicy: Unsupported value: "Whatever"'),
    ({"clusterIPs": ["127.32.0.1", "127.32.0.2"]}, "spec.clusterIPs: Invalid value: []string{\"127.32.0.1\", "
                                                   "\"127.32.0.2\"}: may specify no more than one IP for each IP family"),
    ({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001},
                                    {"name": "b", "port": 81, "nodePort": 30001}]},
     "spec.ports[1].nodePort: Duplicate value: 30001"),
    ({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}, 'spec.ports[1]: Duplicate value: "80/TCP"'),
    ({"allocateLoadBalancerNodePorts": True},
     "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"),
    ({"externalTrafficPolicy": "Local"},
     'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'),
    ({"type": "NodePort", "healthCheckNodePort": 30100},
     "spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is 'LoadBalancer'"),
])
def test_newer_service_rules(spec, expected):
    texts = causes_of("Service", service(**spec))
    assert has(texts, expected), texts


def test_service_type_change_drops_what_only_the_old_type_used():
    old = create("Service", service(type="NodePort", clusterIP="127.32.0.9",
                                    ports=[{"port": 80, "nodePort": 30080}]))
    old["spec"].update(ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    back = copy.deepcopy(old)
    back["spec"]["type"] = "ClusterIP"
    assert update_causes("Service", back, old) == []
    assert "nodePort" not in back["spec"]["ports"][0] and "externalTrafficPolicy" not in back["spec"]
    external = copy.deepcopy(old)
    external["spec"].update(type="ExternalName", externalName="db.example.com")
    assert update_causes("Service", external, old) == []
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(external["spec"])
    resent = service(type="NodePort")  # kubectl replace: allocated values are kept
    assert update_causes("Service", resent, old) == []
    assert resent["spec"]["ports"][0]["nodePort"] == 30080 and resent["spec"]["ipFamilyPolicy"] == "SingleStack"
    families = copy.deepcopy(old)
    families["spec"]["ipFamilies"] = ["IPv6"]
    assert has(update_causes("Service", families, old), "spec.ipFamilies[0]: Invalid value")


# ============================================================================ registry, patches


def test_new_kinds_are_served_with_names_kubectl_uses():
    expect = {("", "serviceaccounts"): ["sa"], ("", "endpoints"): ["ep"], ("", "persistentvolumeclaims"): ["pvc"],
              ("discovery.k8s.io", "endpointslices"): [], ("batch", "jobs"): [], ("batch", "cronjobs"): ["cj"],
              ("apps", "daemonsets"): ["ds"], ("apps", "statefulsets"): ["sts"]}
    for (group, plural), shorts in expect.items():
        r = REG.get(group, "v1", plural)
        assert r is not None and r.short_names == shorts and r.namespaced, plural
    assert REG.get("", "v1", "endpoints").kind == "Endpoints"
    assert {"all"} == set(REG.get("batch", "v1", "jobs").categories)
    assert "status" in REG.get("batch", "v1", "jobs").subresources


def test_strategic_merge_patches_of_the_new_kinds():
    j = create("Job", job())
    patched = strategic_merge_patch(j, {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "alpine"}]}}}}, "Job")
    assert patched["spec"]["template"]["spec"]["containers"] == [dict(j["spec"]["template"]["spec"]["containers"][0],
                                                                      image="alpine")]
    cj = create("CronJob", cronjob())
    patched = strategic_merge_patch(cj, {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "image": "envoy"}]}}}}}}, "CronJob")
    assert [c["name"] for c in patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]] == ["side", "c"]
    ep = endpoints({"addresses": [{"ip": "127.64.0.1"}]})
    patched = strategic_merge_patch(ep, {"subsets": [{"addresses": [{"ip": "127.64.0.2"}]}]}, "Endpoints")
    assert patched["subsets"] == [{"addresses": [{"ip": "127.64.0.2"}]}]  # atomic: replaced
    es = eps()
    patched = strategic_merge_patch(es, {"endpoints": [{"addresses": ["127.64.0.9"]}]}, "EndpointSlice")
    assert patched["endpoints"] == [{"addresses": ["127.64.0.9"]}]
    sa = {"metadata": meta(), "secrets": [{"name": "a"}]}
    patched = strategic_merge_patch(sa, {"secrets": [{"name": "b"}]}, "ServiceAccount")
    assert patched["secrets"] == [{"name": "b"}, {"name": "a"}]
    s = create("StatefulSet", sts())
    patched = strategic_merge_patch(s, {"spec": {"template": {"spec": {"containers": [
        {"name": "db", "env": [{"name": "X", "value": "1"}]}]}}}}, "StatefulSet")
    c = patched["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "postgres:16" and c["env"] == [{"name": "X", "value": "1"}]
