"""Endpoints controller against a real API server: pods created through the API, their
status patched Ready / not Ready, and the Endpoints and EndpointSlices it keeps."""
from __future__ import annotations


import pytest

from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.endpoints import CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, EndpointsController
from conftest import wait_until

PODS, SVCS, EPS = kind("pods"), kind("services"), kind("endpoints")
SLICES = kind("endpointslices", "discovery.k8s.io")
NS = "default"


@pytest.fixture
async def ep_loop(client):
    inf = InformerFactory(client)
    c = EndpointsController(client, inf)
    await inf.start()
    await c.start()
    yield c
    await c.stop()
    await inf.stop()


async def make_pod(client, name, ip=None, ready=False, labels=None, node="node-1", ports=None):
    body = {"metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                                                      "ports": ports or [{"name": "http", "containerPort": 8080}]}]}}
    pod = await client.create(PODS, body, NS)
    if ip:
        await set_status(client, name, ip, ready)
    return pod


async def set_status(client, name, ip, ready):
    cond = [{"type": "Ready", "status": "True" if ready else "False"}]
    await client.patch(PODS, NS, name, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                                   "conditions": cond}}, sub="status")


async def make_svc(client, name="web", target=8080, selector=None, **spec):
    ports = spec.pop("ports", None) or [{"name": "http", "port": 80, "targetPort": target}]
    return await client.create(SVCS, {"metadata": {"name": name, "labels": {"tier": "front"}},
                                      "spec": {"selector": selector if selector is not None else {"app": "web"},
                                               "ports": ports, **spec}}, NS)


async def endpoints(client, name="web"):
    return await client.get_or_none(EPS, NS, name)


async def slices(client, name="web"):
    return (await client.list(SLICES, NS, labelSelector=f"{SERVICE_NAME_LABEL}={name}"))["items"]


def addr_sets(ep):
    ready, not_ready = set(), set()
    for ss in (ep or {}).get("subsets") or []:
        ready |= {a["ip"] for a in ss.get("addresses") or []}
        not_ready |= {a["ip"] for a in ss.get("notReadyAddresses") or []}
    return ready, not_ready


def slice_sets(items):
    ready, not_ready = set(), set()
    for s in items:
        for e in s.get("endpoints") or []:
            (ready if e["conditions"]["ready"] else not_ready).add(e["addresses"][0])
    return ready, not_ready


def expect(client, ready, not_ready, name="web"):
    """A condition: both the Endpoints and the slices show exactly these addresses."""
    async def cond():
        ep = await endpoints(client, name)
        return addr_sets(ep) == (set(ready), set(not_ready)) and \
            slice_sets(await slices(client, name)) == (set(ready), set(not_ready))
    return cond


