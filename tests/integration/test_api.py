"""The API server's shared semantics, over real HTTPS against an in-process server."""
import asyncio
import ssl

import aiohttp
import orjson
import pytest

from sendo.client import ApiError, kind

CM = kind("configmaps")
PODS = kind("pods")
DEPLOY = kind("deployments", "apps")
NODES = kind("nodes")


def cm(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": data}


def deployment(name, replicas=1, **extra):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]}}}}
    d["spec"].update(extra)
    return d


async def raw(server, method, url, body=None, token=True, ctype="application/json"):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {server.admin_token}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, server.cfg.url + url, data=body, headers=headers) as r:
            return r.status, orjson.loads(await r.read() or b"null")


async def test_requests_without_a_valid_token_get_401(server):
    status, body = await raw(server, "GET", "/api/v1/namespaces", token=False)
    assert status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    status, _ = await raw(server, "GET", "/version", token=False)
    assert status == 200


async def test_create_get_and_server_set_metadata(client):
    obj = await client.create(CM, cm("a", k="v"))
    m = obj["metadata"]
    assert m["uid"] and m["creationTimestamp"] and int(m["resourceVersion"]) > 0
    got = await client.get(CM, "default", "a")
    assert got == obj


async def test_errors_are_status_objects_with_codes(client, server):
    with pytest.raises(ApiError) as e:
        await client.get(CM, "default", "missing")
    assert e.value.status == 404 and e.value.body["reason"] == "NotFound"
    assert e.value.body["message"] == 'configmaps "missing" not found'
    await client.create(CM, cm("dup"))
    with pytest.raises(ApiError) as e:
        await client.create(CM, cm("dup"))
    assert e.value.status == 409 and e.value.body["reason"] == "AlreadyExists"
    status, body = await raw(server, "POST", "/api/v1/namespaces/default/configmaps", b"{not json")
    assert status == 400 and body["reason"] == "BadRequest"
    with pytest.raises(ApiError) as e:
        await client.create(CM, {**cm("x"), "metadata": {"name": "x", "namespace": "nope"}})
    assert e.value.status == 404 and "nope" in e.value.body["message"]


async def test_invalid_deployment_is_422_naming_the_field_and_not_stored(client):
    d = deployment("bad")
    d["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(ApiError) as e:
        await client.create(DEPLOY, d)
    assert e.value.status == 422
    assert "spec.template.spec.containers: Required value" in e.value.body["message"]
    fields = [c["field"] for c in e.value.body["details"]["causes"]]
    assert "spec.template.spec.containers" in fields
    assert await client.get_or_none(DEPLOY, "default", "bad") is None


async def test_stale_update_conflicts(client):
    a = await client.create(CM, cm("c", v="1"))
    a2 = dict(a, data={"v": "2"})
    await client.update(CM, a2)
    stale = dict(a, data={"v": "3"})
    with pytest.raises(ApiError) as e:
        await client.update(CM, stale)
    assert e.value.status == 409 and e.value.body["reason"] == "Conflict"


async def test_noop_update_keeps_resource_version(client):
    a = await client.create(CM, cm("n", v="1"))
    b = await client.update(CM, a)
    assert b["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]


async def test_label_and_field_selectors(client):
    for name, labels in (("s1", {"app": "a", "tier": "web"}), ("s2", {"app": "b"}), ("s3", {"tier": "db"})):
        o = cm(name)
        o["metadata"]["labels"] = labels
        await client.create(CM, o)

    async def names(**q):
        return sorted(i["metadata"]["name"] for i in (await client.list(CM, "default", **q))["items"])
    assert await names(labelSelector="app=a") == ["s1"]
    assert await names(labelSelector="app!=a") == ["s2", "s3"]
    assert await names(labelSelector="app in (a,b)") == ["s1", "s2"]
    assert await names(labelSelector="app notin (a)") == ["s2", "s3"]
    assert await names(labelSelector="tier") == ["s1", "s3"]
    assert await names(labelSelector="!tier") == ["s2"]
    assert await names(fieldSelector="metadata.name=s2") == ["s2"]
    assert await names(fieldSelector="metadata.name!=s2") == ["s1", "s3"]


async def test_pagination_is_consistent_at_one_revision(client):
    for i in range(5):
        await client.create(CM, cm(f"p{i}"))
    first = await client.list(CM, "default", limit=2)
    assert len(first["items"]) == 2 and first["metadata"]["continue"]
    await client.create(CM, cm("p9"))  # written after the first page: not in this list
    seen = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await client.list(CM, "default", limit=2, **{"continue": token})
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"p{i}" for i in range(5)]


async def test_watch_from_resource_version_with_selector(client):
    a = await client.create(CM, {**cm("w1"), "metadata": {"name": "w1", "namespace": "default",
                                                          "labels": {"x": "1"}}})
    rv = a["metadata"]["resourceVersion"]
    events = []

    async def consume():
        async for typ, obj in client.watch(CM, "default", resourceVersion=rv, labelSelector="x=1"):
            events.append((typ, obj["metadata"]["name"]))
            if len(events) == 3:
                return
    task = asyncio.create_task(consume())
    await client.create(CM, {**cm("w2"), "metadata": {"name": "w2", "namespace": "default", "labels": {"x": "1"}}})
    await client.create(CM, cm("other"))
    await client.patch(CM, "default", "w1", {"metadata": {"labels": {"x": "2"}}})  # stops matching
    await client.patch(CM, "default", "w2", {"data": {"k": "v"}})
    await asyncio.wait_for(task, 10)
    assert events == [("ADDED", "w2"), ("DELETED", "w1"), ("MODIFIED", "w2")]


async def test_watch_without_resource_version_starts_with_current_state(client):
    await client.create(CM, cm("e1"))
    seen = []
    async for typ, obj in client.watch(CM, "default", timeoutSeconds=1):
        seen.append((typ, obj["metadata"]["name"]))
    assert ("ADDED", "e1") in seen


async def test_patch_types(client):
    await client.create(DEPLOY, deployment("pt"))
    d = await client.patch(DEPLOY, "default", "pt", {"spec": {"replicas": 3}})
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 2
    d = await client.patch(DEPLOY, "default", "pt", [{"op": "replace", "path": "/spec/replicas", "value": 2}],
                           type="json")
    assert d["spec"]["replicas"] == 2
    d = await client.patch(DEPLOY, "default", "pt", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "y"}]}}}}, type="strategic")
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "y" and c["command"] == ["true"]  # merged by name, not replaced
    with pytest.raises(ApiError) as e:
        await client.patch(DEPLOY, "default", "pt", [{"op": "test", "path": "/spec/replicas", "value": 9}],
                           type="json")
    assert e.value.status == 422


