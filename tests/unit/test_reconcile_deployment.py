"""Deployment controller, one reconcile at a time on a fake API that records the calls."""
import pytest

from sendo.client import ApiError, kind
from sendo.controllers.deployment import HASH_LABEL, REVISION, DeploymentController, template_hash

DEPLOY, RS = kind("deployments", "apps"), kind("replicasets", "apps")
NS = "default"
D_URL = f"/apis/apps/v1/namespaces/{NS}/deployments"
RS_URL = f"/apis/apps/v1/namespaces/{NS}/replicasets"


def template(version="v1"):
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": f"web:{version}"}]}}


def deployment(replicas=4, version="v1", **spec):
    return {"metadata": {"name": "web", "namespace": NS, "uid": "uid-web", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(version), **spec}}


def replicaset(version, replicas, available=None, revision=1, status_replicas=None):
    h = template_hash(template(version))
    available = replicas if available is None else available
    labels = {"app": "web", HASH_LABEL: h}
    return {"metadata": {"name": f"web-{h}", "namespace": NS, "uid": f"uid-rs-{version}", "labels": labels,
                         "annotations": {REVISION: str(revision)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": "uid-web", "controller": True}]},
            "spec": {"replicas": replicas, "minReadySeconds": 0,
                     "selector": {"matchLabels": labels}, "template": template(version)},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "readyReplicas": available, "availableReplicas": available}}


def scales(client) -> list[tuple[str, int]]:
    """(ReplicaSet name, replicas) of every scale patch, in order."""
    return [(c.path.rsplit("/", 1)[1], c.body["spec"]["replicas"]) for c in client.writes()
            if c.method == "PATCH" and c.path.startswith(RS_URL) and "replicas" in (c.body.get("spec") or {})]


async def test_a_new_deployment_gets_one_replicaset_then_is_left_alone(fake_api):
    dc = fake_api.build(DeploymentController)
    fake_api.add(DEPLOY, deployment(replicas=3))
    await dc.reconcile(f"{NS}/web")  # raised 409 when the status PUT still carried the pre-patch version
    writes = fake_api.fake.writes()
    assert [(c.method, c.path) for c in writes] == [
        ("POST", RS_URL), ("PATCH", f"{D_URL}/web"), ("PUT", f"{D_URL}/web/status")]
    rs = writes[0].body
    h = template_hash(template())
    assert rs["metadata"]["name"] == f"web-{h}" and rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == h
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0] | {"uid": "uid-web", "controller": True} == \
        rs["metadata"]["ownerReferences"][0]
    assert writes[1].body == {"metadata": {"annotations": {REVISION: "1"}}}
    status = writes[2].body["status"]
    assert status["observedGeneration"] == 1 and status["unavailableReplicas"] == 3
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Available": "MinimumReplicasUnavailable", "Progressing": "ReplicaSetUpdated"}
    # level-triggered: once the caches show what it wrote, another pass writes nothing
    assert await fake_api.run(dc, f"{NS}/web") == []


async def test_rolling_update_stays_within_surge_and_unavailability(fake_api):
    dc = fake_api.build(DeploymentController)
    old = replicaset("v1", 4)
    fake_api.add(RS, old)
    fake_api.add(DEPLOY, deployment(replicas=4, version="v2"))  # maxSurge = maxUnavailable = 25% = 1
    await dc.reconcile(f"{NS}/web")
    (create,) = [c for c in fake_api.fake.writes() if c.method == "POST"]
    new_name = create.body["metadata"]["name"]
    assert create.body["spec"]["replicas"] == 0 and create.body["metadata"]["annotations"][REVISION] == "2"
    # one surge pod for the new set, one old pod given up: never fewer than 3 available
    assert scales(fake_api.fake) == [(new_name, 1), (old["metadata"]["name"], 3)]


