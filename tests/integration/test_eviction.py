"""pods/eviction, PodDisruptionBudget and ControllerRevision rules against a real API server."""
from __future__ import annotations

import pytest

from sendo.client import ApiError, kind, path

PODS, PDBS, CRS = kind("pods"), kind("poddisruptionbudgets", "policy"), kind("controllerrevisions", "apps")
NS = "default"
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


async def running_pod(client, name, labels=None, ready=True, phase="Running"):
    await client.create(PODS, {"metadata": {"name": name, "labels": labels or {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}, NS)
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return await client.patch(PODS, NS, name, {"status": status}, sub="status")


async def budget(client, name="web", allowed=1, healthy=2, desired=1, selector=None, observed=True):
    pdb = await client.create(PDBS, {"metadata": {"name": name}, "spec": {
        "minAvailable": desired, "selector": selector if selector is not None else {"matchLabels": {"app": "web"}}}},
        NS)
    st = {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": healthy,
          "observedGeneration": pdb["metadata"]["generation"] if observed else 0}
    return await client.patch(PDBS, NS, name, {"status": st}, sub="status")


async def evict(client, name, body=None):
    body = body if body is not None else {"apiVersion": "policy/v1", "kind": "Eviction",
                                          "metadata": {"name": name, "namespace": NS}}
    return await client.request("POST", path(PODS, NS, name, "eviction"), body=body)


async def test_eviction_spends_the_budget_then_answers_429(client):
    await running_pod(client, "a")
    await running_pod(client, "b")
    await budget(client)
    ok = await evict(client, "a")
    assert ok["status"] == "Success"
    assert await client.get_or_none(PODS, NS, "a") is None  # never bound: deleted at once
    st = (await client.get(PDBS, NS, "web"))["status"]
    assert st["disruptionsAllowed"] == 0 and list(st["disruptedPods"]) == ["a"]
    assert st["conditions"][0]["reason"] == "InsufficientPods"
    with pytest.raises(ApiError) as e:
        await evict(client, "b")
    assert e.value.status == 429 and e.value.body["message"] == VIOLATION
    assert e.value.body["reason"] == "TooManyRequests"
    assert e.value.body["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                                  "The disruption budget web needs 1 healthy pods and has 2 currently"}]
    assert await client.get_or_none(PODS, NS, "b") is not None


async def test_pods_outside_any_budget_pending_ones_and_unready_ones_go(client):
    await running_pod(client, "free", labels={"app": "other"})
    await running_pod(client, "pending", phase="Pending")
    await running_pod(client, "sick", ready=False)
    await budget(client, allowed=0, healthy=2, desired=1)
    for name in ("free", "pending", "sick"):  # sick: unready, and the budget is met without it
        await evict(client, name)
        assert await client.get_or_none(PODS, NS, name) is None


async def test_two_budgets_an_unobserved_budget_and_bad_bodies_are_refused(client):
    await running_pod(client, "a")
    await budget(client, "one")
    await budget(client, "two")
    with pytest.raises(ApiError) as e:
        await evict(client, "a")
    assert e.value.status == 500 and "more than one PodDisruptionBudget" in e.value.body["message"]
    await client.delete(PDBS, NS, "two")
    await client.delete(PDBS, NS, "one")
    await budget(client, "late", observed=False)
    with pytest.raises(ApiError) as e:
        await evict(client, "a")
    assert e.value.status == 429 and "still being processed" in e.value.body["details"]["causes"][0]["message"]
    with pytest.raises(ApiError) as e:
        await evict(client, "a", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "zzz"}})
    assert e.value.status == 400
    with pytest.raises(ApiError) as e:
        await evict(client, "missing")
    assert e.value.status == 404


async def test_budget_and_revision_validation(client):
    with pytest.raises(ApiError) as e:
        await client.create(PDBS, {"metadata": {"name": "both"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}, NS)
    assert e.value.status == 422
    with pytest.raises(ApiError) as e:
        await client.create(PDBS, {"metadata": {"name": "pct"}, "spec": {"maxUnavailable": "150%"}}, NS)
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "spec.maxUnavailable"
    with pytest.raises(ApiError) as e:
        await client.create(CRS, {"metadata": {"name": "r"}, "data": {}}, NS)
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "revision"
    await client.create(CRS, {"metadata": {"name": "r"}, "data": {"spec": {"x": 1}}, "revision": 1}, NS)
    await client.patch(CRS, NS, "r", {"revision": 5})  # the number may move (rollback)
    with pytest.raises(ApiError) as e:
        await client.patch(CRS, NS, "r", {"data": {"spec": {"x": 2}}})
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "data"


async def test_discovery_offers_eviction_as_kubectl_drain_looks_for_it(client):
    resources = (await client.request("GET", "/api/v1"))["resources"]
    (ev,) = [r for r in resources if r["name"] == "pods/eviction"]
    assert (ev["kind"], ev["group"], ev["version"], ev["verbs"]) == ("Eviction", "policy", "v1", ["create"])
    policy = (await client.request("GET", "/apis/policy/v1"))["resources"]
    assert {r["name"] for r in policy} == {"poddisruptionbudgets", "poddisruptionbudgets/status"}
