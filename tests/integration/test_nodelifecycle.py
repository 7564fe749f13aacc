"""Node lifecycle against a real API server: silent nodes go Unknown and get tainted."""
from __future__ import annotations

import asyncio

import pytest

from sendo.kinds.meta import micro_now, now_rfc3339
from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.nodelifecycle import NodeLifecycleController
from conftest import wait_until

NODES, PODS, LEASES = kind("nodes"), kind("pods"), kind("leases", "coordination.k8s.io")
UNREACHABLE = [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
               {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]


async def post_ready(client, name, status="True"):
    now = now_rfc3339()
    await client.patch(NODES, None, name, {"status": {"conditions": [
        {"type": "Ready", "status": status, "reason": "KubeletReady", "message": "sendo agent is posting ready status",
         "lastHeartbeatTime": micro_now(), "lastTransitionTime": now}]}}, type="strategic", sub="status")


async def make_node(client, name):
    await client.create(NODES, {"metadata": {"name": name}})
    await post_ready(client, name)
    await client.create(LEASES, {"metadata": {"name": name}, "spec": {
        "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}}, "kube-node-lease")


async def renew(client, name):
    await client.patch(LEASES, "kube-node-lease", name, {"spec": {"renewTime": micro_now()}})


async def keep_renewing(client, name, every=0.2, max_renewals=300):
    """An agent that is alive: bounded in count, cancelled by the test."""
    for _ in range(max_renewals):
        await renew(client, name)
        await asyncio.sleep(every)  # the agent's renew interval


def condition(obj, type_):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def condition_taints(node):
    return [{"key": t["key"], "effect": t["effect"]} for t in node["spec"].get("taints") or []
            if t["key"].startswith("node.kubernetes.io/")]


@pytest.fixture
async def lifecycle(client):
    inf = InformerFactory(client)
    c = NodeLifecycleController(client, inf, grace_seconds=1.0)
    await inf.start()
    await c.start()
    yield c
    await c.stop()
    await inf.stop()


async def test_silent_node_goes_unknown_and_back(client, lifecycle):
    await make_node(client, "dead")
    await make_node(client, "alive")
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "dead", "containers": [{"name": "c", "image": "x"}]}}
    await client.create(PODS, pod, "default")
    await client.patch(PODS, "default", "p", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}, type="strategic", sub="status")
    agent = asyncio.create_task(keep_renewing(client, "alive"))
    try:
        async def dead_unknown():
            node = await client.get(NODES, None, "dead")
            c = condition(node, "Ready")
            return c["status"] == "Unknown" and condition_taints(node) == UNREACHABLE
        await wait_until(dead_unknown, timeout=10, what="silent node marked Unknown and tainted")
        node = await client.get(NODES, None, "dead")
        ready = condition(node, "Ready")
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."

        async def pod_not_ready():
            return condition(await client.get(PODS, "default", "p"), "Ready")["status"] == "False"
        await wait_until(pod_not_ready, what="pod on the silent node marked not ready")

        # the node that kept renewing its lease is untouched
        alive = await client.get(NODES, None, "alive")
        assert condition(alive, "Ready")["status"] == "True" and condition_taints(alive) == []

        # the agent comes back: renews and posts Ready itself; the taint goes
        await renew(client, "dead")
        await post_ready(client, "dead")

        async def recovered():
            node = await client.get(NODES, None, "dead")
            return condition(node, "Ready")["status"] == "True" and condition_taints(node) == []
        await wait_until(recovered, what="taint removed after recovery")
    finally:
        agent.cancel()
        try:
            await agent
        except asyncio.CancelledError:
            pass


async def test_not_ready_node_is_tainted_and_other_taints_kept(client, lifecycle):
    await make_node(client, "well")
    agent = asyncio.create_task(keep_renewing(client, "well"))
    await make_node(client, "sick")
    await client.patch(NODES, None, "sick", {"spec": {"taints": [{"key": "dedicated", "value": "db",
                                                                  "effect": "NoSchedule"}]}})
    await post_ready(client, "sick", status="False")

    async def tainted():
        node = await client.get(NODES, None, "sick")
        return condition_taints(node) == [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                                          {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    try:
        await wait_until(tainted, what="not-ready taint")
    finally:
        agent.cancel()
        await asyncio.gather(agent, return_exceptions=True)
    node = await client.get(NODES, None, "sick")
    assert {"key": "dedicated", "value": "db", "effect": "NoSchedule"} in node["spec"]["taints"]


async def test_node_without_lease_or_status_goes_unknown_after_grace(client, lifecycle):
    await client.create(NODES, {"metadata": {"name": "never"}})

    async def unknown():
        node = await client.get(NODES, None, "never")
        c = condition(node, "Ready")
        # the only node: the whole zone is down, so no NoExecute (nothing is evicted)
        return c is not None and c["status"] == "Unknown" and condition_taints(node) == UNREACHABLE[:1]
    await wait_until(unknown, what="never-reporting node marked Unknown")
