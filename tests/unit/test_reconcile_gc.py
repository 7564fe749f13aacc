"""Garbage collector, one reconcile at a time on a fake API that records the calls."""
from sendo.client import kind
from sendo.controllers.gc import FOREGROUND, ORPHAN, GarbageCollector

PODS, RS, DEPLOY = kind("pods"), kind("replicasets", "apps"), kind("deployments", "apps")
NS = "default"
POD_URL = f"/api/v1/namespaces/{NS}/pods"
RS_URL = f"/apis/apps/v1/namespaces/{NS}/replicasets"
GONE = "2026-01-01T00:00:00Z"


def owner_ref(name="web", uid="uid-web", block=False):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": True,
            **({"blockOwnerDeletion": True} if block else {})}


def pod(name, *refs, **meta):
    return {"metadata": {"name": name, "namespace": NS, "ownerReferences": list(refs), **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}


def rs(name="web", **meta):
    return {"metadata": {"name": name, "namespace": NS, **meta}, "spec": {"replicas": 0}}


async def test_a_dependent_whose_owner_is_gone_is_deleted_after_a_direct_check(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.add(PODS, pod("orphan", owner_ref()))
    writes = await fake_api.run(gc, "uid-orphan")
    # the owner is missing from the cache, which may just be behind: a GET decides
    assert [str(c) for c in fake_api.fake.calls] == [f"GET {RS_URL}/web", f"DELETE {POD_URL}/orphan"]
    assert writes[0].body == {"propagationPolicy": "Background", "preconditions": {"uid": "uid-orphan"}}


async def test_a_dependent_of_a_live_owner_is_kept_without_asking_the_server(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.add(RS, rs())
    fake_api.add(PODS, pod("kept", owner_ref()))
    await fake_api.run(gc, "uid-kept")
    assert fake_api.fake.calls == []


async def test_an_owner_recreated_under_the_same_name_does_not_hold_the_old_dependents(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.fake.put(RS, rs(uid="uid-new"))  # on the server, not yet in the cache
    fake_api.add(PODS, pod("stale", owner_ref(uid="uid-old")))
    fake_api.sync(PODS)
    writes = await fake_api.run(gc, "uid-stale", sync=False)
    assert [(c.method, c.path) for c in writes] == [("DELETE", f"{POD_URL}/stale")]


async def test_one_live_owner_keeps_the_object_and_the_dead_reference_is_dropped(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.add(RS, rs("alive"))
    fake_api.add(PODS, pod("shared", owner_ref("alive", "uid-alive"), owner_ref("dead", "uid-dead")))
    writes = await fake_api.run(gc, "uid-shared")
    (patch,) = writes
    assert patch.method == "PATCH" and patch.path == f"{POD_URL}/shared"
    assert [r["uid"] for r in patch.body["metadata"]["ownerReferences"]] == ["uid-alive"]
    assert patch.body["metadata"]["resourceVersion"]  # guarded: a concurrent change is not overwritten


async def test_orphan_propagation_lets_go_of_dependents_then_of_the_finalizer(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.add(RS, rs(deletionTimestamp=GONE, finalizers=[ORPHAN]))
    fake_api.add(PODS, pod("freed", owner_ref()))
    writes = await fake_api.run(gc, "uid-web")
    assert [(c.method, c.path) for c in writes] == [("PATCH", f"{POD_URL}/freed"), ("PATCH", f"{RS_URL}/web")]
    assert writes[0].body["metadata"]["ownerReferences"] is None
    assert writes[1].body["metadata"]["finalizers"] is None
    assert not [c for c in writes if c.method == "DELETE"]


async def test_foreground_deletion_waits_for_blocking_dependents(fake_api):
    gc = fake_api.build(GarbageCollector)
    fake_api.add(RS, rs(deletionTimestamp=GONE, finalizers=[FOREGROUND]))
    fake_api.add(PODS, pod("blocker", owner_ref(block=True)))
    assert await fake_api.run(gc, "uid-web") == []  # the finalizer stays while the pod is there
    # the dependent's own reconcile deletes it, in the foreground of its owner
    writes = await fake_api.run(gc, "uid-blocker")
    assert [(c.method, c.path) for c in writes] == [("DELETE", f"{POD_URL}/blocker")]
    # once it is gone, the owner loses its finalizer
    writes = await fake_api.run(gc, "uid-web")
    assert [(c.method, c.path) for c in writes] == [("PATCH", f"{RS_URL}/web")]
    assert writes[0].body["metadata"]["finalizers"] is None


async def test_an_owner_of_a_kind_it_cannot_look_up_is_never_presumed_gone(fake_api):
    gc = fake_api.build(GarbageCollector)
    ref = {"apiVersion": "example.com/v1", "kind": "Mystery", "name": "m", "uid": "uid-m"}
    fake_api.add(PODS, pod("kept", ref))
    assert await fake_api.run(gc, "uid-kept") == []
