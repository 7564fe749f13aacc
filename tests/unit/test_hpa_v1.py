"""autoscaling/v1 HorizontalPodAutoscaler as a view of the stored v2 object (kinds/autoscaling_v1.py)."""
from __future__ import annotations

import orjson

from sendo.kinds import autoscaling_v1 as v1

REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def _v2(metrics, behavior=None, status=None):
    spec = {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5, "metrics": metrics}
    if behavior is not None:
        spec["behavior"] = behavior
    obj = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
PODS = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}
OBJECT = {"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
                                       "metric": {"name": "rps"}, "target": {"type": "Value", "value": "2k"}}}
EXTERNAL = {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}},
                                             "target": {"type": "AverageValue", "averageValue": "30"}}}
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}
STATUS = {"currentReplicas": 2, "desiredReplicas": 3, "observedGeneration": 1,
          "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
              "averageUtilization": 71, "averageValue": "120m"}}}],
          "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}


def test_cpu_only_is_plain_v1():
    got = v1.to_v1(_v2([CPU], status={"currentReplicas": 1, "desiredReplicas": 1}))
    assert got["apiVersion"] == "autoscaling/v1"
    assert got["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5,
                           "targetCPUUtilizationPercentage": 60}
    assert got["status"] == {"currentReplicas": 1, "desiredReplicas": 1}
    assert got["metadata"]["annotations"] == {"team": "a"}


def test_everything_v1_has_no_field_for_travels_in_annotations_and_round_trips():
    stored = _v2([MEMORY, CPU, PODS, OBJECT, EXTERNAL], BEHAVIOR, STATUS)
    view = v1.to_v1(stored)
    notes = view["metadata"]["annotations"]
    assert view["spec"]["targetCPUUtilizationPercentage"] == 60
    assert view["status"]["currentCPUUtilizationPercentage"] == 71
    assert orjson.loads(notes[v1.METRICS]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
        {"type": "Object", "object": {"target": OBJECT["object"]["describedObject"], "metricName": "rps",
                                      "targetValue": "2k"}},
        {"type": "External", "external": {"metricName": "queue", "metricSelector": {"matchLabels": {"q": "jobs"}},
                                          "targetAverageValue": "30"}}]
    assert orjson.loads(notes[v1.CURRENT_METRICS]) == [
        {"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 71, "currentAverageValue": "120m"}}]
    assert orjson.loads(notes[v1.BEHAVIOR])["ScaleDown"]["Policies"] == [{"Type": "Pods", "Value": 1, "PeriodSeconds": 30}]
    assert orjson.loads(notes[v1.CONDITIONS]) == STATUS["conditions"]
    back = v1.to_v2(view)
    # the CPU metric comes after the others (as kube-apiserver orders them); nothing is lost
    assert back["spec"]["metrics"] == [MEMORY, PODS, OBJECT, EXTERNAL, CPU]
    assert back["spec"]["behavior"] == BEHAVIOR and back["status"] == STATUS
    assert back["metadata"]["annotations"] == {"team": "a"} and back["apiVersion"] == "autoscaling/v2"


def test_v1_without_a_target_means_80_percent_cpu():
    obj = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": REF, "maxReplicas": 3}}
    assert v1.to_v2(obj)["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert "annotations" not in v1.to_v2(obj)["metadata"]


def test_v1_validation_speaks_of_the_fields_written():
    s = v1.HPAV1Strategy()
    good = {"metadata": {"name": "x"}, "spec": {"scaleTargetRef": REF, "maxReplicas": 3, "minReplicas": 1,
                                                "targetCPUUtilizationPercentage": 50}}
    assert s.validate(good) == []
    bad = {"metadata": {"name": "x"}, "spec": {**good["spec"], "targetCPUUtilizationPercentage": "lots"}}
    assert [c.field for c in s.validate(bad)] == ["spec.targetCPUUtilizationPercentage"]
    bad = {"metadata": {"name": "x"}, "spec": {**good["spec"], "minReplicas": 4}}
    assert [c.field for c in s.validate(bad)] == ["spec.maxReplicas"]
    bad = {"metadata": {"name": "x", "annotations": {v1.METRICS: "{nope"}}, "spec": good["spec"]}
    assert [c.field for c in s.validate(bad)] == [f"metadata.annotations[{v1.METRICS}]"]
    assert [c.field for c in s.validate({"metadata": {"name": "x"}})] == ["spec"]
