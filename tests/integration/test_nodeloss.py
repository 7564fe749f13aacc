"""Node loss against a real API server: the DefaultTolerationSeconds admission with the
server's flags, and node lifecycle → taint eviction → pod GC working together."""
from __future__ import annotations

import asyncio

import pytest

from sendo.client import ApiError, Client, kind
from sendo.controlplane import ControlPlane, controller_options
from sendo.server import Server, ServerConfig, free_port
from conftest import wait_until
from test_nodelifecycle import condition, keep_renewing, make_node

NODES, PODS = kind("nodes"), kind("pods")


@pytest.fixture
async def short_server(tmp_path):
    """A server whose pods tolerate a lost node for 1 s (unreachable) / 7 s (not ready)."""
    s = Server(ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controllers=False,
                            default_unreachable_toleration_seconds=1, default_not_ready_toleration_seconds=7))
    await s.start()
    c = Client(s.cfg.url, s.admin_token, s.ca_pem)
    yield s, c
    await c.close()
    await s.stop()


def pod(name, node=None, tolerations=None):
    spec = {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}
    if node:
        spec["nodeName"] = node
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": name}, "spec": spec}


def defaults(not_ready, unreachable):
    return [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": not_ready},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": unreachable}]


async def test_pods_get_the_default_toleration_seconds_the_server_was_given(short_server):
    _, client = short_server
    created = await client.create(PODS, pod("plain"), "default")
    assert created["spec"]["tolerations"] == defaults(7, 1)
    forever = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    mine = await client.create(PODS, pod("mine", tolerations=[forever]), "default")
    assert mine["spec"]["tolerations"] == [forever, defaults(7, 1)[0]]
    # an update that leaves them out gets them back (no 422 for "removing" them)
    body = pod("plain")
    body["metadata"]["labels"] = {"x": "y"}
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    updated = await client.request("PUT", "/api/v1/namespaces/default/pods/plain", body=body)
    assert updated["spec"]["tolerations"] == defaults(7, 1)
    # dry-run shows what a create would store
    dry = await client.request("POST", "/api/v1/namespaces/default/pods", body=pod("dry"), params={"dryRun": "All"})
    assert dry["spec"]["tolerations"] == defaults(7, 1)


async def test_a_lost_nodes_pods_are_evicted_after_their_toleration_and_freed_when_the_node_goes(short_server):
    server, client = short_server
    cp = ControlPlane(server.cfg.url, server.admin_token, server.ca_pem,
                      "nodelifecycle,tainteviction,podgc", controller_options(node_monitor_grace_period=1.0))
    await make_node(client, "lost")
    await make_node(client, "alive")
    forever = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    await client.create(PODS, pod("default-tol", "lost"), "default")
    await client.create(PODS, pod("stays", "lost", tolerations=[forever]), "default")
    await client.create(PODS, pod("healthy", "alive"), "default")
    agent = asyncio.create_task(keep_renewing(client, "alive"))
    await cp.start()
    try:
        async def evicted():
            p = await client.get(PODS, "default", "default-tol")
            return p["metadata"].get("deletionTimestamp") and p
        p = await wait_until(evicted, timeout=60, what="pod with a 1 s toleration evicted from the lost node")
        assert condition(p, "DisruptionTarget")["reason"] == "DeletionByTaintManager"
        node = await client.get(NODES, None, "lost")
        assert condition(node, "Ready")["status"] == "Unknown"
        assert {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"} in [
            {k: t[k] for k in ("key", "effect")} for t in node["spec"]["taints"]]
        # the pod waits for its agent (it may still run behind a partition): not force-deleted.
        # Fence: pod GC (one worker, keys in order) force-deletes a pod of a node that never
        # existed, queued after the evicted pod's change
        await client.create(PODS, pod("ghost", "never-existed"), "default")

        async def ghost_gone():
            return await client.get_or_none(PODS, "default", "ghost") is None
        await wait_until(ghost_gone, timeout=60, what="pod of a missing node force-deleted")
        # the pod that tolerates the taint for ever stays, as does the one on the healthy node
        for name in ("stays", "healthy"):
            assert not (await client.get(PODS, "default", name))["metadata"].get("deletionTimestamp")
        assert (await client.get(PODS, "default", "default-tol"))["metadata"]["deletionTimestamp"]

        # the operator removes the lost machine: pod GC frees everything bound to it
        await client.delete(NODES, None, "lost")

        async def freed():
            names = {p["metadata"]["name"] for p in (await client.list(PODS, "default"))["items"]}
            return names == {"healthy"}
        await wait_until(freed, timeout=60, what="pods of the deleted node force-deleted")
    finally:
        agent.cancel()
        await asyncio.gather(agent, return_exceptions=True)
        await cp.stop()


