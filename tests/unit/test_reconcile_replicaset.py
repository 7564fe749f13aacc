"""ReplicaSet controller, one reconcile at a time on a fake API that records the calls."""
from sendo.client import kind
from sendo.controllers.replicaset import ReplicaSetController

RS, PODS = kind("replicasets", "apps"), kind("pods")
NS = "default"
RS_URL = f"/apis/apps/v1/namespaces/{NS}/replicasets"
POD_URL = f"/api/v1/namespaces/{NS}/pods"


def replicaset(name="web", replicas=3):
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


def pod(name, owner="web", node=None, ready=False, phase="Running", created="2026-01-01T00:00:00Z", **meta):
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": owner}, "creationTimestamp": created,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                              "uid": f"uid-{owner}", "controller": True}], **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}], **({"nodeName": node} if node else {})},
            "status": {"phase": phase, "conditions": conds}}


async def test_missing_pods_are_created_from_the_template_once(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=3))
    await rsc.reconcile(f"{NS}/web")
    creates = [c for c in fake_api.fake.writes() if c.method == "POST"]
    assert [c.path for c in creates] == [POD_URL] * 3
    for c in creates:
        m = c.body["metadata"]
        assert m["generateName"] == "web-" and m["labels"] == {"app": "web"}
        assert m["ownerReferences"][0]["uid"] == "uid-web" and m["ownerReferences"][0]["controller"]
        assert c.body["spec"]["containers"][0]["name"] == "c"
    # the pod watch is behind: a second reconcile must not create them again (expectations)
    assert [c for c in await fake_api.run(rsc, f"{NS}/web", sync=(RS,)) if c.method == "POST"] == []


async def test_status_counts_the_pods_and_is_not_rewritten_when_unchanged(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=2))
    fake_api.add(PODS, pod("web-a", ready=True), pod("web-b"))
    await rsc.reconcile(f"{NS}/web")
    (put,) = fake_api.fake.writes()
    assert put.method == "PUT" and put.path == f"{RS_URL}/web/status"
    assert put.body["status"] == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                                  "availableReplicas": 1, "observedGeneration": 2}
    assert await fake_api.run(rsc, f"{NS}/web") == []


async def test_scale_down_deletes_the_least_useful_pods_first(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=1))
    fake_api.add(PODS, pod("web-ready", node="n1", ready=True),
                 pod("web-unscheduled", phase="Pending"),
                 pod("web-notready", node="n1"))
    await rsc.reconcile(f"{NS}/web")
    deleted = sorted(c.path for c in fake_api.fake.writes() if c.method == "DELETE")
    assert deleted == [f"{POD_URL}/web-notready", f"{POD_URL}/web-unscheduled"]


async def test_terminating_and_finished_pods_are_replaced(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=2))
    fake_api.add(PODS, pod("web-going", deletionTimestamp="2026-01-01T00:00:00Z"), pod("web-done", phase="Succeeded"),
                 pod("web-ok", ready=True))
    await rsc.reconcile(f"{NS}/web")
    assert [c.path for c in fake_api.fake.writes() if c.method == "POST"] == [POD_URL]
    assert not [c for c in fake_api.fake.writes() if c.method == "DELETE"]


async def test_a_replicaset_being_deleted_creates_nothing(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=3) | {"metadata": {**replicaset()["metadata"],
                                                            "deletionTimestamp": "2026-01-01T00:00:00Z"}})
    await rsc.reconcile(f"{NS}/web")
    assert [c.method for c in fake_api.fake.writes()] == ["PUT"]  # status only


async def test_pods_of_another_owner_do_not_count(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset("web", replicas=1), replicaset("api", replicas=0))
    fake_api.add(PODS, pod("api-x", owner="api", ready=True))
    await rsc.reconcile(f"{NS}/web")
    assert [c.path for c in fake_api.fake.writes() if c.method == "POST"] == [POD_URL]
    assert not [c for c in fake_api.fake.writes() if c.method == "DELETE"]


async def test_a_failed_create_is_reported_and_retried(fake_api):
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=1))
    fake_api.fake.fail("POST", POD_URL, 403, "Forbidden")
    try:
        await rsc.reconcile(f"{NS}/web")
    except Exception as e:  # the worker retries the key with back-off
        assert getattr(e, "status", None) == 403
    else:
        raise AssertionError("a failed create must fail the reconcile so the key is retried")
    await rsc.reconcile(f"{NS}/web")  # the retry creates the pod: no expectation was left behind
    assert [c.path for c in fake_api.fake.writes() if c.method == "POST"] == [POD_URL, POD_URL]
    assert [o for p, o in fake_api.fake.objects.items() if p.startswith(POD_URL)]


async def test_a_pod_whose_owner_reference_is_taken_off_is_replaced(fake_api):
    """A pod let go (ownerReferences removed, as the function controller does when it takes a
    warm-pool worker) queues its former ReplicaSet, which makes a new one."""
    rsc = fake_api.build(ReplicaSetController)
    fake_api.add(RS, replicaset(replicas=1))
    fake_api.add(PODS, pod("web-a", ready=True))
    await fake_api.run(rsc, f"{NS}/web")
    while len(rsc.queue):
        rsc.queue.done(await rsc.queue.get())
    taken = fake_api.fake.objects[f"{POD_URL}/web-a"]
    taken["metadata"]["ownerReferences"] = []
    taken["metadata"]["resourceVersion"] = str(int(taken["metadata"]["resourceVersion"]) + 1000)
    fake_api.sync()
    assert len(rsc.queue) == 1 and await rsc.queue.get() == f"{NS}/web"
    writes = await fake_api.run(rsc, f"{NS}/web")
    assert [c.path for c in writes if c.method == "POST"] == [POD_URL]
