"""ResourceQuota and LimitRange judgement (kinds/quota.py): quantity sums, usage, refusals, defaults."""
from __future__ import annotations

from fractions import Fraction

from sendo.kinds import quota as q
from sendo.kinds.quota import LimitRangeStrategy, ResourceQuotaStrategy


def pod(*containers, phase=None, init=(), **spec):
    body = {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)],
                     "initContainers": [{"name": f"i{i}", "resources": r} for i, r in enumerate(init)], **spec}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def quota(hard, **spec):
    return {"metadata": {"name": "compute", "namespace": "ns"}, "spec": {"hard": hard, **spec}}


def limitrange(*items):
    lr = {"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": list(items)}}
    LimitRangeStrategy().default(lr)
    return lr


def test_quantities_format_canonically():
    assert q.format_quantity(Fraction(1, 2)) == "500m"
    assert q.format_quantity(2) == "2"
    assert q.format_quantity(1000) == "1k"
    assert q.format_quantity(2**27, binary=True) == "128Mi"
    assert q.format_quantity(Fraction(3, 2), binary=True) == "1500m"
    assert q.canonical("1000m") == "1" and q.canonical("0.5") == "500m" and q.canonical("1Gi") == "1Gi"


def test_pod_usage_sums_containers_and_takes_the_largest_init_container():
    p = pod({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}},
            {"requests": {"cpu": "250m"}}, init=[{"requests": {"cpu": "2"}}])
    usage = q.object_usage("", "pods", p)
    assert usage["pods"] == 1 and usage["count/pods"] == 1
    assert usage["requests.cpu"] == usage["cpu"] == 2
    assert usage["requests.memory"] == usage["memory"] == 64 * 2**20
    assert usage["limits.cpu"] == 1
    assert q.object_usage("", "pods", pod({}, phase="Succeeded")) == {}


def test_other_kinds_count_objects_node_ports_and_storage():
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}
    assert q.object_usage("", "services", svc) == {"count/services": 1, "services": 1, "services.nodeports": 2}
    pvc = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}
    usage = q.object_usage("", "persistentvolumeclaims", pvc)
    assert usage["requests.storage"] == 2**30 and usage["fast.storageclass.storage.k8s.io/requests.storage"] == 2**30
    assert q.object_usage("apps", "deployments", {}) == {"count/deployments.apps": 1}
    assert q.tracked_kind("count/deployments.apps") == ("apps", "deployments")
    assert q.tracked_kind("requests.cpu") == ("", "pods") and q.tracked_kind("requests.storage")[1] == "persistentvolumeclaims"


def test_exceeded_names_the_quota_with_requested_used_and_limited():
    qt = quota({"pods": "2", "requests.cpu": "1"})
    requested = q.requested_of(qt, q.object_usage("", "pods", pod({"requests": {"cpu": "500m"}, "limits": {}})))
    assert q.exceeded(qt, requested, {"pods": Fraction(1), "requests.cpu": Fraction(1, 2)}) is None
    msg = q.exceeded(qt, requested, {"pods": Fraction(2), "requests.cpu": Fraction(1, 2)})
    assert msg == "exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"
    msg = q.exceeded(qt, {"requests.cpu": Fraction(2)}, {"requests.cpu": Fraction(1)})
    assert msg == "exceeded quota: compute, requested: requests.cpu=2, used: requests.cpu=1, limited: requests.cpu=1"
    assert q.add_usage(qt, {"pods": Fraction(1)}, {"pods": Fraction(-3)}) == {"pods": "0", "requests.cpu": "0"}


def test_compute_quota_requires_every_container_to_name_it():
    qt = quota({"limits.cpu": "2", "requests.memory": "1Gi", "pods": "5"})
    assert q.missing_compute(qt, pod({"requests": {"cpu": "1"}})) == \
        "must specify limits.cpu for: c0; requests.memory for: c0"
    assert q.missing_compute(qt, pod({"requests": {"memory": "1Mi"}, "limits": {"cpu": "1"}})) is None
    assert q.missing_compute(quota({"pods": "1"}), pod({})) is None


def test_scopes_select_pods():
    best_effort = quota({"pods": "1"}, scopes=["BestEffort"])
    assert q.quota_applies(best_effort, "", "pods", pod({}))
    assert not q.quota_applies(best_effort, "", "pods", pod({"requests": {"cpu": "1"}}))
    assert not q.quota_applies(best_effort, "", "configmaps", {})
    terminating = quota({"pods": "1"}, scopeSelector={"matchExpressions": [{"scopeName": "Terminating",
                                                                            "operator": "Exists"}]})
    assert q.quota_applies(terminating, "", "pods", pod({}, activeDeadlineSeconds=5))
    assert not q.quota_applies(terminating, "", "pods", pod({}))


