"""Endpoints controller, one reconcile at a time on a fake API that records the calls."""
from sendo.client import kind
from sendo.controllers.endpoints import (CONTROLLER_NAME, ENDPOINTS_CONTROLLER_NAME, ENDPOINTS_MANAGED_BY_LABEL,
                                         MANAGED_BY_LABEL, SERVICE_NAME_LABEL, STALE_RECHECK, EndpointsController)

SVC, PODS, EP, SLICES = kind("services"), kind("pods"), kind("endpoints"), kind("endpointslices", "discovery.k8s.io")
NS = "default"
EP_URL = f"/api/v1/namespaces/{NS}/endpoints"
SLICE_URL = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
KEY = f"{NS}/web"


def service(name="web", selector=None):
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "web"} if selector is None else selector, "clusterIP": "127.32.0.9",
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}}


def pod(name, ip, ready=True, app="web", port=8080, **meta):
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": app}, **meta},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


async def test_endpoints_and_a_slice_list_the_selected_pods_by_readiness(fake_api):
    ec = fake_api.build(EndpointsController)
    fake_api.add(SVC, service())
    fake_api.add(PODS, pod("a", "127.64.0.2"), pod("b", "127.64.0.3", ready=False),
                 pod("other", "127.64.0.4", app="db"), pod("noip", "", ready=True))
    writes = await fake_api.run(ec, KEY)
    assert [(c.method, c.path) for c in writes] == [("POST", EP_URL), ("POST", SLICE_URL)]
    ep, es = writes[0].body, writes[1].body
    assert ep["metadata"]["labels"][ENDPOINTS_MANAGED_BY_LABEL] == ENDPOINTS_CONTROLLER_NAME
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["127.64.0.2"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["127.64.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]  # named targetPort resolved
    assert es["metadata"]["labels"][SERVICE_NAME_LABEL] == "web"
    assert es["metadata"]["labels"][MANAGED_BY_LABEL] == CONTROLLER_NAME
    assert es["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    assert {e["addresses"][0]: e["conditions"]["ready"] for e in es["endpoints"]} == {
        "127.64.0.2": True, "127.64.0.3": False}


async def test_nothing_is_written_twice_while_the_caches_are_behind_nor_once_they_caught_up(fake_api):
    ec = fake_api.build(EndpointsController)
    fake_api.add(SVC, service())
    fake_api.add(PODS, pod("a", "127.64.0.2"))
    assert len(await fake_api.run(ec, KEY)) == 2
    # the informers have not shown the writes yet: wait for them instead of creating again
    fake_api.fake.calls.clear()
    assert await ec.reconcile(KEY) == STALE_RECHECK
    assert fake_api.fake.calls == []
    assert await fake_api.run(ec, KEY) == []


async def test_a_pod_that_stops_being_ready_moves_in_place(fake_api):
    ec = fake_api.build(EndpointsController)
    fake_api.add(SVC, service())
    fake_api.add(PODS, pod("a", "127.64.0.2"), pod("b", "127.64.0.3"))
    await fake_api.run(ec, KEY)
    fake_api.add(PODS, pod("b", "127.64.0.3", ready=False))
    writes = await fake_api.run(ec, KEY)
    assert [(c.method, c.path) for c in writes] == [("PUT", f"{EP_URL}/web"), ("PUT", writes[1].path)]
    assert writes[1].path.startswith(f"{SLICE_URL}/web-")  # the same slice, updated, not a new one
    assert [a["ip"] for a in writes[0].body["subsets"][0]["notReadyAddresses"]] == ["127.64.0.3"]


async def test_a_deleted_service_takes_its_endpoints_and_slices_along(fake_api):
    ec = fake_api.build(EndpointsController)
    fake_api.add(SVC, service())
    fake_api.add(PODS, pod("a", "127.64.0.2"))
    assert len(await fake_api.run(ec, KEY)) == 2
    (slice_path,) = [p for p in fake_api.fake.objects if p.startswith(SLICE_URL + "/")]
    fake_api.fake.remove(SVC, NS, "web")
    writes = await fake_api.run(ec, KEY)
    assert sorted((c.method, c.path) for c in writes) == [("DELETE", f"{EP_URL}/web"), ("DELETE", slice_path)]


async def test_endpoints_of_a_service_without_selector_belong_to_the_user(fake_api):
    ec = fake_api.build(EndpointsController)
    fake_api.add(SVC, service(selector={}))
    fake_api.add(EP, {"metadata": {"name": "web", "namespace": NS},
                      "subsets": [{"addresses": [{"ip": "127.0.0.5"}], "ports": [{"port": 9000}]}]})
    writes = await fake_api.run(ec, KEY)
    assert [(c.method, c.path) for c in writes] == [("POST", SLICE_URL)]  # mirrored, Endpoints untouched
    assert writes[0].body["endpoints"][0]["addresses"] == ["127.0.0.5"]
    fake_api.fake.remove(SVC, NS, "web")
    writes = await fake_api.run(ec, KEY)
    assert [c.method for c in writes if c.path.startswith(EP_URL)] == []  # never deleted: not ours
