"""The HorizontalPodAutoscaler: its algorithm (Kubernetes' replica calculator, stabilization,
rate policies, bounds), its kind (defaults, 422s naming the field, kubectl columns), and one
reconcile at a time on the fake API (scale read and written through the scale subresource,
usage from metrics.k8s.io, status, conditions, Events)."""
from __future__ import annotations

import pytest

from sendo.client import kind
from sendo.controllers.hpa import (
    HPAController, History, PodSample, bound, replicas_for_average, replicas_for_utilization, stabilize,
)
from sendo.kinds.autoscaling import HPAStrategy, effective_behavior, hpa_row, validate_hpa_spec

HPA = kind("horizontalpodautoscalers", "autoscaling", "v2")
PODS = kind("pods")
NS = "default"
SCALE_URL = f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale"
METRICS_URL = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"


def pods(*usages, request=0.1, ready=True):
    return [PodSample(f"p{i}", ready, request, u) for i, u in enumerate(usages)]


# ----------------------------------------------------------------- the replica calculator

def test_utilization_above_target_scales_by_the_ratio():
    # two pods at 90 % of a 100m request, target 50 %: ratio 1.8 -> ceil(3.6) = 4
    assert replicas_for_utilization(2, pods(0.09, 0.09), 50) == (4, 90)


def test_within_the_tolerance_nothing_changes():
    assert replicas_for_utilization(2, pods(0.054, 0.054), 50) == (2, 54)  # ratio 1.08 <= 1.1
    assert replicas_for_utilization(2, pods(0.056, 0.056), 50)[0] == 3  # ratio 1.12


def test_missing_metrics_count_against_the_direction_of_the_change():
    # scale down: the pod without metrics is taken at 100 % of its request
    samples = pods(0.01, 0.01) + [PodSample("new", True, 0.1, None)]
    replicas, _ = replicas_for_utilization(3, samples, 50)
    assert replicas == 3  # (0.01 + 0.01 + 0.1) / 0.3 = 40 % -> ratio 0.8 -> ceil(2.4) = 3
    # scale up: unready pods count as using nothing, which may cancel the scale-up
    samples = pods(0.06) + [PodSample("starting", False, 0.1, 0.5)]
    assert replicas_for_utilization(2, samples, 50)[0] == 2  # 0.06 / 0.2 = 30 %: below target, no change


def test_no_metrics_or_no_request_is_an_error():
    with pytest.raises(ValueError, match="did not receive metrics"):
        replicas_for_utilization(1, [PodSample("a", True, 0.1, None)], 50)
    with pytest.raises(ValueError, match="missing request"):
        replicas_for_utilization(1, [PodSample("a", True, None, 0.2)], 50)


def test_average_value_target():
    # three pods averaging 300m against 100m: ratio 3 -> 9 replicas
    assert replicas_for_average(3, pods(0.3, 0.3, 0.3), 0.1)[0] == 9


# ----------------------------------------------------------------- behavior

def test_scale_down_is_held_by_the_stabilization_window():
    b = effective_behavior({})
    h = History()
    assert stabilize(h, 0.0, 4, 4, b) == (4, "ReadyForNewScale")
    # a lower proposal within 300 s: the highest recent recommendation wins
    assert stabilize(h, 10.0, 4, 1, b) == (4, "ScaleDownStabilized")
    # once the window has passed, the lower one applies
    assert stabilize(h, 400.0, 4, 1, b)[0] == 1


def test_scale_up_is_not_stabilized_by_default_but_can_be():
    h = History()
    assert stabilize(h, 0.0, 1, 3, effective_behavior({}))[0] == 3
    b = effective_behavior({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}})
    h = History()
    stabilize(h, 0.0, 1, 1, b)
    assert stabilize(h, 5.0, 1, 3, b) == (1, "ScaleUpStabilized")


def test_default_rate_is_the_larger_of_four_pods_or_double():
    b = effective_behavior({})
    assert bound(History(), 0.0, 1, 20, 1, 100, b)[:2] == (5, "ScaleUpLimit")  # 1 + 4 pods > 1 * 2
    assert bound(History(), 0.0, 10, 50, 1, 100, b)[:2] == (20, "ScaleUpLimit")  # 10 * 2 > 10 + 4
    assert bound(History(), 0.0, 2, 9, 1, 4, b)[:2] == (4, "TooManyReplicas")
    assert bound(History(), 0.0, 4, 0, 1, 10, b)[:2] == (1, "TooFewReplicas")
    assert bound(History(), 0.0, 3, 3, 1, 10, b)[1] == "DesiredWithinRange"