def test_total_usage_counts_objects_and_content():
    qt = quota({"pods": "5", "requests.cpu": "4", "configmaps": "3", "count/deployments.apps": "2"})
    pods = [pod({"requests": {"cpu": "1"}}), pod({"requests": {"cpu": "1"}}, phase="Failed")]
    used = q.total_usage(qt, {("", "pods"): pods}, {("", "configmaps"): 2, ("apps", "deployments"): 1})
    assert used == {"pods": 1, "requests.cpu": 1, "configmaps": 2, "count/deployments.apps": 1}


def test_quota_validation_names_the_field():
    fields = {c.field: c.message for c in ResourceQuotaStrategy().validate(
        quota({"pods": "1.5", "requests.cpu": "lots", "memory": "-1"}, scopes=["Sometimes"]))}
    assert "must be an integer" in fields["spec.hard[pods]"]
    assert "quantities must match" in fields["spec.hard[requests.cpu]"]
    assert "must be greater than or equal to 0" in fields["spec.hard[memory]"]
    assert "Unsupported value" in fields["spec.scopes[0]"]
    assert ResourceQuotaStrategy().validate(quota({"pods": "2", "requests.cpu": "500m"})) == []


def test_limitrange_defaults_follow_max_default_and_min():
    lr = limitrange({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "16Mi"}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "16Mi"}


def test_limitrange_validation_orders_min_default_request_default_max():
    bad = {"metadata": {"name": "lr"}, "spec": {"limits": [
        {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}, "default": {"cpu": "3"},
         "defaultRequest": {"cpu": "500m"}, "maxLimitRequestRatio": {"memory": "0.5"}},
        {"type": "Pod", "default": {"cpu": "1"}}, {"type": "Nope"}, {"type": "PersistentVolumeClaim"}]}}
    fields = {c.field: c.message for c in LimitRangeStrategy().validate(bad)}
    assert "min value 2 is greater than max value 1" in fields["spec.limits[0].min[cpu]"]
    assert "default value 3 is greater than max value 1" in fields["spec.limits[0].default[cpu]"]
    assert "min value 2 is greater than default request value 500m" in fields["spec.limits[0].defaultRequest[cpu]"]
    assert "ratio 500m is less than 1" in fields["spec.limits[0].maxLimitRequestRatio[memory]"]
    assert "may not be specified when `type` is 'Pod'" in fields["spec.limits[1].default"]
    assert "Unsupported value" in fields["spec.limits[2].type"]
    assert "either minimum or maximum storage" in fields["spec.limits[3].limits"]


def test_limit_defaults_fill_only_what_is_missing():
    lr = limitrange({"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                     "defaultRequest": {"cpu": "100m"}})
    p = pod({}, {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
    note = q.apply_limit_defaults([lr], p)
    first, second = (c["resources"] for c in p["spec"]["containers"])
    assert first == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert second == {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "128Mi"}}
    assert note.startswith("LimitRanger plugin set: cpu, memory request; cpu, memory limit for container c0")


def test_limit_bounds_use_kubernetes_wording():
    lr = limitrange({"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"},
                     "maxLimitRequestRatio": {"cpu": "4"}})
    assert q.limit_violations([lr], "pods", pod({"limits": {"cpu": "2"}, "requests": {"cpu": "1"}})) == [
        "maximum cpu usage per Container is 1, but limit is 2"]
    assert q.limit_violations([lr], "pods", pod({"limits": {"cpu": "1"}, "requests": {"cpu": "50m"}})) == [
        "minimum cpu usage per Container is 100m, but request is 50m",
        "cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000"]
    pod_lr = limitrange({"type": "Pod", "max": {"memory": "1Gi"}})
    two = pod({"limits": {"memory": "768Mi"}, "requests": {"memory": "1Mi"}},
              {"limits": {"memory": "768Mi"}, "requests": {"memory": "1Mi"}})
    assert q.limit_violations([pod_lr], "pods", two) == ["maximum memory usage per Pod is 1Gi, but limit is 1536Mi"]
    pvc_lr = limitrange({"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}})
    claim = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    assert q.limit_violations([pvc_lr], "persistentvolumeclaims", claim) == [
        "maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"]
    assert q.forbidden_message(["a", "b"]) == "[a, b]"
