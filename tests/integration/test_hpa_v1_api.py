"""autoscaling/v1 HorizontalPodAutoscalers through the real API server: every verb in v1
over the one stored (v2) object, which v2 clients (and the HPA controller) see too."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from sendo.client.rest import ApiError
from sendo.kinds import autoscaling_v1 as v1

V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def _hpa(**spec):
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": REF, "maxReplicas": 4, **spec}}


async def test_v1_verbs_over_the_stored_v2_object(client):
    made = await client.request("POST", V1, body=_hpa(targetCPUUtilizationPercentage=55))
    assert made["apiVersion"] == "autoscaling/v1" and made["spec"]["minReplicas"] == 1
    assert made["spec"]["targetCPUUtilizationPercentage"] == 55
    as_v2 = await client.request("GET", f"{V2}/web")
    assert as_v2["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 55}}}]
    assert as_v2["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

    # a v2 client adds a memory metric and a status: v1 shows them as Kubernetes does
    as_v2["spec"]["metrics"].insert(0, {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "Utilization", "averageUtilization": 70}}})
    as_v2 = await client.request("PUT", f"{V2}/web", body=as_v2)
    as_v2["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 33}}}]}
    await client.request("PUT", f"{V2}/web/status", body=as_v2)
    seen = await client.request("GET", f"{V1}/web")
    assert seen["status"]["currentCPUUtilizationPercentage"] == 33 and seen["status"]["currentReplicas"] == 2
    assert orjson.loads(seen["metadata"]["annotations"][v1.METRICS]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageUtilization": 70}}]

    # a v1 update that keeps the annotation keeps the memory metric; a merge patch changes the target
    seen["spec"]["maxReplicas"] = 6
    await client.request("PUT", f"{V1}/web", body=seen)
    await client.request("PATCH", f"{V1}/web", body={"spec": {"targetCPUUtilizationPercentage": 40}},
                         content_type="application/merge-patch+json")
    as_v2 = await client.request("GET", f"{V2}/web")
    assert as_v2["spec"]["maxReplicas"] == 6
    assert [m["resource"]["name"] for m in as_v2["spec"]["metrics"]] == ["memory", "cpu"]
    assert as_v2["spec"]["metrics"][1]["resource"]["target"]["averageUtilization"] == 40
    assert v1.METRICS not in (as_v2["metadata"].get("annotations") or {})  # round-trip annotations are never stored
    assert as_v2["status"]["currentReplicas"] == 2  # a main-resource write keeps the status

    listed = await client.request("GET", V1)
    assert listed["kind"] == "HorizontalPodAutoscalerList" and listed["apiVersion"] == "autoscaling/v1"
    assert [i["apiVersion"] for i in listed["items"]] == ["autoscaling/v1"]
    assert listed["items"][0]["spec"]["targetCPUUtilizationPercentage"] == 40


async def test_v1_watch_sees_v2_writes_in_v1(client, server):
    made = await client.request("POST", V2, body={**_hpa(), "apiVersion": "autoscaling/v2"})
    rv = made["metadata"]["resourceVersion"]
    events = []

    async def watch():
        async with client.session.get(client.server + V1, params={"watch": "1", "resourceVersion": rv,
                                                                   "timeoutSeconds": "30"}) as resp:
            async for line in resp.content:
                events.append(orjson.loads(line))
                if len(events) == 1:
                    return
    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    made["spec"]["maxReplicas"] = 9
    await client.request("PUT", f"{V2}/web", body=made)
    await asyncio.wait_for(task, 30)
    assert events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["apiVersion"] == "autoscaling/v1" and events[0]["object"]["spec"]["maxReplicas"] == 9
    assert events[0]["object"]["spec"]["targetCPUUtilizationPercentage"] == 80


@pytest.mark.parametrize("body,field", [
    (_hpa(targetCPUUtilizationPercentage="high"), "spec.targetCPUUtilizationPercentage"),
    (_hpa(minReplicas=5), "spec.maxReplicas"),
    ({**_hpa(), "metadata": {"name": "web", "annotations": {v1.METRICS: "[{"}}}, f"metadata.annotations[{v1.METRICS}]"),
])
async def test_bad_v1_input_is_422_naming_the_field(client, body, field):
    with pytest.raises(ApiError) as e:
        await client.request("POST", V1, body=body)
    assert e.value.status == 422
    assert [c["field"] for c in e.value.body["details"]["causes"]] == [field]
    with pytest.raises(ApiError) as e:
        await client.request("GET", f"{V2}/web")
    assert e.value.status == 404  # nothing was written


async def test_discovery_serves_both_versions_preferring_v2(client):
    group = await client.request("GET", "/apis/autoscaling")
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"] and group["preferredVersion"]["version"] == "v2"
    names = {r["name"] for r in (await client.request("GET", "/apis/autoscaling/v1"))["resources"]}
    assert {"horizontalpodautoscalers", "horizontalpodautoscalers/status"} <= names