def test_policies_count_the_changes_made_within_their_period():
    b = effective_behavior({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1,
                                                                       "periodSeconds": 60}]}}})
    h = History(scale_down=[(100.0, 1)])  # one pod removed 10 s ago: the budget of 1 per minute is spent
    assert bound(h, 110.0, 4, 1, 1, 10, b)[:2] == (4, "ScaleDownLimit")
    assert bound(h, 170.0, 4, 1, 1, 10, b)[0] == 3  # a minute later one more may go
    # selectPolicy Min takes the smallest change; Disabled allows none
    b = effective_behavior({"behavior": {"scaleUp": {"selectPolicy": "Min"}}})
    assert bound(History(), 0.0, 10, 50, 1, 100, b)[0] == 14
    b = effective_behavior({"behavior": {"scaleUp": {"selectPolicy": "Disabled"}}})
    assert bound(History(), 0.0, 2, 8, 1, 100, b)[0] == 2


# ----------------------------------------------------------------- the kind

def hpa_spec(**over):
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 50}}}]}
    spec.update(over)
    return spec


def test_defaults_follow_kubernetes():
    obj = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}}
    HPAStrategy().default(obj)
    spec = obj["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 5
    assert spec["behavior"]["scaleDown"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert spec["behavior"]["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}


@pytest.mark.parametrize("over,field", [
    ({"maxReplicas": None}, "spec.maxReplicas"),
    ({"minReplicas": 5}, "spec.maxReplicas"),
    ({"minReplicas": 0}, "spec.minReplicas"),
    ({"scaleTargetRef": {"kind": "Deployment"}}, "spec.scaleTargetRef.name"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
     "spec.metrics[0].resource.target.averageUtilization"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Value", "value": "1"}}}]},
     "spec.metrics[0].resource.target.type"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "lots"}}}]}, "spec.metrics[0].resource.target.averageValue"),
    ({"metrics": [{"type": "Bogus"}]}, "spec.metrics[0].type"),
    ({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 4000}}},
     "spec.behavior.scaleUp.stabilizationWindowSeconds"),
    ({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}},
     "spec.behavior.scaleDown.policies[0].value"),
    ({"behavior": {"scaleDown": {"selectPolicy": "Sometimes"}}}, "spec.behavior.scaleDown.selectPolicy"),
])
def test_bad_specs_name_the_field(over, field):
    spec = hpa_spec(**over)
    if over.get("maxReplicas", 1) is None:
        del spec["maxReplicas"]
    assert field in [c.field for c in validate_hpa_spec(spec)]


