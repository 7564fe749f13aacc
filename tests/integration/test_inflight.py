"""Requests in flight: a full priority level answers 429 with Retry-After, one user cannot
take a level's whole room, the agents and system:masters are not starved by users — against
a real API server whose writes are held by a real admission webhook until the test lets go."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sendo.api.errors import APIError
from sendo.api.inflight import InflightLimit, long_running
from sendo.api.options import User
from sendo.client import Client, kind
from sendo.pki import issue_client_cert
from sendo.wire import NODE_HEADER
from tests.integration.test_rbac import CertClient, tls_dir
from tests.waiting import wait_until
from tests.webhook_server import WebhookServer, configuration, hook

CMS = kind("configmaps")
VWC = kind("validatingwebhookconfigurations", "admissionregistration.k8s.io")


def test_levels_shares_and_long_running_requests():
    limit = InflightLimit(readonly=4, mutating=2, share=0.5)
    alice, bob = User("alice", ["system:authenticated"]), User("bob", ["system:authenticated"])
    node = User("system:node:n1", ["system:nodes", "system:authenticated"])
    admin = User("admin", ["system:masters"])
    first = limit.acquire(alice, "POST")
    with pytest.raises(APIError) as e:
        limit.acquire(alice, "PATCH")  # alice's fair share of 2 writes is 1
    assert e.value.code == 429 and "fair share" in e.value.message
    held = [limit.acquire(alice, "GET") for _ in range(2)]  # reads are counted apart
    second = limit.acquire(bob, "DELETE")
    with pytest.raises(APIError, match="priority level 'workload'"):
        limit.acquire(User("carol", []), "POST")  # the workload level is full
    nodes = [limit.acquire(node, "POST"), limit.acquire(node, "PUT")]  # the agents' own room
    assert limit.acquire(admin, "POST") is None  # exempt: nothing to give back
    for t in [first, second, *held, *nodes]:
        limit.release(t)
    assert limit.in_flight() == {}
    assert long_running("GET", "/api/v1/pods", {"watch": "true"})
    assert long_running("GET", "/api/v1/namespaces/d/pods/p/log", {"follow": "1"})
    assert long_running("POST", "/api/v1/namespaces/d/pods/p/exec", {})
    assert not long_running("GET", "/api/v1/namespaces/d/pods/p/log", {})


@pytest.fixture
def webhook(tmp_path):
    w = WebhookServer(tmp_path / "webhook-tls")
    yield w
    w.stop()


def cm(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}}


async def test_a_full_level_answers_429_and_others_keep_their_room(server, client, webhook, tmp_path):
    server.api.inflight = InflightLimit(readonly=20, mutating=2, share=0.5)
    await client.create(kind("clusterrolebindings", "rbac.authorization.k8s.io"), {
        "metadata": {"name": "team-edit"}, "subjects": [{"kind": "Group", "name": "team"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}})
    users = {}
    for name in ("alice", "bob", "carol"):
        cert, key = issue_client_cert(tls_dir(server), name, ["team"])
        (tmp_path / name).mkdir()
        users[name] = CertClient(server, cert, key, tmp_path / name)
    node = Client(server.cfg.url, server.node_token, server.ca_pem, headers={NODE_HEADER: "n1"})
    held: list[asyncio.Task] = []
    try:
        cc = {"url": webhook.url("/hold"), "caBundle": webhook.ca_bundle}
        await client.create(VWC, configuration("ValidatingWebhookConfiguration", "hold", [
            hook("hold.test.io", cc, ["configmaps"], operations=("CREATE",), timeoutSeconds=30,
                 failurePolicy="Ignore", namespaceSelector={"matchLabels": {"hold": "yes"}})]))
        await client.patch(kind("namespaces"), None, "default", {"metadata": {"labels": {"hold": "yes"}}})

        async def hold(who: str, name: str) -> None:
            seen = len(webhook.reviews)
            held.append(asyncio.create_task(users[who].create(CMS, cm(name), "default")))
            await wait_until(lambda: len(webhook.reviews) > seen, 60, what=f"{who}'s write held by the webhook")

        await hold("alice", "a1")
        status, body, headers = await post_as(users["alice"], server, cm("a2"))
        assert status == 429 and headers.get("Retry-After") == "1", (status, body)
        assert body["reason"] == "TooManyRequests" and "alice" in body["message"], body
        await hold("bob", "b1")  # bob still has his share
        status, body, _ = await post_as(users["carol"], server, cm("c1"))
        assert status == 429 and "workload" in body["message"], body
        # the agents and the admin are not starved by the users
        await node.create(kind("events"), {"metadata": {"name": "e1", "namespace": "default"},
                                           "involvedObject": {"kind": "Node", "name": "n1"}, "reason": "Test"})
        assert (await client.list(CMS, "default"))["kind"] == "ConfigMapList"
        webhook.release()
        await asyncio.gather(*held)
        await users["carol"].create(CMS, cm("c1"), "default")  # the room is back
        assert server.api.inflight.in_flight() == {}
    finally:
        webhook.release()
        await asyncio.gather(*held, return_exceptions=True)
        for c in (*users.values(), node):
            await c.close()


async def post_as(c: CertClient, server, body: dict) -> tuple[int, dict, dict]:
    """A create through the raw session: the status, Status body and headers of a refusal."""
    url = f"{server.cfg.url}/api/v1/namespaces/default/configmaps"
    async with c.session.post(url, json=body) as r:
        try:
            parsed = await r.json(content_type=None)
        except aiohttp.ContentTypeError:
            parsed = {}
        return r.status, parsed, dict(r.headers)
