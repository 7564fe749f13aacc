"""Garbage collector against a real API server: background, foreground, orphan, restarts."""
from __future__ import annotations

import uuid

import pytest

from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.gc import GarbageCollector
from conftest import wait_until

PODS, RS, DEPLOY, CM = kind("pods"), kind("replicasets", "apps"), kind("deployments", "apps"), kind("configmaps")
LABELS = {"app": "web"}
TEMPLATE = {"metadata": {"labels": LABELS}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def ref(owner, block=True):
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}


async def make_deploy(client, name="web"):
    return await client.create(DEPLOY, {"metadata": {"name": name}, "spec": {
        "replicas": 2, "selector": {"matchLabels": LABELS}, "template": TEMPLATE}}, "default")


async def make_rs(client, name="web-1", owner=None):
    meta = {"name": name, "labels": LABELS}
    if owner:
        meta["ownerReferences"] = [ref(owner)]
    return await client.create(RS, {"metadata": meta, "spec": {
        "replicas": 2, "selector": {"matchLabels": LABELS}, "template": TEMPLATE}}, "default")


async def make_pods(client, owner, n=2, prefix=None, refs=None):
    out = []
    for i in range(n):
        body = {"metadata": {"name": f"{prefix or owner['metadata']['name']}-{i}", "labels": LABELS,
                             "ownerReferences": refs or [ref(owner)]}, "spec": TEMPLATE["spec"]}
        out.append(await client.create(PODS, body, "default"))
    return out


async def exists(client, r, name):
    return await client.get_or_none(r, "default", name) is not None


async def gone(client, r, *names):
    for n in names:
        if await exists(client, r, n):
            return False
    return True


@pytest.fixture
async def gc_loop(client):
    inf = InformerFactory(client)
    gc = GarbageCollector(client, inf)
    await inf.start()
    await gc.start()
    yield gc
    await gc.stop()
    await inf.stop()


async def test_background_deletion_collects_the_chain(client, gc_loop):
    d = await make_deploy(client)
    rs = await make_rs(client, owner=d)
    await make_pods(client, rs)
    await client.delete(DEPLOY, "default", "web")  # Background is the default
    await wait_until(lambda: gone(client, RS, "web-1"), what="replicaset collected")
    await wait_until(lambda: gone(client, PODS, "web-1-0", "web-1-1"), what="pods collected")


async def test_foreground_deletion_removes_dependents_before_the_owner(client, gc_loop):
    d = await make_deploy(client)
    rs = await make_rs(client, owner=d)
    await make_pods(client, rs, n=3)
    left = await client.delete(DEPLOY, "default", "web", propagationPolicy="Foreground")
    assert left["metadata"]["deletionTimestamp"] and "foregroundDeletion" in left["metadata"]["finalizers"]
    seen_waiting = False

    async def owner_gone():
        nonlocal seen_waiting
        if await exists(client, DEPLOY, "web"):
            seen_waiting = True
            return False
        # the owner is gone: every dependent went first (they never come back)
        assert await gone(client, RS, "web-1")
        assert await gone(client, PODS, "web-1-0", "web-1-1", "web-1-2")
        return True
    await wait_until(owner_gone, what="foreground deletion done")
    assert seen_waiting


async def test_foreground_owner_without_dependents_goes_at_once(client, gc_loop):
    await make_rs(client, name="lonely")
    await client.delete(RS, "default", "lonely", propagationPolicy="Foreground")
    await wait_until(lambda: gone(client, RS, "lonely"), what="finalizer removed")


async def test_orphan_keeps_dependents_and_strips_references(client, gc_loop):
    rs = await make_rs(client)
    keep = await client.create(CM, {"metadata": {"name": "keep"}, "data": {}}, "default")
    # one pod has a second owner: only the reference to the orphaning owner goes
    await make_pods(client, rs, n=2)
    await make_pods(client, rs, n=1, prefix="shared", refs=[ref(rs), ref(keep, block=False) | {"controller": False}])
    await client.delete(RS, "default", "web-1", propagationPolicy="Orphan")
    await wait_until(lambda: gone(client, RS, "web-1"), what="orphaning owner removed")
    for name in ("web-1-0", "web-1-1"):
        pod = await client.get(PODS, "default", name)
        assert not pod["metadata"].get("ownerReferences")
    shared = await client.get(PODS, "default", "shared-0")
    assert [r["uid"] for r in shared["metadata"]["ownerReferences"]] == [keep["metadata"]["uid"]]


async def test_owner_is_confirmed_gone_before_collecting(client, gc_loop):
    """Owners of kinds the collector does not watch are checked with a GET."""
    cm = await client.create(CM, {"metadata": {"name": "owner"}, "data": {}}, "default")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": str(uuid.uuid4())}}
    await make_pods(client, cm, n=1, prefix="alive")
    await make_pods(client, ghost, n=1, prefix="orphan")
    # same name, another uid: the owner it named is gone too
    await client.create(CM, {"metadata": {"name": "reborn"}, "data": {}}, "default")
    stale = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reborn", "uid": str(uuid.uuid4())}}
    await make_pods(client, stale, n=1, prefix="stale")
    await wait_until(lambda: gone(client, PODS, "orphan-0", "stale-0"), what="orphans collected")
    assert await exists(client, PODS, "alive-0")


async def test_dangling_reference_is_removed_when_another_owner_holds(client, gc_loop):
    keeper = await make_rs(client, name="keeper")
    ghost = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "ghost", "uid": str(uuid.uuid4())}}
    await make_pods(client, keeper, n=1, prefix="two", refs=[ref(keeper), ref(ghost) | {"controller": False}])

    async def one_ref():
        pod = await client.get(PODS, "default", "two-0")
        return [r["uid"] for r in pod["metadata"]["ownerReferences"]] == [keeper["metadata"]["uid"]]
    await wait_until(one_ref, what="dangling reference dropped")


async def test_restart_finds_orphans_by_relisting(client):
    rs = await make_rs(client)
    await make_pods(client, rs)
    await client.delete(RS, "default", "web-1")  # no collector running: the pods stay
    assert await exists(client, PODS, "web-1-0")
    inf = InformerFactory(client)
    gc = GarbageCollector(client, inf)
    await inf.start()
    await gc.start()
    try:
        await wait_until(lambda: gone(client, PODS, "web-1-0", "web-1-1"), what="orphans collected after start")
    finally:
        await gc.stop()
        await inf.stop()


async def test_added_kind_is_collected(client, gc_loop):
    gc_loop.add_kind(CM)
    rs = await make_rs(client, name="cfg-owner")
    await client.create(CM, {"metadata": {"name": "cfg", "ownerReferences": [ref(rs)]}, "data": {}}, "default")
    await client.delete(RS, "default", "cfg-owner")
    await wait_until(lambda: gone(client, CM, "cfg"), what="configmap collected")


async def test_a_dependent_of_an_owner_of_another_kind_goes_when_that_owner_goes(client, gc_loop):
    """A Pod a client made a Service own (kr8s's `adopt`): once the collector has looked
    that owner up it watches Services too, so the Service's deletion removes the Pod."""
    svc = await client.create(kind("services"), {"metadata": {"name": "owner"},
                                                "spec": {"ports": [{"port": 80}]}}, "default")
    await make_pods(client, svc, n=1, prefix="adopted")
    await wait_until(lambda: ("", "services") in gc_loop._watched, what="the collector watches Services")
    assert await exists(client, PODS, "adopted-0")
    await client.delete(kind("services"), "default", "owner")
    await wait_until(lambda: gone(client, PODS, "adopted-0"), what="the adopted pod collected")