def test_a_good_spec_passes_and_prints_like_kubectl():
    assert validate_hpa_spec(hpa_spec()) == []
    obj = {"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": hpa_spec(),
           "status": {"currentReplicas": 2, "currentMetrics": [
               {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}}
    assert hpa_row(obj)[:6] == ["web", "Deployment/web", "cpu: 12%/50%", 1, 4, 2]
    obj["status"] = {}
    assert hpa_row(obj)[2] == "cpu: <unknown>/50%"


# ----------------------------------------------------------------- one reconcile on the fake API

def seed(fake_api, replicas: int, usages: dict[str, str], behavior=None):
    fake_api.fake.objects["/apis/apps/v1"] = {"kind": "APIResourceList", "resources": [
        {"name": "deployments", "kind": "Deployment"}, {"name": "deployments/scale", "kind": "Scale"}]}
    fake_api.fake.objects[SCALE_URL] = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                                        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "1"},
                                        "spec": {"replicas": replicas},
                                        "status": {"replicas": replicas, "selector": "app=web"}}
    fake_api.fake.objects[METRICS_URL] = {"kind": "PodMetricsList", "items": [
        {"metadata": {"name": n, "namespace": NS}, "containers": [{"name": "c", "usage": {"cpu": u}}]}
        for n, u in usages.items()]}
    for n in usages:
        fake_api.add(PODS, {"metadata": {"name": n, "namespace": NS, "labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
                            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    spec = hpa_spec(**({"behavior": behavior} if behavior else {}))
    fake_api.add(HPA, {"metadata": {"name": "web", "namespace": NS}, "spec": spec})


def scale_patches(calls):
    return [c.body["spec"]["replicas"] for c in calls if c.method == "PATCH" and c.path == SCALE_URL]


def status_of(fake_api):
    return fake_api.fake.objects[f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/web"]["status"]


async def test_reconcile_scales_up_through_the_scale_subresource(fake_api):
    hpa = fake_api.build(HPAController, sync_period=1.0)
    seed(fake_api, 1, {"a": "300m"})  # 300 % of the request against 50 %
    calls = await fake_api.run(hpa, f"{NS}/web")
    assert scale_patches(calls) == [4]  # 1 + 4 pods allowed, max 4
    st = status_of(fake_api)
    assert st["desiredReplicas"] == 4 and st["currentReplicas"] == 1 and st["lastScaleTime"]
    assert st["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 300, "averageValue": "300m"}}}]
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {"AbleToScale": ("True", "SucceededRescale"), "ScalingActive": ("True", "ValidMetricFound"),
                     "ScalingLimited": ("True", "TooManyReplicas")}
    assert await hpa.reconcile(f"{NS}/web") == 1.0  # synced again after the period


async def test_reconcile_holds_a_scale_down_within_the_window_then_applies_it(fake_api):
    hpa = fake_api.build(HPAController)
    seed(fake_api, 3, {"a": "50m", "b": "50m", "c": "50m"}, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    assert scale_patches(await fake_api.run(hpa, f"{NS}/web")) == []  # at target: nothing to do
    fake_api.fake.objects[METRICS_URL]["items"] = [
        {"metadata": {"name": n, "namespace": NS}, "containers": [{"name": "c", "usage": {"cpu": "1m"}}]}
        for n in "abc"]
    assert scale_patches(await fake_api.run(hpa, f"{NS}/web")) == [1]
    events = [c for c in fake_api.fake.calls if "/events" in c.path]
    assert all(c.body.get("reason") != "FailedGetResourceMetric" for c in events)


async def test_reconcile_without_metrics_reports_scaling_inactive(fake_api):
    hpa = fake_api.build(HPAController)
    seed(fake_api, 2, {})
    fake_api.add(PODS, {"metadata": {"name": "x", "namespace": NS, "labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
                        "status": {"phase": "Running"}})
    assert scale_patches(await fake_api.run(hpa, f"{NS}/web")) == []
    conds = {c["type"]: (c["status"], c["reason"]) for c in status_of(fake_api)["conditions"]}
    assert conds["ScalingActive"] == ("False", "FailedGetResourceMetric")
    assert conds["AbleToScale"] == ("True", "SucceededGetScale")


async def test_reconcile_with_a_missing_target_reports_failed_get_scale(fake_api):
    hpa = fake_api.build(HPAController)
    seed(fake_api, 1, {"a": "10m"})
    del fake_api.fake.objects[SCALE_URL]
    assert scale_patches(await fake_api.run(hpa, f"{NS}/web")) == []
    conds = {c["type"]: (c["status"], c["reason"]) for c in status_of(fake_api)["conditions"]}
    assert conds["AbleToScale"] == ("False", "FailedGetScale")


async def test_reconcile_scales_a_custom_resource_found_through_discovery(fake_api):
    hpa = fake_api.build(HPAController)
    seed(fake_api, 2, {"a": "90m", "b": "90m"})
    url = f"/apis/example.com/v1/namespaces/{NS}/widgets/web/scale"
    fake_api.fake.objects["/apis/example.com/v1"] = {"kind": "APIResourceList", "resources": [
        {"name": "widgets", "kind": "Widget"}, {"name": "widgets/scale", "kind": "Scale"}]}
    fake_api.fake.objects[url] = fake_api.fake.objects.pop(SCALE_URL)
    obj = fake_api.fake.objects[f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/web"]
    obj["spec"]["scaleTargetRef"] = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "web"}
    obj["metadata"]["resourceVersion"] = "99999"  # a new version: the informer takes it on the next sync
    calls = await fake_api.run(hpa, f"{NS}/web")
    assert [c.body["spec"]["replicas"] for c in calls if c.method == "PATCH" and c.path == url] == [4]
