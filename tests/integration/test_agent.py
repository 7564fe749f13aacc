"""The agent against a real API server, in one event loop: what a user sees through the
API (pods/log, status, Events) when the agent runs their pods."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from sendo.agent.agent import Agent, AgentConfig
from sendo.client import ApiError, kind
from tests.conftest import wait_until

PY = sys.executable


@pytest.fixture
async def agent(server, tmp_path):
    a = Agent(AgentConfig(server=server.cfg.url, token=server.node_token, node_name="node-a",
                          data_dir=str(tmp_path / "agent"), ca_pem=server.ca_pem, dns="", service_proxy=False,
                          ingress=False, backoff_base=0.5, backoff_max=1.0))
    await a.start()
    yield a
    await a.stop(stop_pods=True)


def pod(name: str, code: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "node-a", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "python:3.11", "command": [PY, "-c", code]}],
                     **spec}}


async def running(client, name: str) -> dict:
    async def is_running():
        p = await client.get(kind("pods"), "default", name)
        return (p.get("status") or {}).get("phase") == "Running"
    await wait_until(is_running, 30, what=f"pod {name} Running")
    return await client.get(kind("pods"), "default", name)


# Prints a line, then a second one once a file `go` exists in its working dir (the pod's dir).
TALKER = """
import os, time
print("first", flush=True)
deadline = time.time() + 60
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.05)
print("second", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("spelling", ["True", "1", "t"])
async def test_pods_log_follow_accepts_go_bool_spellings(agent, client, spelling):
    """The official Python client sends follow=True: it must follow, not return at once."""
    await client.create(kind("pods"), pod("talker", TALKER), "default")
    await running(client, "talker")
    url = f"{client.server}/api/v1/namespaces/default/pods/talker/log"
    async with client.session.get(url, params={"follow": spelling}) as resp:
        assert resp.status == 200
        seen = b""
        while b"first" not in seen:
            seen += await resp.content.readany()
        assert not resp.content.at_eof()
        w = agent.find_worker("default", "talker")
        open(os.path.join(agent.pods_dir, w.uid, "go"), "w").close()
        while b"second" not in seen:
            chunk = await resp.content.readany()
            assert chunk, f"the log stream ended before the second line: {seen!r}"
            seen += chunk
    assert seen.splitlines() == [b"first", b"second"]


@pytest.mark.parametrize("param,value", [("follow", "yes"), ("previous", "Nope"), ("tailLines", "abc"),
                                         ("limitBytes", "0"), ("sinceSeconds", "1_0")])
async def test_pods_log_refuses_bad_values_with_400(agent, client, param, value):
    await client.create(kind("pods"), pod("talker", TALKER), "default")
    await running(client, "talker")
    with pytest.raises(ApiError) as e:
        await client.request("GET", "/api/v1/namespaces/default/pods/talker/log", params={param: value})
    assert e.value.status == 400, e.value.body
    assert param in str(e.value.body)


RUNTIME_CLASSES = kind("runtimeclasses", "node.k8s.io")
SLEEPER = "import time; time.sleep(60)"


async def events_of(client, name: str) -> list[dict]:
    evs = (await client.list(kind("events"), "default"))["items"]
    return [e for e in evs if e["involvedObject"].get("name") == name]


async def waiting(client, name: str) -> dict:
    st = (await client.get(kind("pods"), "default", name)).get("status") or {}
    return ((st.get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}


async def test_the_agent_creates_a_runtime_class_per_runtime(agent, client):
    rc = await client.get(RUNTIME_CLASSES, None, "process")
    assert rc["handler"] == "process"
    p = await running(client, (await client.create(kind("pods"), pod("plain", SLEEPER), "default"))["metadata"]["name"])
    assert p["status"]["containerStatuses"][0]["containerID"].startswith("process://")
    assert p["status"]["podIP"].startswith("127.")


async def test_an_unknown_runtime_class_is_an_event_and_a_waiting_reason_until_it_exists(agent, client):
    await client.create(kind("pods"), pod("picky", SLEEPER, runtimeClassName="fast"), "default")
    want = 'Failed to create pod sandbox: RuntimeClass "fast" not found'

    async def told() -> bool:
        return any(e["reason"] == "FailedCreatePodSandBox" and e["type"] == "Warning" and e["message"] == want
                   for e in await events_of(client, "picky"))
    await wait_until(told, 20, what="FailedCreatePodSandBox event")
    await wait_until(lambda: waiting(client, "picky"), 10, what="a waiting state")
    assert await waiting(client, "picky") == {"reason": "ContainerCreating", "message": want}
    assert "podIP" not in (await client.get(kind("pods"), "default", "picky"))["status"]

    w = agent.find_worker("default", "picky")
    w.prepare_at = w.prepare_at + 3600  # far off: only the new RuntimeClass can wake it
    await client.create(RUNTIME_CLASSES, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                          "metadata": {"name": "fast"}, "handler": "process"})
    await running(client, "picky")  # at once, not after the back-off


async def test_a_runtime_class_whose_handler_this_node_lacks(agent, client):
    await client.create(RUNTIME_CLASSES, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                          "metadata": {"name": "vm"}, "handler": "kata"})
    await client.create(kind("pods"), pod("vm-pod", SLEEPER, runtimeClassName="vm"), "default")

    async def reason() -> str:
        return (await waiting(client, "vm-pod")).get("message", "")
    await wait_until(lambda: reason(), 20, what="a waiting message")
    assert await reason() == ('Failed to create pod sandbox: no runtime for handler "kata" (RuntimeClass "vm") is '
                              'configured on node node-a; it runs: process, docker')


