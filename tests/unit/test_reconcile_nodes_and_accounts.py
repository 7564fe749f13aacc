"""Node lifecycle and ServiceAccount controllers, one reconcile at a time on a fake API."""
from sendo.client import kind
from sendo.controllers.nodelifecycle import LEASE_NAMESPACE, UNREACHABLE, NodeLifecycleController
from sendo.controllers.serviceaccounts import ServiceAccountsController

NODES, PODS, LEASES = kind("nodes"), kind("pods"), kind("leases", "coordination.k8s.io")
NAMESPACES, ACCOUNTS = kind("namespaces"), kind("serviceaccounts")
BEAT = "2026-01-01T00:00:00Z"


def node(name="n1", ready="True"):
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": BEAT},
                                      {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": BEAT}]}}


def lease(name="n1"):
    return {"metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "renewTime": "2026-01-01T00:00:00.000000Z"}}


def pod(name, node_name="n1", ready=True):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node_name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


async def test_a_silent_node_goes_unknown_its_pods_unready_and_it_is_tainted(fake_api):
    nl = fake_api.build(NodeLifecycleController, grace_seconds=0)  # silent for 0 s is too long
    fake_api.add(NODES, node(), node("healthy"))
    fake_api.add(LEASES, lease())
    fake_api.add(PODS, pod("here"), pod("elsewhere", node_name="n2"), pod("already", ready=False))
    writes = await fake_api.run(nl, "n1")
    assert [(c.method, c.path) for c in writes] == [
        ("PATCH", "/api/v1/nodes/n1/status"), ("PATCH", "/api/v1/namespaces/default/pods/here/status"),
        ("PATCH", "/api/v1/nodes/n1")]
    conds = writes[0].body["status"]["conditions"]
    assert {c["type"]: (c["status"], c["reason"]) for c in conds} == {
        "Ready": ("Unknown", "NodeStatusUnknown"), "MemoryPressure": ("Unknown", "NodeStatusUnknown")}
    assert all(c["lastHeartbeatTime"] == BEAT for c in conds)  # not a heartbeat of ours
    assert writes[0].content_type.endswith("strategic-merge-patch+json")
    assert writes[1].body["status"]["conditions"][0] | {"type": "Ready", "status": "False"} == \
        writes[1].body["status"]["conditions"][0]
    taints = writes[2].body["spec"]["taints"]
    assert [(t["key"], t["effect"]) for t in taints] == [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
    assert all(t["timeAdded"] for t in taints)
    assert writes[2].body["metadata"]["resourceVersion"]  # guarded against a concurrent change


async def test_a_node_heard_from_is_left_alone_until_its_grace_is_over(fake_api):
    nl = fake_api.build(NodeLifecycleController, grace_seconds=40)
    fake_api.add(NODES, node())
    fake_api.add(LEASES, lease())
    fake_api.add(PODS, pod("here"))
    fake_api.fake.calls.clear()
    recheck = await nl.reconcile("n1")
    assert fake_api.fake.calls == []
    assert 39 < recheck <= 40.05  # it looks again when the grace would run out


async def test_a_node_that_reports_not_ready_gets_the_not_ready_taint_only(fake_api):
    nl = fake_api.build(NodeLifecycleController, grace_seconds=40)
    fake_api.add(NODES, node("healthy"))
    fake_api.add(NODES, node(ready="False") | {"spec": {"taints": [
        {"key": UNREACHABLE, "effect": "NoSchedule"}, {"key": "dedicated", "effect": "NoSchedule"}]}})
    writes = await fake_api.run(nl, "n1")
    assert [(c.method, c.path) for c in writes] == [("PATCH", "/api/v1/nodes/n1")]
    assert [(t["key"], t["effect"]) for t in writes[0].body["spec"]["taints"]] == [
        ("dedicated", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute")]


async def test_condition_taints_are_kept_as_they_are_and_go_when_the_node_is_ready(fake_api):
    nl = fake_api.build(NodeLifecycleController, grace_seconds=40)
    tainted = [{"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": BEAT},
               {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": BEAT}]
    fake_api.add(NODES, node(ready="Unknown") | {"spec": {"taints": tainted}}, node("healthy"))
    fake_api.add(LEASES, lease())
    assert await fake_api.run(nl, "n1") == []  # right already: timeAdded is not rewritten
    fake_api.add(NODES, node(ready="True") | {"spec": {"taints": tainted + [{"key": "x", "effect": "NoExecute"}]}})
    writes = await fake_api.run(nl, "n1")
    assert [t["key"] for t in writes[0].body["spec"]["taints"]] == ["x"]


def taint_pairs(write):
    return [(t["key"], t["effect"]) for t in write.body["spec"]["taints"] or []]


async def test_no_no_execute_taint_while_the_whole_zone_is_down(fake_api):
    """A lone node (or every node of a zone) silent: the control plane is more likely cut
    off than every machine dead, so nothing is evicted; NoExecute comes once a node is back."""
    nl = fake_api.build(NodeLifecycleController, grace_seconds=40)
    fake_api.add(NODES, node(ready="Unknown"))
    writes = await fake_api.run(nl, "n1")
    assert taint_pairs(writes[0]) == [(UNREACHABLE, "NoSchedule")]
    fake_api.add(NODES, node("n2", ready="True"))  # another node of the zone is Ready: n1 is queued again
    assert "n1" in {await nl.queue.get() for _ in range(len(nl.queue))}
    writes = await fake_api.run(nl, "n1")
    assert taint_pairs(writes[0]) == [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]


async def test_zones_count_apart_and_a_mostly_down_small_zone_evicts_nothing(fake_api):
    nl = fake_api.build(NodeLifecycleController, grace_seconds=40)

    def zoned(name, zone, ready):
        n = node(name, ready=ready)
        n["metadata"]["labels"] = {"topology.kubernetes.io/zone": zone}
        return n
    fake_api.add(NODES, zoned("a1", "a", "Unknown"), zoned("b1", "b", "True"),  # zone a wholly down
                 *(zoned(f"c{i}", "c", "Unknown") for i in range(3)), zoned("c3", "c", "True"),  # 3 of 4 down
                 *(zoned(f"d{i}", "d", "Unknown") for i in range(2)), zoned("d2", "d", "True"))  # only 2 down
    assert taint_pairs((await fake_api.run(nl, "a1"))[0]) == [(UNREACHABLE, "NoSchedule")]
    assert taint_pairs((await fake_api.run(nl, "c0"))[0]) == [(UNREACHABLE, "NoSchedule")]
    assert taint_pairs((await fake_api.run(nl, "d0"))[0]) == [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]


async def test_every_active_namespace_gets_a_default_serviceaccount(fake_api):
    sa = fake_api.build(ServiceAccountsController)
    fake_api.add(NAMESPACES, {"metadata": {"name": "team"}, "status": {"phase": "Active"}})
    writes = await fake_api.run(sa, "team")
    assert [(c.method, c.path) for c in writes] == [("POST", "/api/v1/namespaces/team/serviceaccounts")]
    assert writes[0].body["metadata"] == {"name": "default", "namespace": "team"}
    assert await fake_api.run(sa, "team") == []  # the informer shows it now


async def test_no_account_for_a_terminating_namespace_and_a_lost_race_is_fine(fake_api):
    sa = fake_api.build(ServiceAccountsController)
    fake_api.add(NAMESPACES, {"metadata": {"name": "going", "deletionTimestamp": BEAT},
                              "status": {"phase": "Terminating"}},
                 {"metadata": {"name": "raced"}, "status": {"phase": "Active"}})
    assert await fake_api.run(sa, "going") == []
    fake_api.fake.fail("POST", "/api/v1/namespaces/raced/serviceaccounts", 409, "AlreadyExists")
    await fake_api.run(sa, "raced")  # someone else created it meanwhile: not an error
