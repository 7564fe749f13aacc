"""resourcequota controller, one reconcile at a time on the fake API: status.hard/used recounted."""
from sendo.client import kind
from sendo.controllers.resourcequota import RECHECK_SECONDS, RESYNC_SECONDS, ResourceQuotaController

QUOTAS, PODS, CMS = kind("resourcequotas"), kind("pods"), kind("configmaps")
NS = "default"
PATH = f"/api/v1/namespaces/{NS}/resourcequotas/q"


def pod(name, cpu="500m", phase="Running", ns=NS):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}}


def quota(hard, status=None):
    q = {"metadata": {"name": "q", "namespace": NS}, "spec": {"hard": hard}}
    if status is not None:
        q["status"] = status
    return q


async def test_used_counts_live_pods_of_the_namespace_only(fake_api):
    ctl = fake_api.build(ResourceQuotaController)
    fake_api.add(PODS, pod("a"), pod("b", cpu="1"), pod("done", phase="Succeeded"), pod("other", ns="elsewhere"))
    fake_api.add(QUOTAS, quota({"pods": "5", "requests.cpu": "4"}))
    writes = await fake_api.run(ctl, f"{NS}/q")
    assert [w.method for w in writes] == ["PUT"] and writes[0].path.endswith("/q/status")
    assert fake_api.fake.objects[PATH]["status"] == {"hard": {"pods": "5", "requests.cpu": "4"},
                                                     "used": {"pods": "2", "requests.cpu": "1500m"}}
    assert await ctl.reconcile(f"{NS}/q") == RESYNC_SECONDS
    assert await fake_api.run(ctl, f"{NS}/q") == []  # nothing changed: nothing written


async def test_an_overcharged_quota_is_given_back_and_other_kinds_are_rechecked(fake_api):
    ctl = fake_api.build(ResourceQuotaController)
    fake_api.add(CMS, {"metadata": {"name": "cm", "namespace": NS}})
    fake_api.add(QUOTAS, quota({"configmaps": "3", "pods": "2"},
                               {"hard": {"configmaps": "3", "pods": "2"}, "used": {"configmaps": "3", "pods": "2"}}))
    await fake_api.run(ctl, f"{NS}/q")
    assert fake_api.fake.objects[PATH]["status"]["used"] == {"configmaps": "1", "pods": "0"}
    assert await ctl.reconcile(f"{NS}/q") == RECHECK_SECONDS


async def test_pod_events_enqueue_the_quotas_of_their_namespace(fake_api):
    ctl = fake_api.build(ResourceQuotaController)
    fake_api.add(QUOTAS, quota({"pods": "1"}))
    fake_api.sync()
    while len(ctl.queue):
        ctl.queue.done(await ctl.queue.get())
    ctl._on_pod("ADDED", pod("a"), None)  # charged by admission
    ctl._on_pod("MODIFIED", pod("a"), pod("a"))  # nothing that counts changed
    ctl._on_pod("DELETED", pod("x", ns="elsewhere"), pod("x", ns="elsewhere"))
    assert len(ctl.queue) == 0
    ctl._on_pod("MODIFIED", pod("a", phase="Failed"), pod("a"))
    assert len(ctl.queue) == 1 and await ctl.queue.get() == f"{NS}/q"
    ctl.queue.done(f"{NS}/q")
    ctl._on_pod("DELETED", pod("a"), pod("a"))
    assert len(ctl.queue) == 1
