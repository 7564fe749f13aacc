"""The agent against a real API server, in one event loop: what a user sees through the
API (pods/log, status, Events) when the agent runs their pods."""
from __future__ import annotations

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
