"""Disruption controller (PodDisruptionBudget status), one reconcile at a time on the fake API."""
import datetime as dt

from sendo.client import kind
from sendo.controllers.disruption import DisruptionController
from sendo.kinds.meta import rfc3339

PDBS, PODS = kind("poddisruptionbudgets", "policy"), kind("pods")
RS, DEPLOY, STS = kind("replicasets", "apps"), kind("deployments", "apps"), kind("statefulsets", "apps")
NS = "default"
PDB_PATH = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/web"


def budget(**spec):
    return {"metadata": {"name": "web", "namespace": NS, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def pod(name, ready=True, owner=("ReplicaSet", "web-rs"), **meta):
    refs = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": f"uid-{owner[1]}",
             "controller": True}] if owner else []
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}, "ownerReferences": refs, **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def status(fake_api):
    return fake_api.fake.objects[PDB_PATH]["status"]


async def test_min_available_counts_ready_pods(fake_api):
    ctl = fake_api.build(DisruptionController)
    fake_api.add(PODS, pod("a"), pod("b"), pod("c", ready=False), pod("d", deletionTimestamp="2026-01-01T00:00:00Z"))
    fake_api.add(PDBS, budget(minAvailable=1))
    await fake_api.run(ctl, f"{NS}/web")
    st = status(fake_api)
    assert {k: st[k] for k in ("currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed",
                               "observedGeneration")} == \
        {"currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 4, "disruptionsAllowed": 1, "observedGeneration": 1}
    (cond,) = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionAllowed", "True", "SufficientPods")
    assert await fake_api.run(ctl, f"{NS}/web") == []  # nothing changed: nothing written


async def test_max_unavailable_uses_the_deployment_scale(fake_api):
    ctl = fake_api.build(DisruptionController)
    fake_api.add(DEPLOY, {"metadata": {"name": "web", "namespace": NS, "uid": "uid-web"}, "spec": {"replicas": 4}})
    fake_api.add(RS, {"metadata": {"name": "web-rs", "namespace": NS, "uid": "uid-web-rs", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web", "controller": True}]},
        "spec": {"replicas": 4}})
    fake_api.add(PODS, pod("a"), pod("b"), pod("c"))
    fake_api.add(PDBS, budget(maxUnavailable="50%"))
    await fake_api.run(ctl, f"{NS}/web")
    st = status(fake_api)
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (4, 2, 3, 1)


async def test_percent_min_available_rounds_up_and_a_pod_without_controller_fails_the_sync(fake_api):
    ctl = fake_api.build(DisruptionController)
    fake_api.add(STS, {"metadata": {"name": "db", "namespace": NS, "uid": "uid-db"}, "spec": {"replicas": 3}})
    fake_api.add(PODS, pod("db-0", owner=("StatefulSet", "db")), pod("db-1", owner=("StatefulSet", "db")))
    fake_api.add(PDBS, budget(minAvailable="50%"))
    await fake_api.run(ctl, f"{NS}/web")
    st = status(fake_api)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 2, 0)
    assert st["conditions"][0]["reason"] == "InsufficientPods"
    fake_api.add(PODS, pod("stray", owner=None))
    await fake_api.run(ctl, f"{NS}/web")
    st = status(fake_api)
    assert st["disruptionsAllowed"] == 0 and st["conditions"][0]["reason"] == "SyncFailed"
    assert "stray" in st["conditions"][0]["message"]


async def test_an_evicted_pod_is_not_healthy_until_its_deletion_shows_or_times_out(fake_api):
    ctl = fake_api.build(DisruptionController)
    now = dt.datetime.now(dt.timezone.utc)
    fake_api.add(PODS, pod("a"), pod("b"), pod("c"))
    fake_api.add(PDBS, {**budget(minAvailable=1), "status": {"disruptedPods": {
        "a": rfc3339(now), "b": rfc3339(now - dt.timedelta(minutes=5)), "gone": rfc3339(now)}}})
    again = await ctl.reconcile(f"{NS}/web")
    st = status(fake_api)
    assert st["disruptedPods"] == {"a": st["disruptedPods"]["a"]}  # b timed out, gone is gone
    assert st["currentHealthy"] == 2 and st["disruptionsAllowed"] == 1
    assert again is not None and 0 < again <= 120