async def test_a_bad_toleration_is_still_refused_with_the_field_named(short_server):
    _, client = short_server
    bad = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule",
           "tolerationSeconds": 5}
    with pytest.raises(ApiError) as e:
        await client.create(PODS, pod("bad", tolerations=[bad]), "default")
    assert e.value.status == 422
    assert any(c["field"] == "spec.tolerations[0].effect" for c in e.value.body["details"]["causes"])


# ----------------------------------------------------------------- an agent back after a partition

SLEEPER = "import time; time.sleep(120)"


def _alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_an_agent_back_stops_pods_replaced_or_deleted_meanwhile_before_it_reports_ready(server, client,
                                                                                             tmp_path):
    """While the agent was away its pod `moved` was force-deleted and made again on another
    node (same name, new uid) and `gone` was force-deleted: the agent that comes back stops
    both before its node says Ready; `kept`, still bound to it, keeps its process."""
    import sys
    from sendo.agent.agent import Agent, AgentConfig

    def config():
        return AgentConfig(server=server.cfg.url, token=server.node_token, node_name="node-a",
                           data_dir=str(tmp_path / "agent"), ca_pem=server.ca_pem, dns="", service_proxy=False,
                           ingress=False)

    def sleeper(name, node="node-a"):
        return {"metadata": {"name": name}, "spec": {
            "nodeName": node, "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", SLEEPER]}]}}

    first = Agent(config())
    await first.start()
    second = None
    pids: dict[str, int] = {}
    try:
        for name in ("moved", "gone", "kept"):
            await client.create(PODS, sleeper(name), "default")
        for name in ("moved", "gone", "kept"):
            async def started(name=name):
                w = first.find_worker("default", name)
                c = w and w.containers.get("main")
                return c and c.handle and c.handle.pid
            pids[name] = await wait_until(started, 30, what=f"{name} started")
        await first.stop()  # the agent goes; its pods keep running (as after kill -9)
        assert all(_alive(pid) for pid in pids.values())
        for name in ("moved", "gone"):
            await client.delete(PODS, "default", name, gracePeriodSeconds=0)
        replacement = await client.create(PODS, sleeper("moved", node="node-b"), "default")

        second = Agent(config())
        at_ready = {}
        post_ready = second._post_ready

        async def spy():
            at_ready.update({name: _alive(pid) for name, pid in pids.items()})
            await post_ready()
        second._post_ready = spy
        await second.start()
        assert at_ready == {"moved": False, "gone": False, "kept": True}
        w = second.find_worker("default", "kept")
        assert w is not None and w.containers["main"].handle.pid == pids["kept"]  # adopted, not restarted
        assert second.find_worker("default", "moved") is None  # the new one is node-b's
        assert (await client.get(PODS, "default", "moved"))["metadata"]["uid"] == replacement["metadata"]["uid"]
    finally:
        if second is not None:
            await second.stop(stop_pods=True)
        import psutil
        for pid in pids.values():  # whatever a failed run left, by PID
            if _alive(pid):
                psutil.Process(pid).kill()