async def test_runtime_class_validation(client):
    def rc(handler) -> dict:
        return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "x"}, "handler": handler}
    for bad, field in (("", "handler"), ("Not_A_Label", "handler"), (5, "handler")):
        with pytest.raises(ApiError) as e:
            await client.create(RUNTIME_CLASSES, rc(bad))
        assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == field
    await client.create(RUNTIME_CLASSES, rc("runc"))
    with pytest.raises(ApiError) as e:
        await client.patch(RUNTIME_CLASSES, None, "x", {"handler": "kata"})
    assert e.value.status == 422 and "field is immutable" in e.value.body["message"]


async def test_network_services_share_one_watch_per_kind(server, client, tmp_path):
    """Proxy, ingress and DNS read Services from the agent's one informer: one watch, and a
    Service created once is seen by all three."""
    a = Agent(AgentConfig(server=server.cfg.url, token=server.node_token, node_name="node-a",
                          data_dir=str(tmp_path / "agent"), ca_pem=server.ca_pem, dns="127.0.0.1:0",
                          ingress_http_port=0, ingress_https_port=0))
    await a.start()
    try:
        assert a.proxy.services is a.dns.services is a.ingress.services is a.services
        assert a.proxy.slices is a.dns.slices
        watched = [inf.r.plural for inf in a.informers._informers.values()]
        assert len(watched) == len(set(watched)), watched
        svc = await client.create(kind("services"), {"apiVersion": "v1", "kind": "Service",
                                                     "metadata": {"name": "shared"},
                                                     "spec": {"ports": [{"port": 80}]}}, "default")
        await wait_until(lambda: a.dns.services.get("default/shared") is not None, 10, what="the Service cached")
        links = a.base_env({**pod("x", ""), "metadata": {"name": "x", "namespace": "default", "uid": "u-x"}}, None)
        assert links["SHARED_SERVICE_HOST"] == svc["spec"]["clusterIP"]
    finally:
        await a.stop(stop_pods=True)


