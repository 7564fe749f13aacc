"""The in-process transport (client/local.py) that `sendo up`'s agent uses to reach the API
server in its own process: the same answers, authentication and authorization as over
HTTPS, and watches that end on both sides when the client leaves."""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

from sendo.agent.agent import Agent, AgentConfig
from sendo.client import ApiError, Client, kind
from sendo.client.local import LocalTransport
from sendo.wire import NODE_HEADER
from tests.conftest import wait_until

CM, PODS, EVENTS = kind("configmaps"), kind("pods"), kind("events")


def local(server, token: str, **kw) -> Client:
    return Client(server.cfg.url, token, server.ca_pem, transport=LocalTransport(server.api.app), **kw)


async def test_same_answers_and_errors_as_over_https(server, client):
    c = local(server, server.admin_token)
    made = await c.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                               "data": {"k": "v"}}, "default")
    assert made["metadata"]["resourceVersion"]
    over_https = await client.get(CM, "default", "a")
    assert await c.get(CM, "default", "a") == over_https
    listed = await c.list(CM, "default", fieldSelector="metadata.name=a")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    with pytest.raises(ApiError) as e:
        await c.get(CM, "default", "missing")
    assert e.value.status == 404 and e.value.body["kind"] == "Status" and e.value.body["reason"] == "NotFound"
    with pytest.raises(ApiError) as e:  # bad input: the same 422 naming the field
        await c.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}, "default")
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "metadata.name"


async def test_no_back_door_the_token_and_the_authorizer_still_decide(server):
    with pytest.raises(ApiError) as e:
        await local(server, "not-a-token").list(CM, "default")
    assert e.value.status == 401
    node = local(server, server.node_token, headers={NODE_HEADER: "node-a"})
    with pytest.raises(ApiError) as e:  # a node may not read every Secret (node authorizer)
        await node.list(kind("secrets"), "default")
    assert e.value.status == 403


async def test_a_watch_streams_events_and_ends_on_both_sides(server):
    c = local(server, server.admin_token)
    watchers = server.api.metrics.watchers
    before = sum(watchers.values())
    seen: list[tuple[str, str]] = []

    async def watch():
        async for typ, obj in c.watch(CM, "default", resourceVersion="0"):
            seen.append((typ, obj["metadata"]["name"]))
            if len(seen) == 2:
                return
    w = asyncio.create_task(watch())
    await wait_until(lambda: sum(watchers.values()) == before + 1, 30, what="the watch open on the server")
    for name in ("w1", "w2"):
        await c.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}, "default")
    await asyncio.wait_for(w, 30)
    assert seen == [("ADDED", "w1"), ("ADDED", "w2")]
    # the client left: the server's stream ends too (nothing keeps writing to nobody)
    await wait_until(lambda: sum(watchers.values()) == before, 30, what="the server-side watch to end")
    with pytest.raises(ApiError) as e:
        async for _ in c.watch(CM, "default", resourceVersion="not-a-number"):
            pass
    assert e.value.status in (400, 410, 422)


async def test_agent_runs_a_pod_with_its_token_through_the_local_transport(server, client, tmp_path):
    """A pod with a ServiceAccount token, started by an agent whose every request (watches
    included) goes through the app in this process: Running, its Started event, its token."""
    await client.create(kind("serviceaccounts"), {"apiVersion": "v1", "kind": "ServiceAccount",
                                                  "metadata": {"name": "default"}}, "default")
    a = Agent(AgentConfig(server=server.cfg.url, token=server.node_token, node_name="node-a",
                          data_dir=str(tmp_path / "agent"), ca_pem=server.ca_pem, dns="", service_proxy=False,
                          ingress=False, local_api=server.api.app))
    assert a.client.transport is not None
    await a.start()
    try:
        code = "import os,time; assert os.path.exists(os.environ['SENDO_SERVICEACCOUNT_DIR']); time.sleep(60)"
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                   "spec": {"nodeName": "node-a", "terminationGracePeriodSeconds": 1,
                                            "containers": [{"name": "c", "image": "none",
                                                            "command": [sys.executable, "-c", code]}]}}, "default")

        async def running():
            p = await client.get(PODS, "default", "p")
            return (p.get("status") or {}).get("phase") == "Running"
        await wait_until(running, 60, what="pod p Running")

        async def started():
            evs = (await client.list(EVENTS, "default", fieldSelector="involvedObject.name=p"))["items"]
            return [e for e in evs if e["reason"] == "Started"]
        ev = (await wait_until(started, 30, what="the Started event"))[0]
        assert ev["source"]["component"] == "kubelet" and ev["source"].get("host") == "node-a"
        uid = (await client.get(PODS, "default", "p"))["metadata"]["uid"]
        e = a.identity.entries[uid]
        assert e.mounted is True and open(os.path.join(e.dir, "token")).read().count(".") == 2  # a JWT
        node = await client.get(kind("nodes"), None, "node-a")
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    finally:
        await a.stop(stop_pods=True)
