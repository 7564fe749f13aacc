"""Node loss, one reconcile at a time on a fake API: the taint eviction controller's
decisions (with an injected clock) and the pod garbage collector's."""
import pytest

from sendo.client import kind
from sendo.controllers.podgc import PodGCController
from sendo.controllers.tainteviction import TaintEvictionController, toleration_time

NODES, PODS = kind("nodes"), kind("pods")
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}


def tol(key, seconds=None, effect="NoExecute", **extra):
    t = {"key": key, "operator": "Exists", "effect": effect, **extra}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


DEFAULTS = [tol("node.kubernetes.io/not-ready", 300), tol("node.kubernetes.io/unreachable", 300)]


def node(name="n1", taints=(), ready="Unknown"):
    return {"metadata": {"name": name}, "spec": {"taints": list(taints)},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def pod(name, node_name="n1", tolerations=DEFAULTS, **meta):
    return {"metadata": {"name": name, "namespace": "default", **meta},
            "spec": {"nodeName": node_name, "tolerations": list(tolerations)},
            "status": {"phase": "Running"}}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("tolerations, taints, want", [
    ([], [UNREACHABLE], 0.0),  # not tolerated: at once
    (DEFAULTS, [UNREACHABLE], 300.0),
    ([tol("node.kubernetes.io/unreachable")], [UNREACHABLE], None),  # no seconds: for ever
    ([tol("node.kubernetes.io/unreachable", 7), tol("node.kubernetes.io/unreachable")], [UNREACHABLE], 7.0),
    ([{"operator": "Exists"}], [UNREACHABLE, NOT_READY], None),  # tolerates everything, for ever
    ([tol("node.kubernetes.io/unreachable", 9)], [UNREACHABLE, NOT_READY], 0.0),  # one taint untolerated
    ([tol("node.kubernetes.io/unreachable", 9), tol("node.kubernetes.io/not-ready", 4)],
     [UNREACHABLE, NOT_READY], 4.0),  # the smallest of the tolerations used
    ([tol("node.kubernetes.io/unreachable", -5)], [UNREACHABLE], 0.0),  # negative counts as 0
    ([tol("node.kubernetes.io/unreachable", effect="NoSchedule")], [UNREACHABLE], 0.0),  # wrong effect
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}], [UNREACHABLE], None),  # empty effect: all
    ([{"key": "dedicated", "value": "db", "effect": "NoExecute"}],
     [{"key": "dedicated", "value": "web", "effect": "NoExecute"}], 0.0),  # Equal needs the same value
])
def test_how_long_a_pod_may_stay_under_no_execute_taints(tolerations, taints, want):
    assert toleration_time(pod("p", tolerations=tolerations), taints) == want


async def test_an_untolerated_taint_evicts_at_once_with_a_condition_an_event_and_a_uid_precondition(fake_api):
    te = fake_api.build(TaintEvictionController, clock=Clock())
    fake_api.add(NODES, node(taints=[UNREACHABLE]))
    fake_api.add(PODS, pod("p", tolerations=[]))
    writes = await fake_api.run(te, "default/p")
    assert [(c.method, c.path) for c in writes] == [("PATCH", "/api/v1/namespaces/default/pods/p/status"),
                                                   ("DELETE", "/api/v1/namespaces/default/pods/p")]
    (cond,) = writes[0].body["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionTarget", "True", "DeletionByTaintManager")
    assert writes[1].body == {"preconditions": {"uid": "uid-p"}}


async def test_a_pod_with_toleration_seconds_goes_when_they_are_up_and_not_before(fake_api):
    clock = Clock()
    te = fake_api.build(TaintEvictionController, clock=clock)
    fake_api.add(NODES, node(taints=[UNREACHABLE]))
    fake_api.add(PODS, pod("p", tolerations=[tol("node.kubernetes.io/unreachable", 5)]))
    assert await fake_api.run(te, "default/p") == []
    assert await te.reconcile("default/p") == pytest.approx(5.0)  # it looks again when the time is up
    clock.now += 4.5
    assert await te.reconcile("default/p") == pytest.approx(0.5)  # counted from when it was first seen
    assert fake_api.fake.writes() == []
    clock.now += 0.5
    writes = await fake_api.run(te, "default/p")
    assert [c.method for c in writes] == ["PATCH", "DELETE"]


async def test_tolerating_for_ever_or_an_untainted_node_writes_nothing(fake_api):
    te = fake_api.build(TaintEvictionController, clock=Clock())
    fake_api.add(NODES, node(taints=[UNREACHABLE]), node("n2", taints=[{"key": "x", "effect": "NoSchedule"}]))
    fake_api.add(PODS, pod("forever", tolerations=[tol("node.kubernetes.io/unreachable")]),
                 pod("healthy", node_name="n2", tolerations=[]), pod("unbound", node_name=None, tolerations=[]))
    for key in ("default/forever", "default/healthy", "default/unbound", "default/missing"):
        assert await fake_api.run(te, key) == []
        assert await te.reconcile(key) is None


