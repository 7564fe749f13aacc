"""OwnerIndex: a pod that leaves its controller (its labels or owner reference changed, as a
function's warm worker does when it is claimed) queues that controller again, so a
DaemonSet or ReplicaSet replaces it, as Kubernetes' updatePod does."""
from sendo.controllers.base import owner_key
from sendo.controllers.podutil import OwnerIndex


def pod(owner: str | None) -> dict:
    refs = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": owner, "uid": f"uid-{owner}",
             "controller": True}] if owner else []
    return {"metadata": {"namespace": "kube-system", "name": "w1", "ownerReferences": refs}}


def test_a_released_pod_queues_its_old_owner_and_leaves_its_index():
    index, queued = OwnerIndex("DaemonSet"), []
    on_event = index.handler(lambda o: queued.append(owner_key(o, "DaemonSet")))
    on_event("ADDED", pod("pool"), None)
    assert queued == ["kube-system/pool"] and len(index.owned("uid-pool")) == 1
    queued.clear()
    on_event("MODIFIED", pod(None), pod("pool"))
    assert "kube-system/pool" in queued and index.owned("uid-pool") == []


def test_an_unchanged_owner_is_queued_once():
    index, queued = OwnerIndex("DaemonSet"), []
    on_event = index.handler(lambda o: queued.append(owner_key(o, "DaemonSet")))
    on_event("MODIFIED", pod("pool"), pod("pool"))
    assert queued == ["kube-system/pool"]
