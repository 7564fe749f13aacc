"""StatefulSet controller, one reconcile at a time on the fake API."""
from sendo.client import kind
from sendo.controllers.statefulset import StatefulSetController

STS, PODS, PVCS = kind("statefulsets", "apps"), kind("pods"), kind("persistentvolumeclaims")
CRS = kind("controllerrevisions", "apps")
NS = "default"
POD_URL = f"/api/v1/namespaces/{NS}/pods"
PVC_URL = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
STS_PATH = f"/apis/apps/v1/namespaces/{NS}/statefulsets/db"


def statefulset(replicas=3, image="a", policy="OrderedReady", partition=0, retention=None, **extra):
    return {"metadata": {"name": "db", "namespace": NS, "uid": "uid-db", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "db", "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": "db"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                     "persistentVolumeClaimRetentionPolicy": retention or {"whenDeleted": "Retain",
                                                                           "whenScaled": "Retain"},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                     **extra}}


def change_set(fake_api, **kw):
    """A new spec for the set, as the user writes it: the status the controller wrote stays."""
    status = fake_api.fake.objects[STS_PATH].get("status")
    fake_api.add(STS, {**statefulset(**kw), "status": status, "metadata": {**statefulset()["metadata"],
                                                                            "generation": 2}})


def make_ready(fake, name):
    pod = fake.objects[f"{POD_URL}/{name}"]
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1000)


def created(writes, url=POD_URL):
    return [c.body["metadata"]["name"] for c in writes if c.method == "POST" and c.path == url]


async def test_ordered_ready_creates_one_pod_at_a_time_with_its_claim_first(fake_api):
    ctl = fake_api.build(StatefulSetController)
    fake_api.add(STS, statefulset())
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert created(writes) == ["db-0"]
    assert created(writes, PVC_URL) == ["data-db-0"]
    order = [c.path for c in writes if c.method == "POST"]
    assert order.index(PVC_URL) < order.index(POD_URL)  # the claim exists before its pod
    pod = next(c.body for c in writes if c.path == POD_URL)
    assert pod["spec"]["hostname"] == "db-0" and pod["spec"]["subdomain"] == "db"
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "db-0" and labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["controller-revision-hash"].startswith("db-")
    pvc = next(c.body for c in writes if c.path == PVC_URL)
    assert pvc["metadata"]["labels"] == {"app": "db"} and "ownerReferences" not in pvc["metadata"]
    # db-0 not Ready yet: nothing more
    assert created(await fake_api.run(ctl, f"{NS}/db")) == []
    make_ready(fake_api.fake, "db-0")
    assert created(await fake_api.run(ctl, f"{NS}/db")) == ["db-1"]


async def test_parallel_creates_every_pod_at_once(fake_api):
    ctl = fake_api.build(StatefulSetController)
    fake_api.add(STS, statefulset(policy="Parallel"))
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert sorted(created(writes)) == ["db-0", "db-1", "db-2"]
    assert sorted(created(writes, PVC_URL)) == ["data-db-0", "data-db-1", "data-db-2"]


async def _running_set(fake_api, ctl, **kw):
    fake_api.add(STS, statefulset(policy="Parallel", **kw))
    await fake_api.run(ctl, f"{NS}/db")
    for i in range(kw.get("replicas", 3)):
        make_ready(fake_api.fake, f"db-{i}")
    fake_api.sync()


async def test_scale_down_removes_the_highest_ordinal_first_and_keeps_claims(fake_api):
    ctl = fake_api.build(StatefulSetController)
    await _running_set(fake_api, ctl)
    change_set(fake_api, replicas=1)
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/db-2"]
    assert not [c for c in writes if PVC_URL in c.path]  # Retain: claims untouched


async def test_retention_delete_gives_claims_owners(fake_api):
    ctl = fake_api.build(StatefulSetController)
    await _running_set(fake_api, ctl, retention={"whenDeleted": "Delete", "whenScaled": "Delete"})
    pvc = fake_api.fake.objects[f"{PVC_URL}/data-db-0"]
    (ref,) = pvc["metadata"]["ownerReferences"]
    assert ref["kind"] == "StatefulSet" and ref["uid"] == "uid-db" and not ref["controller"]
    change_set(fake_api, replicas=2, policy="Parallel", retention={"whenDeleted": "Delete", "whenScaled": "Delete"})
    writes = await fake_api.run(ctl, f"{NS}/db")
    patch = next(c for c in writes if c.method == "PATCH" and c.path == f"{PVC_URL}/data-db-2")
    kinds = [r["kind"] for r in patch.body["metadata"]["ownerReferences"]]
    assert kinds == ["StatefulSet", "Pod"]  # the condemned pod takes its claim with it
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/db-2"]


async def test_rolling_update_goes_from_the_highest_ordinal_down_to_the_partition(fake_api):
    ctl = fake_api.build(StatefulSetController)
    await _running_set(fake_api, ctl)
    await fake_api.run(ctl, f"{NS}/db")
    change_set(fake_api, image="b", policy="Parallel", partition=2)
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/db-2"]
    status = fake_api.fake.objects[STS_PATH]["status"]
    assert status["updateRevision"] != status["currentRevision"]
    # the replacement of db-2 runs the new revision; db-1 stays below the partition
    writes = await fake_api.run(ctl, f"{NS}/db")
    new = next(c.body for c in writes if c.method == "POST" and c.path == POD_URL)
    assert new["metadata"]["name"] == "db-2" and new["spec"]["containers"][0]["image"] == "b"
    assert new["metadata"]["labels"]["controller-revision-hash"] == status["updateRevision"]
    make_ready(fake_api.fake, "db-2")
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert not [c for c in writes if c.method == "DELETE"]


async def test_status_reports_revisions_and_counts_and_is_stable(fake_api):
    ctl = fake_api.build(StatefulSetController)
    await _running_set(fake_api, ctl)
    await fake_api.run(ctl, f"{NS}/db")
    status = fake_api.fake.objects[STS_PATH]["status"]
    assert {k: status[k] for k in ("replicas", "readyReplicas", "availableReplicas", "currentReplicas",
                                   "updatedReplicas", "observedGeneration")} == \
        {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
         "observedGeneration": 1}
    assert status["currentRevision"] == status["updateRevision"]
    revs = [o for p, o in fake_api.fake.objects.items() if "/controllerrevisions/" in p]
    assert [r["revision"] for r in revs] == [1] and revs[0]["metadata"]["name"] == status["updateRevision"]
    assert await fake_api.run(ctl, f"{NS}/db") == []


async def test_a_failed_pod_is_replaced_under_its_name(fake_api):
    ctl = fake_api.build(StatefulSetController)
    await _running_set(fake_api, ctl)
    fake_api.fake.objects[f"{POD_URL}/db-1"]["status"] = {"phase": "Failed"}
    fake_api.fake.objects[f"{POD_URL}/db-1"]["metadata"]["resourceVersion"] = "99999"
    writes = await fake_api.run(ctl, f"{NS}/db")
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/db-1"]