async def test_the_node_back_before_the_time_is_up_cancels_the_eviction(fake_api):
    clock = Clock()
    te = fake_api.build(TaintEvictionController, clock=clock)
    fake_api.add(NODES, node(taints=[UNREACHABLE]))
    fake_api.add(PODS, pod("p", tolerations=[tol("node.kubernetes.io/unreachable", 5)]))
    await fake_api.run(te, "default/p")
    clock.now += 3
    fake_api.add(NODES, node(taints=[], ready="True"))  # the agent is back: the taints go
    assert await fake_api.run(te, "default/p") == []
    assert await te.reconcile("default/p") is None
    clock.now += 1
    fake_api.add(NODES, node(taints=[UNREACHABLE]))  # lost again: a full toleration from now
    assert await fake_api.run(te, "default/p") == []
    clock.now += 4.9
    assert await fake_api.run(te, "default/p") == []
    clock.now += 0.1
    assert [c.method for c in await fake_api.run(te, "default/p")] == ["PATCH", "DELETE"]


async def test_a_pod_being_deleted_or_replaced_under_its_name_is_not_evicted_twice(fake_api):
    clock = Clock()
    te = fake_api.build(TaintEvictionController, clock=clock)
    fake_api.add(NODES, node(taints=[UNREACHABLE]))
    fake_api.add(PODS, pod("going", tolerations=[], deletionTimestamp="2026-01-01T00:00:00Z"))
    assert await fake_api.run(te, "default/going") == []
    fake_api.add(PODS, pod("p", tolerations=[tol("node.kubernetes.io/unreachable", 5)]))
    await fake_api.run(te, "default/p")
    clock.now += 5
    fake_api.add(PODS, pod("p", uid="uid-new", tolerations=[tol("node.kubernetes.io/unreachable", 5)]))
    assert await fake_api.run(te, "default/p") == []  # a new pod under the name: its own 5 s
    fake_api.fake.fail("DELETE", "/api/v1/namespaces/default/pods/p", 409, "Conflict")
    clock.now += 5
    await fake_api.run(te, "default/p")  # the uid precondition lost a race: not an error


async def test_node_taint_changes_queue_the_pods_bound_there(fake_api):
    te = fake_api.build(TaintEvictionController, clock=Clock())
    fake_api.add(NODES, node(taints=[]), node("n2"))
    fake_api.add(PODS, pod("a"), pod("b"), pod("c", node_name="n2"))
    assert len(te.queue) == 0  # nothing tainted yet: nothing to look at
    fake_api.add(NODES, node(taints=[UNREACHABLE]))
    queued = set()
    while len(te.queue):
        queued.add(await te.queue.get())
    assert queued == {"default/a", "default/b"}


# ----------------------------------------------------------------- pod GC

async def test_pods_of_a_deleted_node_are_failed_and_force_deleted(fake_api):
    gc = fake_api.build(PodGCController)
    fake_api.add(NODES, node("alive", ready="True"))
    fake_api.add(PODS, pod("orphan", node_name="gone"), pod("fine", node_name="alive"))
    writes = await fake_api.run(gc, "default/orphan")
    assert [(c.method, c.path) for c in writes] == [("PATCH", "/api/v1/namespaces/default/pods/orphan/status"),
                                                   ("DELETE", "/api/v1/namespaces/default/pods/orphan")]
    status = writes[0].body["status"]
    assert status["phase"] == "Failed" and status["conditions"][0]["reason"] == "DeletionByPodGC"
    assert writes[1].body == {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-orphan"}}
    assert await fake_api.run(gc, "default/fine") == []


async def test_a_node_missing_only_from_the_cache_keeps_its_pods(fake_api):
    gc = fake_api.build(PodGCController)
    fake_api.add(PODS, pod("p", node_name="new"))
    fake_api.fake.put(NODES, node("new", ready="True"))  # on the server, not yet seen by the watch
    writes = await fake_api.run(gc, "default/p", sync=(PODS,))
    assert writes == []


async def test_terminating_pods_are_force_deleted_unbound_or_on_an_out_of_service_node_only(fake_api):
    gc = fake_api.build(PodGCController)
    out = {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}
    fake_api.add(NODES, node("lost", taints=[UNREACHABLE]), node("down", taints=[UNREACHABLE, out]),
                 node("ready-but-marked", taints=[out], ready="True"))
    deleting = {"deletionTimestamp": "2026-01-01T00:00:00Z"}
    fake_api.add(PODS, pod("unbound", node_name=None, **deleting), pod("on-lost", node_name="lost", **deleting),
                 pod("on-down", node_name="down", **deleting), pod("running-on-down", node_name="down"),
                 pod("on-ready", node_name="ready-but-marked", **deleting))
    assert [c.method for c in await fake_api.run(gc, "default/unbound")] == ["DELETE"]
    assert [c.method for c in await fake_api.run(gc, "default/on-down")] == ["DELETE"]
    # an unreachable node may still run its pods behind a partition: only its agent may end them
    for name in ("on-lost", "running-on-down", "on-ready"):
        assert await fake_api.run(gc, f"default/{name}") == [], name
