"""DaemonSet controller, one reconcile at a time on the fake API."""
from sendo.client import kind
from sendo.controllers.daemonset import DaemonSetController, daemon_pod_spec, pinned_node, should_run

DS, PODS, NODES = kind("daemonsets", "apps"), kind("pods"), kind("nodes")
CRS = kind("controllerrevisions", "apps")
NS = "default"
POD_URL = f"/api/v1/namespaces/{NS}/pods"
CR_URL = f"/apis/apps/v1/namespaces/{NS}/controllerrevisions"


def daemonset(image="a", strategy=None, node_selector=None, **spec):
    return {"metadata": {"name": "agent", "namespace": NS, "uid": "uid-agent", "generation": 1,
                         "annotations": {"deprecated.daemonset.template.generation": "1"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": image}],
                                           **({"nodeSelector": node_selector} if node_selector else {})}},
                     **spec}}


def node(name, labels=None, taints=None, unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable}}


def daemon_pod(name, node_name, hash_, ready=True, bound=True):
    spec = daemon_pod_spec({"containers": [{"name": "c", "image": "x"}]}, node_name)
    if bound:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "agent", "controller-revision-hash": hash_},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                              "uid": "uid-agent", "controller": True}]},
            "spec": spec,
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_eligibility_follows_selectors_taints_and_the_added_tolerations():
    tspec = {"nodeSelector": {"disk": "ssd"}, "containers": []}
    assert should_run(tspec, node("a", {"disk": "ssd"}), False)
    assert not should_run(tspec, node("b", {"disk": "hdd"}), False)
    plain = {"containers": []}
    # the tolerations Kubernetes adds: cordoned, not-ready and disk-pressure nodes keep daemons
    assert should_run(plain, node("c", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
                      False)
    assert should_run(plain, node("d", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]), False)
    assert should_run(plain, node("e", taints=[{"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}]),
                      False)
    gpu = node("f", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])
    assert not should_run(plain, gpu, False)
    assert should_run(plain, gpu, True)  # a NoSchedule taint does not remove a running daemon
    assert should_run({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes"}]}, gpu, False)
    assert not should_run(plain, node("g", taints=[{"key": "dedicated", "effect": "NoExecute"}]), True)
    affinity = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}
    assert should_run(affinity, node("h", {"zone": "z1"}), False)
    assert not should_run(affinity, node("i", {"zone": "z2"}), False)


def test_daemon_pods_are_pinned_by_affinity_on_the_node_name():
    spec = daemon_pod_spec({"containers": [], "tolerations": [{"key": "x", "operator": "Exists"}]}, "n1")
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    keys = [(t.get("key"), t.get("effect")) for t in spec["tolerations"]]
    assert keys[0] == ("x", None) and ("node.kubernetes.io/unreachable", "NoExecute") in keys
    assert "nodeName" not in spec  # the scheduler binds it
    assert pinned_node({"spec": spec}) == "n1"


async def test_one_pod_per_eligible_node_with_a_revision_and_nothing_twice(fake_api):
    dsc = fake_api.build(DaemonSetController)
    fake_api.add(NODES, node("n1"), node("n2"), node("n3", taints=[{"key": "k", "effect": "NoSchedule"}]))
    fake_api.add(DS, daemonset())
    await dsc.reconcile(f"{NS}/agent")
    writes = fake_api.fake.writes()
    (cr,) = [c for c in writes if c.path == CR_URL]
    assert cr.body["revision"] == 1 and cr.body["data"]["spec"]["template"]["$patch"] == "replace"
    assert cr.body["metadata"]["labels"]["app"] == "agent"
    pods = [c.body for c in writes if c.path == POD_URL and c.method == "POST"]
    assert sorted(pinned_node(p) for p in pods) == ["n1", "n2"]
    for p in pods:
        assert p["metadata"]["labels"]["controller-revision-hash"] == cr.body["metadata"]["labels"][
            "controller-revision-hash"]
        assert p["metadata"]["labels"]["pod-template-generation"] == "1"
        assert p["metadata"]["ownerReferences"][0]["uid"] == "uid-agent"
    # the pod watch is behind: the next pass creates nothing again
    again = await fake_api.run(dsc, f"{NS}/agent", sync=(DS, CRS, NODES))
    assert not [c for c in again if c.method == "POST"]


async def test_status_counts_nodes_and_a_new_node_gets_a_pod(fake_api):
    dsc = fake_api.build(DaemonSetController)
    fake_api.add(NODES, node("n1"))
    fake_api.add(DS, daemonset())
    await dsc.reconcile(f"{NS}/agent")
    h = fake_api.fake.writes()[0].body["metadata"]["labels"]["controller-revision-hash"]
    for o in list(fake_api.fake.objects):
        if o.startswith(POD_URL):
            del fake_api.fake.objects[o]
    fake_api.add(PODS, daemon_pod("agent-a", "n1", h))
    await fake_api.run(dsc, f"{NS}/agent")
    status = fake_api.fake.objects[f"/apis/apps/v1/namespaces/{NS}/daemonsets/agent"]["status"]
    assert {k: status.get(k) for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                       "updatedNumberScheduled", "numberAvailable", "numberMisscheduled",
                                       "observedGeneration")} == \
        {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1,
         "numberAvailable": 1, "numberMisscheduled": 0, "observedGeneration": 1}
    assert await fake_api.run(dsc, f"{NS}/agent") == []
    fake_api.add(NODES, node("n2"))
    writes = await fake_api.run(dsc, f"{NS}/agent")
    assert [pinned_node(c.body) for c in writes if c.method == "POST" and c.path == POD_URL] == ["n2"]


async def test_pods_on_nodes_that_no_longer_match_are_deleted(fake_api):
    dsc = fake_api.build(DaemonSetController)
    fake_api.add(NODES, node("n1", {"role": "edge"}), node("n2"))
    fake_api.add(DS, daemonset(node_selector={"role": "edge"}))
    await dsc.reconcile(f"{NS}/agent")
    h = [c for c in fake_api.fake.writes() if c.path == CR_URL][0].body["metadata"]["labels"][
        "controller-revision-hash"]
    fake_api.add(PODS, daemon_pod("agent-x", "n2", h))
    writes = await fake_api.run(dsc, f"{NS}/agent")
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/agent-x"]


async def test_rolling_update_replaces_within_max_unavailable_and_on_delete_waits(fake_api):
    dsc = fake_api.build(DaemonSetController)
    fake_api.add(NODES, node("n1"), node("n2"), node("n3"))
    fake_api.add(PODS, daemon_pod("agent-1", "n1", "old"), daemon_pod("agent-2", "n2", "old"),
                 daemon_pod("agent-3", "n3", "old", ready=False))
    fake_api.add(DS, daemonset(image="b"))
    await dsc.reconcile(f"{NS}/agent")
    deleted = sorted(c.path for c in fake_api.fake.writes() if c.method == "DELETE")
    # the unavailable old pod goes for free and uses up the one unavailable slot: no more
    assert deleted == [f"{POD_URL}/agent-3"]

    ondelete = fake_api.build(DaemonSetController)
    fake_api.add(DS, daemonset(image="b", strategy={"type": "OnDelete"}))
    fake_api.add(PODS, daemon_pod("agent-3", "n3", "old"))
    writes = await fake_api.run(ondelete, f"{NS}/agent")
    assert not [c for c in writes if c.method == "DELETE"]


async def test_max_surge_starts_the_new_pod_before_the_old_one_goes(fake_api):
    dsc = fake_api.build(DaemonSetController)
    fake_api.add(NODES, node("n1"))
    fake_api.add(PODS, daemon_pod("agent-old", "n1", "old"))
    fake_api.add(DS, daemonset(image="b", strategy={"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}))
    await dsc.reconcile(f"{NS}/agent")
    writes = fake_api.fake.writes()
    assert [pinned_node(c.body) for c in writes if c.method == "POST" and c.path == POD_URL] == ["n1"]
    assert not [c for c in writes if c.method == "DELETE"]
    new = [c.body for c in writes if c.method == "POST" and c.path == POD_URL][0]
    name = next(p for p in fake_api.fake.objects if p.startswith(POD_URL + "/agent-") and "old" not in p)
    fake_api.fake.objects[name]["spec"]["nodeName"] = "n1"
    fake_api.fake.objects[name]["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert new["metadata"]["labels"]["controller-revision-hash"] != "old"
    writes = await fake_api.run(dsc, f"{NS}/agent")
    assert [c.path for c in writes if c.method == "DELETE"] == [f"{POD_URL}/agent-old"]