async def test_hollow_nodes_leases_are_owned_by_their_nodes(server, client):
    """Hollow nodes renew through the agent's lease code, so their Leases are owned by their
    Nodes (the garbage collector removes a deleted node's Lease) as a real node's are."""
    from sendo.agent.hollow import HollowNodes
    h = HollowNodes(server.cfg.url, server.admin_token, server.ca_pem, 2, prefix="ghost")
    await h.start()
    try:
        for name in h.names:
            node = await client.get(kind("nodes"), None, name)
            lease = await client.get(kind("leases", "coordination.k8s.io"), "kube-node-lease", name)
            assert lease["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]
            assert lease["spec"]["holderIdentity"] == name
    finally:
        await h.stop()


async def test_a_crashed_pod_worker_is_replaced_without_a_second_start(agent, client):
    """The replacement worker adopts what the crashed one left running: same process, no
    restart, and the pod stays Running."""
    p = await client.create(kind("pods"), pod("steady", SLEEPER), "default")
    await running(client, "steady")
    uid = p["metadata"]["uid"]
    old = agent.workers[uid]
    pid = old.containers["main"].handle.pid

    async def crash() -> None:
        raise RuntimeError("a bug in the worker")
    old._sync = crash
    old.wake.set()
    await wait_until(lambda: uid in agent.workers and agent.workers[uid] is not old, 15, what="a new worker")
    new = agent.workers[uid]
    await wait_until(lambda: new.containers["main"].handle is not None, 10, what="the container adopted")
    assert new.containers["main"].handle.pid == pid
    got = await client.get(kind("pods"), "default", "steady")
    assert got["status"]["phase"] == "Running"
    assert got["status"]["containerStatuses"][0]["restartCount"] == 0
    assert not new.task.done()


async def test_a_restarted_agent_listens_on_its_port_of_last_time(server, client, tmp_path):
    """No --port: the agent keeps the port it had (what a Prometheus job scrapes), and the
    Node's kubeletEndpoint says so; a port taken meanwhile moves it, and it keeps the new one."""
    import socket

    def new_agent() -> Agent:
        return Agent(AgentConfig(server=server.cfg.url, token=server.node_token, node_name="node-p",
                                 data_dir=str(tmp_path / "agent"), ca_pem=server.ca_pem, dns="",
                                 service_proxy=False, ingress=False))

    async def endpoint() -> int:
        return (await client.get(kind("nodes"), None, "node-p"))["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]

    ports = []
    for take_it in (False, True, False):
        a = new_agent()
        holder = socket.socket()
        if take_it:  # another process took the port while the agent was down
            holder.bind(("127.0.0.1", ports[-1]))
            holder.listen()
        try:
            await a.start()
            ports.append(a.port)
            assert await endpoint() == a.port
        finally:
            await a.stop(stop_pods=True)
            holder.close()
    assert ports[1] != ports[0] and ports[2] == ports[1], ports


# Ends with exit code 0 on SIGTERM, as a server that shuts down cleanly does.
GRACEFUL = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(60)
"""


async def test_a_deleted_pod_reports_its_final_status_before_it_goes(agent, client):
    """As the kubelet does: the containers stopped, the pod is posted Ready=False with its
    containers terminated and a terminal phase, and only then removed; a client waiting
    for Ready=False on a deleted pod (kr8s's test_pod_wait_ready) sees it."""
    await client.create(kind("pods"), pod("leaving", GRACEFUL), "default")
    p = await running(client, "leaving")
    seen: list[tuple[str, dict]] = []

    async def watch() -> None:
        async for typ, obj in client.watch(kind("pods"), "default", fieldSelector="metadata.name=leaving",
                                           resourceVersion=p["metadata"]["resourceVersion"]):
            seen.append((typ, obj))
            if typ == "DELETED":
                return
    task = asyncio.create_task(watch())
    try:
        await client.delete(kind("pods"), "default", "leaving", gracePeriodSeconds=10)
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    final = [o for t, o in seen if t == "MODIFIED" and o["metadata"].get("deletionTimestamp")
             and {c["type"]: c["status"] for c in o["status"]["conditions"]}.get("Ready") == "False"]
    assert final, json.dumps([(t, o["metadata"]["resourceVersion"], o["status"]) for t, o in seen])[-3000:]
    st = final[-1]["status"]
    terminated = st["containerStatuses"][0]["state"]["terminated"]
    assert st["phase"] == ("Succeeded" if terminated["exitCode"] == 0 else "Failed"), st
    assert seen[-1][0] == "DELETED"
