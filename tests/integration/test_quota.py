"""ResourceQuota and LimitRange through the real API: admission (charge with compare-and-swap,
Kubernetes' 403s, LimitRange defaults), validation, and the resourcequota controller's recount."""
import asyncio

import pytest

from sendo.client import ApiError, kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.resourcequota import ResourceQuotaController
from conftest import wait_until

PODS, QUOTAS, LIMITS, CMS = kind("pods"), kind("resourcequotas"), kind("limitranges"), kind("configmaps")


def pod(name, resources=None):
    c = {"name": "app", "image": "x", "command": ["sleep", "3600"]}
    if resources is not None:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [c]}}


def quota(name, hard, **spec):
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": "default"},
            "spec": {"hard": hard, **spec}}


async def refused(coro, status=403) -> str:
    with pytest.raises(ApiError) as e:
        await coro
    assert e.value.status == status, e.value.body
    return e.value.body["message"]


async def test_concurrent_creates_never_pass_the_quota_together(client):
    await client.create(QUOTAS, quota("q", {"pods": "3", "requests.cpu": "2", "limits.cpu": "4"}))
    res = {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}
    results = await asyncio.gather(*(client.create(PODS, pod(f"p{i}", res)) for i in range(8)),
                                   return_exceptions=True)
    made = [r for r in results if isinstance(r, dict)]
    assert len(made) == 3, results
    for r in results:
        if not isinstance(r, dict):
            assert r.status == 403 and "exceeded quota: q, requested: pods=1, used: pods=3, limited: pods=3" \
                in r.body["message"], r.body
    status = (await client.get(QUOTAS, "default", "q"))["status"]
    assert status["used"] == {"pods": "3", "requests.cpu": "1500m", "limits.cpu": "3"}
    assert status["hard"] == {"pods": "3", "requests.cpu": "2", "limits.cpu": "4"}
    msg = await refused(client.create(PODS, pod("bare")))
    assert msg == 'pods "bare" is forbidden: failed quota: q: must specify limits.cpu for: app; requests.cpu for: app'


async def test_compute_refusal_counts_what_exists_and_dry_run_charges_nothing(client):
    await client.create(PODS, pod("before", {"requests": {"cpu": "1"}}))  # exists before the quota
    await client.create(QUOTAS, quota("cpu", {"requests.cpu": "2"}))
    msg = await refused(client.create(PODS, pod("big", {"requests": {"cpu": "2"}})))
    assert msg == ('pods "big" is forbidden: exceeded quota: cpu, requested: requests.cpu=2, used: requests.cpu=1, '
                   'limited: requests.cpu=2')
    await client.request("POST", "/api/v1/namespaces/default/pods", body=pod("dry", {"requests": {"cpu": "1"}}),
                         params={"dryRun": "All"})
    assert "status" not in await client.get(QUOTAS, "default", "cpu")  # refusals and dry runs charge nothing
    await client.create(PODS, pod("fits", {"requests": {"cpu": "1"}}))
    assert (await client.get(QUOTAS, "default", "cpu"))["status"]["used"] == {"requests.cpu": "2"}
    await client.create(QUOTAS, quota("objects", {"configmaps": "1", "count/deployments.apps": "0"}))
    await client.create(CMS, {"metadata": {"name": "a", "namespace": "default"}})
    msg = await refused(client.create(CMS, {"metadata": {"name": "b", "namespace": "default"}}))
    assert "exceeded quota: objects, requested: configmaps=1, used: configmaps=1, limited: configmaps=1" in msg
    dep = {"metadata": {"name": "d", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                                                              "spec": pod("x")["spec"]}}}
    msg = await refused(client.create(kind("deployments", "apps"), dep))
    assert "count/deployments.apps=1" in msg


async def test_invalid_quota_and_limitrange_get_422_naming_the_field(client):
    body = (await refused(client.create(QUOTAS, quota("bad", {"pods": "lots"})), 422))
    assert "spec.hard[pods]" in body
    lr = {"metadata": {"name": "bad", "namespace": "default"},
          "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}
    assert "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1" in \
        await refused(client.create(LIMITS, lr), 422)


async def test_limitrange_defaults_and_bounds(client):
    lr = {"metadata": {"name": "limits", "namespace": "default"},
          "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "500m"},
                               "defaultRequest": {"cpu": "100m", "memory": "32Mi"}}]}}
    stored = await client.create(LIMITS, lr)
    assert stored["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "32Mi"}
    got = await client.create(PODS, pod("plain"))
    assert got["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"},
                                                         "requests": {"cpu": "100m", "memory": "32Mi"}}
    assert "kubernetes.io/limit-ranger" in got["metadata"]["annotations"]
    msg = await refused(client.create(PODS, pod("huge", {"limits": {"cpu": "2"}})))
    assert msg == 'pods "huge" is forbidden: maximum cpu usage per Container is 1, but limit is 2'


async def test_controller_keeps_used_true_and_frees_quota(client):
    informers = InformerFactory(client)
    ctrl = ResourceQuotaController(client, informers)
    await informers.start()
    await ctrl.start()
    try:
        await client.create(PODS, pod("a"))
        await client.create(QUOTAS, quota("q", {"pods": "1"}))

        async def used_is(want):
            return ((await client.get(QUOTAS, "default", "q")).get("status") or {}).get("used") == want
        await wait_until(lambda: used_is({"pods": "1"}), timeout=60)
        assert "exceeded quota: q" in await refused(client.create(PODS, pod("b")))
        await client.delete(PODS, "default", "a", gracePeriodSeconds=0)
        await wait_until(lambda: used_is({"pods": "0"}), timeout=60)
        await client.create(PODS, pod("b"))
        # a finished pod uses nothing
        b = await client.get(PODS, "default", "b")
        b["status"] = {"phase": "Succeeded"}
        await client.update_status(PODS, b)
        await wait_until(lambda: used_is({"pods": "0"}), timeout=60)
    finally:
        await ctrl.stop()
        await informers.stop()