async def test_status_subresource_only_touches_status(client):
    d = await client.create(DEPLOY, deployment("st"))
    d["spec"]["replicas"] = 7
    d["status"] = {"replicas": 5}
    after = await client.update_status(DEPLOY, d)
    assert after["status"] == {"replicas": 5} and after["spec"]["replicas"] == 1
    d = dict(after, spec={**after["spec"], "replicas": 2}, status={"replicas": 0})
    after = await client.update(DEPLOY, d)
    assert after["status"] == {"replicas": 5} and after["spec"]["replicas"] == 2


async def test_scale_subresource(client):
    await client.create(DEPLOY, deployment("sc", 2))
    s = await client.get(DEPLOY, "default", "sc", "scale")
    assert s["kind"] == "Scale" and s["spec"]["replicas"] == 2 and s["status"]["selector"] == "app=sc"
    s = await client.patch(DEPLOY, "default", "sc", {"spec": {"replicas": 4}}, sub="scale")
    assert s["spec"]["replicas"] == 4
    assert (await client.get(DEPLOY, "default", "sc"))["spec"]["replicas"] == 4
    with pytest.raises(ApiError) as e:
        await client.patch(DEPLOY, "default", "sc", {"spec": {"replicas": -1}}, sub="scale")
    assert e.value.status == 422


async def test_generate_name(client):
    o = cm("")
    o["metadata"] = {"generateName": "gen-", "namespace": "default"}
    a = await client.create(CM, o)
    assert a["metadata"]["name"].startswith("gen-") and len(a["metadata"]["name"]) == 9


async def test_finalizers_hold_deletion_until_removed(client):
    o = cm("fin")
    o["metadata"]["finalizers"] = ["example.com/hold"]
    await client.create(CM, o)
    await client.delete(CM, "default", "fin")
    held = await client.get(CM, "default", "fin")
    assert held["metadata"]["deletionTimestamp"]
    await client.patch(CM, "default", "fin", {"metadata": {"finalizers": None}})
    assert await client.get_or_none(CM, "default", "fin") is None


def pod(name, node=None):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
         "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}
    if node:
        p["spec"]["nodeName"] = node
    return p


async def test_binding_assigns_once(client):
    await client.create(PODS, pod("b1"))
    await client.bind("default", "b1", "n1")
    p = await client.get(PODS, "default", "b1")
    assert p["spec"]["nodeName"] == "n1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    with pytest.raises(ApiError) as e:
        await client.bind("default", "b1", "n2")
    assert e.value.status == 409


async def test_pod_deletion_is_graceful_when_bound(client):
    await client.create(PODS, pod("g1", node="n1"))
    await client.create(PODS, pod("g2"))
    await client.delete(PODS, "default", "g2")  # unbound: gone at once
    assert await client.get_or_none(PODS, "default", "g2") is None
    await client.delete(PODS, "default", "g1")  # bound: the agent must stop it first
    p = await client.get(PODS, "default", "g1")
    assert p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    # the agent posts the final status during the grace period: the pod stays (a status
    # update is not the last finalizer going) until the agent's delete with grace 0
    await client.patch(PODS, "default", "g1", {"status": {"phase": "Failed"}}, sub="status")
    p = await client.get(PODS, "default", "g1")
    assert p["status"]["phase"] == "Failed" and p["metadata"]["deletionTimestamp"]
    await client.delete(PODS, "default", "g1", gracePeriodSeconds=0)
    assert await client.get_or_none(PODS, "default", "g1") is None


async def test_nodes_get_distinct_pod_cidrs(client):
    a = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "na"}})
    b = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "nb"}})
    assert a["spec"]["podCIDR"] != b["spec"]["podCIDR"]
    assert a["spec"]["podCIDR"].startswith("127.")


async def test_discovery_lists_kinds_and_subresources(client):
    core = await client.request("GET", "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "pods/log", "pods/binding", "namespaces", "nodes", "configmaps"} <= names
    apps = await client.request("GET", "/apis/apps/v1")
    assert {"deployments", "deployments/scale", "replicasets"} <= {r["name"] for r in apps["resources"]}
    groups = await client.request("GET", "/apis")
    assert "apps" in {g["name"] for g in groups["groups"]}


async def test_table_output_for_kubectl(server):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Authorization": f"Bearer {server.admin_token}",
               "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(server.cfg.url + "/api/v1/namespaces", headers=headers) as r:
            t = orjson.loads(await r.read())
    assert t["kind"] == "Table"
    assert t["columnDefinitions"][0]["name"] == "Name"
    assert "default" in [row["cells"][0] for row in t["rows"]]