async def test_rolling_update_takes_no_old_pod_while_new_ones_are_unavailable(fake_api):
    dc = fake_api.build(DeploymentController)
    new = replicaset("v2", 1, available=0, revision=2)
    fake_api.add(RS, replicaset("v1", 3, revision=1), new)
    fake_api.add(DEPLOY, deployment(replicas=4, version="v2"))
    await dc.reconcile(f"{NS}/web")
    # the surge pod is used, but 3 available old pods are the minimum: none is taken away
    assert scales(fake_api.fake) == [(new["metadata"]["name"], 2)]


async def test_recreate_stops_old_pods_before_starting_new_ones(fake_api):
    dc = fake_api.build(DeploymentController)
    old = replicaset("v1", 2)
    fake_api.add(RS, old)
    fake_api.add(DEPLOY, deployment(replicas=2, version="v2", strategy={"type": "Recreate"}))
    await dc.reconcile(f"{NS}/web")
    (create,) = [c for c in fake_api.fake.writes() if c.method == "POST"]
    assert create.body["spec"]["replicas"] == 0
    assert scales(fake_api.fake) == [(old["metadata"]["name"], 0)]  # the new one waits for the old pods
    # the old pods are gone: now the new set is scaled up
    fake_api.fake.objects[f"{RS_URL}/{old['metadata']['name']}"]["status"] = {"replicas": 0}
    await fake_api.run(dc, f"{NS}/web")
    assert scales(fake_api.fake) == [(create.body["metadata"]["name"], 2)]


async def test_old_idle_replicasets_beyond_the_history_limit_are_deleted(fake_api):
    dc = fake_api.build(DeploymentController)
    fake_api.add(RS, *[replicaset(f"v{i}", 0, revision=i) for i in (1, 2, 3)], replicaset("v4", 2, revision=4))
    fake_api.add(DEPLOY, deployment(replicas=2, version="v4", revisionHistoryLimit=1))
    await dc.reconcile(f"{NS}/web")
    deleted = [c.path.rsplit("/", 1)[1] for c in fake_api.fake.writes() if c.method == "DELETE"]
    assert deleted == [replicaset(f"v{i}", 0)["metadata"]["name"] for i in (1, 2)]  # oldest first, v3 kept


async def test_a_paused_deployment_only_reports_status(fake_api):
    dc = fake_api.build(DeploymentController)
    fake_api.add(RS, replicaset("v1", 2))
    fake_api.add(DEPLOY, deployment(replicas=5, version="v2", paused=True))
    await dc.reconcile(f"{NS}/web")
    assert [(c.method, c.path) for c in fake_api.fake.writes()] == [("PUT", f"{D_URL}/web/status")]


async def test_rollback_to_an_old_template_reuses_its_replicaset_as_the_newest_revision(fake_api):
    dc = fake_api.build(DeploymentController)
    v1 = replicaset("v1", 0, revision=1)
    fake_api.add(RS, v1, replicaset("v2", 2, revision=2))
    fake_api.add(DEPLOY, deployment(replicas=2, version="v1"))
    await dc.reconcile(f"{NS}/web")
    writes = fake_api.fake.writes()
    assert not [c for c in writes if c.method == "POST"]
    assert {"metadata": {"annotations": {REVISION: "3"}}} in [c.body for c in writes
                                                              if c.path == f"{RS_URL}/{v1['metadata']['name']}"]


async def test_a_spec_changed_during_the_pass_is_not_reported_as_observed(fake_api):
    dc = fake_api.build(DeploymentController)
    fake_api.add(DEPLOY, deployment(replicas=3))
    fake_api.fake.objects[f"{D_URL}/web"]["metadata"]["generation"] = 2  # a user's edit the cache has not seen
    with pytest.raises(ApiError) as e:  # the status write conflicts: the key is retried
        await fake_api.run(dc, f"{NS}/web", sync=False)
    assert e.value.status == 409
    assert "status" not in fake_api.fake.objects[f"{D_URL}/web"]
