"""Scheduler against a real API server: filters, scores, unschedulable pods, bursts."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from sendo.kinds.meta import now_rfc3339
from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.scheduler.plugins import NodeInfo, PodInfo, fit_error, nodes_to_find, tolerates
from sendo.scheduler.scheduler import Scheduler
from conftest import wait_until

PODS, NODES, EVENTS = kind("pods"), kind("nodes"), kind("events")


async def make_node(client, name, cpu="2", memory="4Gi", pods="110", ready=True, labels=None, taints=None,
                    unschedulable=False):
    spec = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    await client.create(NODES, {"metadata": {"name": name, "labels": labels or {}}, "spec": spec})
    status = {"capacity": {"cpu": cpu, "memory": memory, "pods": pods},
              "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
              "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady",
                              "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]}
    await client.patch(NODES, None, name, {"status": status}, sub="status")


def pod_body(name, cpu=None, memory=None, owner=None, **spec):
    res = {}
    if cpu or memory:
        res = {"requests": {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}}
    body = {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": res}], **spec}}
    if owner:
        body["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                                "uid": owner, "controller": True}]
    return body


async def make_pod(client, name, ns="default", **kw):
    return await client.create(PODS, pod_body(name, **kw), ns)


async def node_of(client, name, ns="default"):
    pod = await client.get(PODS, ns, name)
    return pod["spec"].get("nodeName")


def scheduled_condition(pod):
    return next((c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)


@pytest.fixture
async def scheduler(client):
    inf = InformerFactory(client)
    s = Scheduler(client, inf)
    await inf.start()
    await s.start()
    yield s
    await s.stop()
    await inf.stop()


async def bound(client, names, ns="default"):
    out = {}
    for n in names:
        node = await node_of(client, n, ns)
        if not node:
            return None
        out[n] = node
    return out


# ----------------------------------------------------------------- through the API
async def test_pods_land_on_nodes_that_fit(client, scheduler):
    await make_node(client, "small", cpu="1")
    await make_node(client, "big", cpu="4")
    await make_pod(client, "p", cpu="2")
    await wait_until(lambda: bound(client, ["p"]), what="pod bound")
    assert await node_of(client, "p") == "big"
    pod = await client.get(PODS, "default", "p")
    assert scheduled_condition(pod)["status"] == "True"

    async def scheduled_event():
        evs = (await client.list(EVENTS, "default"))["items"]
        return [e for e in evs if e["reason"] == "Scheduled" and e["involvedObject"]["name"] == "p"]
    await wait_until(scheduled_event, what="Scheduled event")
    ev = (await scheduled_event())[0]
    assert ev["message"] == "Successfully assigned default/p to big"
    assert ev["type"] == "Normal"


async def test_too_big_pod_waits_until_a_node_fits(client, scheduler: Scheduler):
    await make_node(client, "a")
    await make_node(client, "b")
    await make_node(client, "c", unschedulable=True)
    await make_pod(client, "huge", cpu="3")

    async def unschedulable():
        pod = await client.get(PODS, "default", "huge")
        c = scheduled_condition(pod)
        return c and c["status"] == "False" and c["reason"] == "Unschedulable"
    await wait_until(unschedulable, what="PodScheduled=False")
    pod = await client.get(PODS, "default", "huge")
    msg = "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
    assert scheduled_condition(pod)["message"] == msg
    assert not pod["spec"].get("nodeName")

    async def failed_events():
        evs = (await client.list(EVENTS, "default"))["items"]
        return [e for e in evs if e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "huge"]
    await wait_until(failed_events, what="FailedScheduling event")
    ev = (await failed_events())[0]
    assert ev["type"] == "Warning" and ev["message"] == msg
    # node changes retry it; the same verdict is not reported again
    tries = scheduler.unschedulable["default/huge"]
    for i in range(3):
        await client.patch(NODES, None, "a", {"metadata": {"labels": {"touch": str(i)}}})
    await wait_until(lambda: scheduler.unschedulable["default/huge"] >= tries + 3, what="retries")
    assert [(e["message"], e.get("count", 1)) for e in await failed_events()] == [(msg, 1)]

    await make_node(client, "large", cpu="4")
    await wait_until(lambda: bound(client, ["huge"]), what="pod bound once a node fits")
    assert await node_of(client, "huge") == "large"
    # the same message was not reported again and again while it waited (the new node, briefly
    # without status, may have produced one different message)
    evs = await failed_events()
    assert len({e["message"] for e in evs}) == len(evs) and all(e.get("count", 1) == 1 for e in evs)


async def test_freed_resources_let_a_waiting_pod_in(client, scheduler):
    await make_node(client, "only", cpu="1")
    await make_pod(client, "first", cpu="800m")
    await wait_until(lambda: bound(client, ["first"]), what="first bound")
    await make_pod(client, "second", cpu="800m")

    async def waiting():
        c = scheduled_condition(await client.get(PODS, "default", "second"))
        return c and c["reason"] == "Unschedulable"
    await wait_until(waiting, what="second waits")
    # a finished pod frees its requests
    await client.patch(PODS, "default", "first", {"status": {"phase": "Succeeded"}}, sub="status")
    await wait_until(lambda: bound(client, ["second"]), what="second bound after first finished")


async def test_replicas_spread_over_equal_nodes(client, scheduler):
    for n in ("n1", "n2", "n3"):
        await make_node(client, n)
    owner = str(uuid.uuid4())
    names = [f"web-{i}" for i in range(6)]
    for n in names:
        await make_pod(client, n, cpu="100m", memory="64Mi", owner=owner)
    await wait_until(lambda: bound(client, names), what="all replicas bound")
    placement = await bound(client, names)
    assert sorted(Counter(placement.values()).values()) == [2, 2, 2]


async def test_burst_is_spread_by_assumed_pods(client, scheduler):
    """Pods created at once still spread: each placement counts before its watch event."""
    for n in ("b1", "b2", "b3", "b4"):
        await make_node(client, n, cpu="1")
    names = [f"burst-{i}" for i in range(8)]
    await asyncio.gather(*(make_pod(client, n, cpu="500m") for n in names))
    await wait_until(lambda: bound(client, names), what="burst bound")
    placement = await bound(client, names)
    assert sorted(Counter(placement.values()).values()) == [2, 2, 2, 2]  # full nodes: 2 x 500m each


async def test_unschedulable_tainted_notready_nodes_and_node_selector(client, scheduler):
    await make_node(client, "cordoned", unschedulable=True)
    await make_node(client, "tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await make_node(client, "notready", ready=False)
    await make_node(client, "ok", labels={"disk": "ssd"})
    await make_node(client, "hdd", labels={"disk": "hdd"})
    names = [f"p{i}" for i in range(5)]
    for n in names:
        await make_pod(client, n, nodeSelector={"disk": "ssd"})
    await wait_until(lambda: bound(client, names), what="pods bound")
    assert set((await bound(client, names)).values()) == {"ok"}
    # a toleration opens the tainted node, node affinity picks it
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}]}}}
    await make_pod(client, "db", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db",
                                               "effect": "NoSchedule"}], affinity=affinity)
    await wait_until(lambda: bound(client, ["db"]), what="db bound")
    assert await node_of(client, "db") == "tainted"
    # nothing else: a pod only the not-ready node could take stays pending
    await make_pod(client, "stuck", nodeSelector={"kubernetes.io/hostname": "nope"})

    async def stuck_message():
        c = scheduled_condition(await client.get(PODS, "default", "stuck"))
        return c and c["message"]
    await wait_until(stuck_message, what="stuck is unschedulable")
    assert await stuck_message() == (
        "0/5 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, "
        "1 node(s) were not ready, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector.")


async def test_preset_node_name_and_other_schedulers_are_left_alone(client, scheduler):
    await make_node(client, "n", cpu="1")
    await make_pod(client, "pinned", cpu="800m", nodeName="n")
    await make_pod(client, "other", schedulerName="my-scheduler")
    await make_pod(client, "late", cpu="800m")  # the pinned pod's requests count

    async def late_waits():
        c = scheduled_condition(await client.get(PODS, "default", "late"))
        return c and c["reason"] == "Unschedulable"
    await wait_until(late_waits, what="late is unschedulable")
    assert await node_of(client, "other") is None
    assert "pinned" not in scheduler.unschedulable
    await client.delete(PODS, "default", "pinned", gracePeriodSeconds=0)
    await wait_until(lambda: bound(client, ["late"]), what="late bound after pinned left")
    assert await node_of(client, "other") is None


# ----------------------------------------------------------------- plugins, no server
def _node(name="n", cpu="2", memory="4Gi", pods="110", taints=(), labels=None, ready=True):
    ni = NodeInfo(name)
    ni.set_node({"metadata": {"name": name, "labels": labels or {}},
                 "spec": {"taints": list(taints)},
                 "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})
    return ni


def _pod(**spec):
    return PodInfo({"metadata": {"name": "p"}, "spec": {"containers": [], **spec}})


def test_tolerations_semantics():
    assert tolerates([{"operator": "Exists"}], "any", "v", "NoSchedule")  # empty key + Exists: everything
    assert tolerates([{"key": "k", "operator": "Exists"}], "k", "v", "NoExecute")
    assert not tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], "k", "v", "NoSchedule")
    assert tolerates([{"key": "k", "value": "v"}], "k", "v", "NoSchedule")  # operator defaults to Equal
    assert not tolerates([{"key": "k", "operator": "Equal", "value": "w"}], "k", "v", "NoSchedule")
    assert not tolerates([], "k", "", "NoSchedule")


def test_requests_sum_containers_and_take_max_init():
    c = lambda cpu, mem: {"name": "x", "resources": {"requests": {"cpu": cpu, "memory": mem}}}  # noqa: E731
    p = _pod(containers=[c("100m", "1Mi"), c("200m", "1Mi")], initContainers=[c("1", "1Mi"), c("50m", "10Mi")])
    assert (p.req.cpu, p.req.mem) == (1000, 10 * 2**20)
    lim = _pod(containers=[{"name": "x", "resources": {"limits": {"cpu": "300m"}}}])
    assert lim.req.cpu == 300  # request defaults to the limit


def test_resource_fit_counts_pods_and_skips_zero_requests():
    ni = _node(cpu="1", pods="1")
    assert ni.misfit(_pod()) == ()
    ni.add(_pod(containers=[{"name": "x", "resources": {"requests": {"cpu": "1"}}}]).req, None)
    big = _pod(containers=[{"name": "x", "resources": {"requests": {"cpu": "1", "memory": "8Gi"}}}])
    assert set(ni.misfit(big)) == {"Too many pods", "Insufficient cpu", "Insufficient memory"}


def test_node_affinity_operators():
    ni = _node(labels={"zone": "a", "gen": "5"})

    def aff(*exprs):
        return _pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}})
    assert ni.misfit(aff({"key": "zone", "operator": "In", "values": ["a", "b"]})) == ()
    assert ni.misfit(aff({"key": "zone", "operator": "NotIn", "values": ["a"]}))
    assert ni.misfit(aff({"key": "zone", "operator": "Exists"})) == ()
    assert ni.misfit(aff({"key": "gpu", "operator": "DoesNotExist"})) == ()
    assert ni.misfit(aff({"key": "gen", "operator": "Gt", "values": ["4"]})) == ()
    assert ni.misfit(aff({"key": "zone", "operator": "In", "values": ["a"]},
                         {"key": "gpu", "operator": "Exists"}))


def test_fit_error_message_and_sample_size():
    assert fit_error(3, Counter({"node(s) were unschedulable": 1, "Insufficient cpu": 2})) == \
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
    assert fit_error(0, Counter()) == "0/0 nodes are available."
    assert nodes_to_find(50, None) == 50
    assert nodes_to_find(1000, None) == 100
    assert nodes_to_find(5000, None) == 250
    assert nodes_to_find(1000, 50) == 500


def test_sample_rotates_over_large_clusters():
    """With 300 equal nodes and a 100-node sample, 300 pods use every node once."""
    inf = InformerFactory(client=None)
    s = Scheduler(None, inf)
    for i in range(300):
        s._on_node("ADDED", {"metadata": {"name": f"n{i}"},
                             "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "1"},
                                        "conditions": [{"type": "Ready", "status": "True"}]}}, None)
    used = Counter()
    for i in range(300):
        info = _pod()
        node, _ = s.find_node(info)
        assert node is not None
        s._account(f"default/p{i}", node.name, info.req, None, assumed=True)
        used[node.name] += 1
    assert len(used) == 300
    node, reasons = s.find_node(_pod())
    assert node is None and reasons == Counter({"Too many pods": 300})