async def test_endpoints_and_slices_follow_readiness(client, ep_loop):
    await make_svc(client)
    await make_pod(client, "web-a", "127.70.0.2", ready=True)
    await make_pod(client, "web-b", "127.70.0.3", ready=False)
    await make_pod(client, "web-c")  # no pod IP yet: not listed at all
    await make_pod(client, "other", "127.70.0.9", ready=True, labels={"app": "other"})
    await wait_until(expect(client, {"127.70.0.2"}, {"127.70.0.3"}), what="first endpoints")

    ep = await endpoints(client)
    assert ep["metadata"]["labels"]["tier"] == "front"
    ss = ep["subsets"]
    assert len(ss) == 1 and ss[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    a = ss[0]["addresses"][0]
    assert a["nodeName"] == "node-1"
    assert a["targetRef"]["kind"] == "Pod" and a["targetRef"]["name"] == "web-a" and a["targetRef"]["uid"]

    items = await slices(client)
    assert len(items) == 1
    s = items[0]
    svc = await client.get(SVCS, NS, "web")
    assert s["metadata"]["name"].startswith("web-") and len(s["metadata"]["name"]) == len("web-") + 5
    assert s["metadata"]["labels"][MANAGED_BY_LABEL] == CONTROLLER_NAME
    assert s["metadata"]["labels"][SERVICE_NAME_LABEL] == "web"
    owner = s["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Service", "web",
                                                                               svc["metadata"]["uid"], True)
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_ip = {e["addresses"][0]: e for e in s["endpoints"]}
    assert by_ip["127.70.0.2"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_ip["127.70.0.3"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert by_ip["127.70.0.2"]["nodeName"] == "node-1"
    assert by_ip["127.70.0.2"]["targetRef"]["name"] == "web-a"

    # readiness moves addresses between ready and not ready
    await set_status(client, "web-b", "127.70.0.3", True)
    await set_status(client, "web-a", "127.70.0.2", False)
    await wait_until(expect(client, {"127.70.0.3"}, {"127.70.0.2"}), timeout=5, interval=0.01,
                     what="readiness swapped")
    # the pod that gets its IP appears; a label change takes a pod out
    await set_status(client, "web-c", "127.70.0.4", True)
    await client.patch(PODS, NS, "web-b", {"metadata": {"labels": {"app": "gone"}}})
    await wait_until(expect(client, {"127.70.0.4"}, {"127.70.0.2"}), what="label change and new IP")
    # nothing written when nothing changed: the slice keeps its name and resourceVersion
    before = await slices(client)
    ep_before = await endpoints(client)
    await client.patch(PODS, NS, "web-c", {"metadata": {"annotations": {"x": "y"}}})
    await client.patch(SVCS, NS, "web", {"metadata": {"annotations": {"x": "y"}}})
    await wait_until(lambda: len(ep_loop.queue) == 0, what="queue drained")
    after = await slices(client)
    assert [s["metadata"]["resourceVersion"] for s in after] == [s["metadata"]["resourceVersion"] for s in before]
    assert (await endpoints(client))["metadata"]["resourceVersion"] == ep_before["metadata"]["resourceVersion"]


async def test_scale_down_and_terminating_pods(client, ep_loop):
    await make_svc(client)
    for i in range(3):
        await make_pod(client, f"web-{i}", f"127.70.1.{i + 2}", ready=True)
    await wait_until(expect(client, {"127.70.1.2", "127.70.1.3", "127.70.1.4"}, set()), what="3 endpoints")
    # a pod being deleted (bound: graceful) is terminating: out of Endpoints, flagged in the slice
    await client.delete(PODS, NS, "web-0")
    pod = await client.get(PODS, NS, "web-0")
    assert pod["metadata"].get("deletionTimestamp")

    async def terminating_flagged():
        ep = await endpoints(client)
        if addr_sets(ep) != ({"127.70.1.3", "127.70.1.4"}, set()):
            return False
        eps = {e["addresses"][0]: e for s in await slices(client) for e in s["endpoints"]}
        return eps.get("127.70.1.2", {}).get("conditions") == {"ready": False, "serving": True, "terminating": True}
    await wait_until(terminating_flagged, what="terminating endpoint flagged")
    # gone for good (forced): removed everywhere; scale down removes the others
    await client.delete(PODS, NS, "web-0", gracePeriodSeconds=0)
    await client.delete(PODS, NS, "web-1", gracePeriodSeconds=0)
    await wait_until(expect(client, {"127.70.1.4"}, set()), what="scaled down to one")
    await client.delete(PODS, NS, "web-2", gracePeriodSeconds=0)
    await wait_until(expect(client, set(), set()), what="no endpoints left")
    ep = await endpoints(client)
    assert ep["subsets"] in (None, [])
    items = await slices(client)
    assert len(items) == 1 and not items[0].get("endpoints")  # one empty placeholder slice


async def test_named_target_ports_resolve_per_pod(client, ep_loop):
    await make_svc(client, ports=[{"name": "web", "port": 80, "targetPort": "http"},
                                  {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])
    await make_pod(client, "web-a", "127.70.2.2", ready=True, ports=[{"name": "http", "containerPort": 8080}])
    await make_pod(client, "web-b", "127.70.2.3", ready=True, ports=[{"name": "http", "containerPort": 9090}])
    await make_pod(client, "web-c", "127.70.2.4", ready=True, ports=[{"name": "metrics", "containerPort": 9100}])

    async def resolved():
        ep = await endpoints(client)
        got = {}
        for ss in (ep or {}).get("subsets") or []:
            ports = {(p["name"], p["port"], p["protocol"]) for p in ss["ports"]}
            for a in ss.get("addresses") or []:
                got[a["ip"]] = ports
        return got == {"127.70.2.2": {("web", 8080, "TCP"), ("dns", 5353, "UDP")},
                       "127.70.2.3": {("web", 9090, "TCP"), ("dns", 5353, "UDP")},
                       "127.70.2.4": {("dns", 5353, "UDP")}}
    await wait_until(resolved, what="named ports resolved per pod")

    # the slices are written after the Endpoints: wait for them the same way
    async def sliced():
        return {tuple(sorted((p["name"], p["port"], p["protocol"]) for p in s["ports"])):
                {e["addresses"][0] for e in s["endpoints"]} for s in await slices(client)} == {
            (("dns", 5353, "UDP"), ("web", 8080, "TCP")): {"127.70.2.2"},
            (("dns", 5353, "UDP"), ("web", 9090, "TCP")): {"127.70.2.3"},
            (("dns", 5353, "UDP"),): {"127.70.2.4"},
        }
    await wait_until(sliced, what="one slice per set of resolved ports")


async def test_publish_not_ready_addresses(client, ep_loop):
    await make_svc(client, publishNotReadyAddresses=True)
    await make_pod(client, "web-a", "127.70.3.2", ready=False)
    await make_pod(client, "web-b", "127.70.3.3", ready=True)
    await wait_until(expect(client, {"127.70.3.2", "127.70.3.3"}, set()), what="all published as ready")


async def test_selectorless_services_are_left_alone(client, ep_loop):
    # the `kubernetes` Service: its Endpoints and slice are the server's
    k_ep = await client.get(EPS, NS, "kubernetes")
    k_slices = await slices(client, "kubernetes")
    # a user's selector-less Service with hand-written Endpoints: untouched, mirrored into a slice
    await make_svc(client, name="ext", selector={}, ports=[{"name": "db", "port": 5432, "targetPort": 5432}])
    await client.create(EPS, {"metadata": {"name": "ext"}, "subsets": [
        {"addresses": [{"ip": "127.70.4.2"}], "ports": [{"name": "db", "port": 5432}]}]}, NS)
    user_ep = await client.get(EPS, NS, "ext")

    async def mirrored():
        items = await slices(client, "ext")
        return len(items) == 1 and [e["addresses"] for e in items[0]["endpoints"]] == [["127.70.4.2"]]
    await wait_until(mirrored, what="user Endpoints mirrored")
    m = (await slices(client, "ext"))[0]
    assert m["metadata"]["labels"][MANAGED_BY_LABEL] == "endpointslicemirroring-controller.k8s.io"
    assert m["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    # a pod the user's labels would match changes nothing
    await make_pod(client, "web-a", "127.70.4.3", ready=True)
    await make_svc(client, name="web")  # a service with a selector, to know the controller has run
    await wait_until(expect(client, {"127.70.4.3"}, set()), what="selector service handled")
    assert (await client.get(EPS, NS, "ext"))["metadata"]["resourceVersion"] == user_ep["metadata"]["resourceVersion"]
    assert (await client.get(EPS, NS, "kubernetes"))["metadata"]["resourceVersion"] == \
        k_ep["metadata"]["resourceVersion"]
    assert [s["metadata"]["resourceVersion"] for s in await slices(client, "kubernetes")] == \
        [s["metadata"]["resourceVersion"] for s in k_slices]


async def test_service_deletion_removes_what_it_wrote(client, ep_loop):
    await make_svc(client)
    await make_pod(client, "web-a", "127.70.5.2", ready=True)
    await wait_until(expect(client, {"127.70.5.2"}, set()), what="endpoints")
    await client.delete(SVCS, NS, "web")

    async def gone():
        return await endpoints(client) is None and not await slices(client)
    await wait_until(gone, what="endpoints and slices deleted with the service")


async def test_many_endpoints_split_into_slices(client, ep_loop):
    await make_svc(client)
    n = 130
    for i in range(n):
        await make_pod(client, f"web-{i:03d}", f"127.70.{6 + i // 200}.{2 + i % 200}", ready=True)

    async def split():
        items = await slices(client)
        counts = sorted(len(s.get("endpoints") or []) for s in items)
        return counts == [30, 100]
    await wait_until(split, timeout=20, what="130 endpoints in slices of at most 100")
    ep = await endpoints(client)
    assert len(addr_sets(ep)[0]) == n
    # one pod's change rewrites one slice only
    before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await slices(client)}
    await set_status(client, "web-000", "127.70.6.2", False)

    async def one_flipped():
        return slice_sets(await slices(client))[1] == {"127.70.6.2"}
    await wait_until(one_flipped, what="one endpoint not ready")
    after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await slices(client)}
    assert set(after) == set(before)
    assert sum(before[k] != after[k] for k in after) == 1
