"""Cluster IPs and node ports for Services, and the server-set fields of Jobs, through the real API."""
import asyncio
import ipaddress

import pytest

from sendo.api.admission import KUBERNETES_SERVICE_IP, SERVICE_NETWORK, ServiceAllocator, update_steps
from sendo.client import ApiError, kind

SVC = kind("services")
JOBS = kind("jobs", "batch")
CRONJOBS = kind("cronjobs", "batch")


def allocator(server) -> ServiceAllocator:
    return next(s for s in server.api.api.admission["services"] if isinstance(s, ServiceAllocator))


def svc(name, **spec):
    body = {"ports": [{"port": 80}], "selector": {"app": name}}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": body}


async def invalid(coro) -> str:
    with pytest.raises(ApiError) as e:
        await coro
    assert e.value.status == 422 and e.value.body["reason"] == "Invalid", e.value.body
    return e.value.body["message"]


# ============================================================================ cluster IPs


async def test_every_service_gets_its_own_cluster_ip_from_the_range(client):
    made = [await client.create(SVC, svc(f"s{i}")) for i in range(5)]
    ips = [m["spec"]["clusterIP"] for m in made]
    assert len(set(ips)) == 5
    for m, ip in zip(made, ips):
        assert ipaddress.ip_address(ip) in SERVICE_NETWORK and ip != KUBERNETES_SERVICE_IP
        assert ip not in (str(SERVICE_NETWORK.network_address), str(SERVICE_NETWORK.broadcast_address))
        spec = m["spec"]
        assert spec["clusterIPs"] == [ip] and spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    got = await client.get(SVC, "default", "s0")
    assert got["spec"]["clusterIP"] == ips[0]


async def test_concurrent_creates_never_share_an_ip(client):
    made = await asyncio.gather(*(client.create(SVC, svc(f"c{i}")) for i in range(25)))
    assert len({m["spec"]["clusterIP"] for m in made}) == 25


async def test_concurrent_requests_for_one_ip_or_port_give_it_once(client):
    """Creates in flight hold what they were given until they are stored or have failed."""
    results = await asyncio.gather(*(client.create(SVC, svc(f"same{i}", clusterIP="127.32.3.3")) for i in range(6)),
                                   return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(r.status == 422 and "already allocated" in r.body["message"] for r in results if not isinstance(r, dict))
    results = await asyncio.gather(*(client.create(SVC, svc(f"port{i}", type="NodePort",
                                                            ports=[{"port": 80, "nodePort": 31000}]))
                                     for i in range(6)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1


async def test_headless_service_keeps_none(client):
    selectorless = await client.create(SVC, svc("h1", clusterIP="None", selector=None, ports=[]))
    assert selectorless["spec"]["clusterIP"] == "None" and selectorless["spec"]["clusterIPs"] == ["None"]
    assert selectorless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    selected = await client.create(SVC, svc("h2", clusterIP="None"))
    assert selected["spec"]["clusterIPs"] == ["None"] and selected["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert selected["spec"]["ipFamilies"] == ["IPv4"]


async def test_external_name_service_gets_no_ip(client):
    made = await client.create(SVC, svc("ext", type="ExternalName", externalName="db.example.com", ports=[],
                                         selector=None))
    assert "clusterIP" not in made["spec"] and "ipFamilies" not in made["spec"]


async def test_requested_ip_is_honoured_then_refused_when_taken(client):
    made = await client.create(SVC, svc("a", clusterIP="127.32.9.9"))
    assert made["spec"]["clusterIP"] == "127.32.9.9" and made["spec"]["clusterIPs"] == ["127.32.9.9"]
    msg = await invalid(client.create(SVC, svc("b", clusterIP="127.32.9.9")))
    assert msg == ('Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"127.32.9.9"}: '
                   'failed to allocate IP 127.32.9.9: provided IP is already allocated')
    via_list = await invalid(client.create(SVC, svc("c", clusterIPs=["127.32.9.9"])))
    assert "provided IP is already allocated" in via_list


async def test_requested_ip_outside_the_range_is_refused(client):
    msg = await invalid(client.create(SVC, svc("far", clusterIP="10.0.0.1")))
    assert msg.endswith("failed to allocate IP 10.0.0.1: provided IP is not in the valid range. "
                        "The range of valid IPs is 127.32.0.0/16")
    assert "not in the valid range" in await invalid(client.create(SVC, svc("net", clusterIP="127.32.0.0")))


def test_two_clusters_start_handing_out_at_different_places_of_the_ranges():
    """A second cluster on this machine must not give its first Service the first one's
    cluster IP and node port: both would listen on this host (a regression: every cluster
    started at 127.32.0.2 and 30000)."""
    starts = {(a._ip_cursor, a._port_cursor) for a in (ServiceAllocator(None, None) for _ in range(10))}
    assert len({ip for ip, _ in starts}) > 1 and len({port for _, port in starts}) > 1, starts


async def test_the_kubernetes_service_ip_is_never_handed_out(client, server):
    alloc = allocator(server)
    alloc._ip_cursor = int(ipaddress.ip_address(KUBERNETES_SERVICE_IP))  # as if the range had wrapped round
    made = await client.create(SVC, svc("next"))
    assert made["spec"]["clusterIP"] != KUBERNETES_SERVICE_IP


async def test_the_server_creates_the_kubernetes_service_and_endpoints(client, server):
    svc_obj = await client.get(SVC, "default", "kubernetes")
    assert svc_obj["spec"]["clusterIPs"] == [KUBERNETES_SERVICE_IP] and "selector" not in svc_obj["spec"]
    assert svc_obj["spec"]["ports"][0] == {"name": "https", "port": 443, "protocol": "TCP",
                                           "targetPort": server.cfg.port}
    ep = await client.get(kind("endpoints"), "default", "kubernetes")
    assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    assert ep["subsets"][0]["ports"][0]["port"] == server.cfg.port
    await client.get(kind("endpointslices", "discovery.k8s.io"), "default", "kubernetes")


async def test_a_deleted_service_frees_its_ip(client):
    first = await client.create(SVC, svc("old"))
    ip = first["spec"]["clusterIP"]
    await client.delete(SVC, "default", "old")
    again = await client.create(SVC, svc("new", clusterIP=ip))
    assert again["spec"]["clusterIP"] == ip


async def test_failed_and_dry_run_creates_hold_nothing(client):
    bad = svc("Bad_Name", clusterIP="127.32.7.7")
    await invalid(client.create(SVC, bad))
    dry = await client.request("POST", "/api/v1/namespaces/default/services", body=svc("dry", clusterIP="127.32.7.7"),
                               params={"dryRun": "All"})
    assert dry["spec"]["clusterIP"] == "127.32.7.7"
    assert await client.get_or_none(SVC, "default", "dry") is None
    real = await client.create(SVC, svc("real", clusterIP="127.32.7.7"))
    assert real["spec"]["clusterIP"] == "127.32.7.7"


async def test_invalid_service_is_reported_by_validation_not_allocation(client):
    msg = await invalid(client.create(SVC, svc("v", ports=[{"port": 0}], clusterIP="127.32.5.5")))
    assert "spec.ports[0].port" in msg and "allocate" not in msg
    ok = await client.create(SVC, svc("v", clusterIP="127.32.5.5"))
    assert ok["spec"]["clusterIP"] == "127.32.5.5"


async def test_dual_stack_requests_are_refused_on_this_single_stack_cluster(client):
    msg = await invalid(client.create(SVC, svc("ds", ipFamilyPolicy="RequireDualStack")))
    assert 'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack' in msg
    msg = await invalid(client.create(SVC, svc("v6", ipFamilies=["IPv6"])))
    assert 'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster' in msg
    prefer = await client.create(SVC, svc("pref", ipFamilyPolicy="PreferDualStack"))
    assert prefer["spec"]["ipFamilyPolicy"] == "PreferDualStack" and prefer["spec"]["ipFamilies"] == ["IPv4"]


async def test_replace_without_the_ip_keeps_it(client):
    made = await client.create(SVC, svc("keep"))
    resent = svc("keep")
    resent["metadata"]["resourceVersion"] = made["metadata"]["resourceVersion"]
    after = await client.update(SVC, resent)
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        assert after["spec"][key] == made["spec"][key]
    moved = svc("keep", clusterIP="127.32.200.1")
    assert "field is immutable" in await invalid(client.update(SVC, moved))


# ============================================================================ node ports


async def test_node_ports_are_allocated_for_node_port_and_load_balancer_services(client):
    np = await client.create(SVC, svc("np", type="NodePort", ports=[{"name": "a", "port": 80},
                                                                     {"name": "b", "port": 81}]))
    ports = [p["nodePort"] for p in np["spec"]["ports"]]
    assert len(set(ports)) == 2 and all(30000 <= p <= 32767 for p in ports)
    lb = await client.create(SVC, svc("lb", type="LoadBalancer"))
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767 and lb["spec"]["ports"][0]["nodePort"] not in ports
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    bare = await client.create(SVC, svc("bare", type="LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in bare["spec"]["ports"][0]
    local = await client.create(SVC, svc("local", type="LoadBalancer", externalTrafficPolicy="Local"))
    assert 30000 <= local["spec"]["healthCheckNodePort"] <= 32767
    cip = await client.create(SVC, svc("cip"))
    assert "nodePort" not in cip["spec"]["ports"][0]


async def test_tcp_and_udp_of_one_port_share_a_node_port(client):
    dns = await client.create(SVC, svc("dns", type="NodePort", ports=[
        {"name": "tcp", "port": 53, "protocol": "TCP"}, {"name": "udp", "port": 53, "protocol": "UDP"}]))
    a, b = (p["nodePort"] for p in dns["spec"]["ports"])
    assert a == b


async def test_requested_node_port_is_honoured_then_refused_when_taken(client):
    made = await client.create(SVC, svc("web", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert made["spec"]["ports"][0]["nodePort"] == 30080
    msg = await invalid(client.create(SVC, svc("web2", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])))
    assert msg == ('Service "web2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                   'provided port is already allocated')
    msg = await invalid(client.create(SVC, svc("web3", type="NodePort", ports=[{"port": 80, "nodePort": 8080}])))
    assert msg.endswith("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. "
                        "The range of valid ports is 30000-32767")
    await client.delete(SVC, "default", "web")
    again = await client.create(SVC, svc("web4", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert again["spec"]["ports"][0]["nodePort"] == 30080


async def test_concurrent_node_port_services_get_distinct_ports(client):
    made = await asyncio.gather(*(client.create(SVC, svc(f"n{i}", type="NodePort")) for i in range(20)))
    assert len({m["spec"]["ports"][0]["nodePort"] for m in made}) == 20


async def test_update_to_node_port_allocates_and_checks_ports(client, server):
    """The update hook (admit_update): what ResourceAPI runs before validating an update of a Service."""
    alloc = allocator(server)
    assert update_steps(server.api.api.admission)["services"] == [alloc.admit_update]
    await client.create(SVC, svc("taken", type="NodePort", ports=[{"port": 80, "nodePort": 30500}]))
    old = await client.create(SVC, svc("grow"))
    new = {**old, "spec": {**old["spec"], "type": "NodePort", "externalTrafficPolicy": "Cluster"}}
    await alloc.admit_update(new, old)
    assert 30000 <= new["spec"]["ports"][0]["nodePort"] <= 32767
    clash = {**old, "spec": {**old["spec"], "type": "NodePort", "externalTrafficPolicy": "Cluster",
                             "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30500}]}}
    with pytest.raises(Exception) as e:
        await alloc.admit_update(clash, old)
    assert "provided port is already allocated" in str(e.value.message)
    # a Service keeps its own ports through an update
    mine = await client.get(SVC, "default", "taken")
    await alloc.admit_update(dict(mine), mine)


# ============================================================================ jobs


def job(name, **spec):
    body = {"template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"}, "spec": body}


async def test_job_gets_its_selector_labels_and_defaults(client):
    made = await client.create(JOBS, job("pi"))
    uid, spec = made["metadata"]["uid"], made["spec"]
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels == {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                      "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert (spec["completionMode"], spec["suspend"], spec["manualSelector"]) == ("NonIndexed", False, False)
    assert made["status"] == {}


async def test_job_replace_without_selector_keeps_it_and_template_is_fixed(client):
    made = await client.create(JOBS, job("keep"))
    resent = job("keep", parallelism=2, completions=1)
    resent["spec"]["template"]["metadata"] = {"labels": {}}
    after = await client.update(JOBS, resent)
    assert after["spec"]["selector"] == made["spec"]["selector"] and after["spec"]["parallelism"] == 2
    changed = job("keep")
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine"
    assert "spec.template: Invalid value" in await invalid(client.update(JOBS, changed))


async def test_job_with_always_restart_is_refused(client):
    body = job("bad")
    del body["spec"]["template"]["spec"]["restartPolicy"]
    msg = await invalid(client.create(JOBS, body))
    assert 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"' in msg


async def test_cronjob_with_a_bad_schedule_is_refused_naming_the_field(client):
    body = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "default"},
            "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": job("x")["spec"]}}}
    msg = await invalid(client.create(CRONJOBS, body))
    assert msg == ('CronJob.batch "nightly" is invalid: spec.schedule: Invalid value: "61 * * * *": '
                   "end of range (61) above maximum (59): 61")
    body["spec"]["schedule"] = "@hourly"
    made = await client.create(CRONJOBS, body)
    assert made["spec"]["concurrencyPolicy"] == "Allow" and made["spec"]["successfulJobsHistoryLimit"] == 3


# ============================================================================ several API servers


async def test_two_api_servers_on_one_store_never_hand_out_one_address(tmp_path):
    """Each ResourceAPI is one API server's allocator state; only the store is shared."""
    import orjson

    from sendo.api.resources import ResourceAPI
    from sendo.kinds.registry import builtin_registry
    from sendo.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=3600)
    await store.start()
    try:
        registry = builtin_registry()
        a, b = ResourceAPI(store, registry), ResourceAPI(store, registry)
        services, nodes = registry.get("", "v1", "services"), registry.get("", "v1", "nodes")
        await a.create(registry.get("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})

        def body(kv):
            return orjson.loads(kv.value)

        made = await asyncio.gather(*((a, b)[i % 2].create(services, "default", svc(f"s{i}", type="NodePort"))
                                      for i in range(30)))
        ips = [body(kv)["spec"]["clusterIP"] for kv in made]
        ports = [p["nodePort"] for kv in made for p in body(kv)["spec"]["ports"]]
        assert len(set(ips)) == 30 and len(set(ports)) == 30

        wanted = svc("x", clusterIP="127.32.9.9", type="NodePort", ports=[{"port": 80, "nodePort": 31999}])
        results = await asyncio.gather(*((a, b)[i % 2].create(services, "default", {**wanted, "metadata": {
            "name": f"want{i}", "namespace": "default"}}) for i in range(6)), return_exceptions=True)
        assert sum(not isinstance(r, Exception) for r in results) == 1
        assert all(getattr(r, "code", None) == 422 for r in results if isinstance(r, Exception))

        await a.create(nodes, None, {"metadata": {"name": "n0"}})  # both now start at the same block
        made = await asyncio.gather(*((a, b)[i % 2].create(nodes, None, {"metadata": {"name": f"n{i}"}})
                                      for i in range(1, 11)))
        cidrs = [body(kv)["spec"]["podCIDR"] for kv in made]
        assert len(set(cidrs)) == 10
    finally:
        await store.close()


async def test_a_deleted_services_address_is_taken_over_from_its_ended_claim(client, server):
    made = await client.create(SVC, svc("first", type="NodePort"))
    ip, port = made["spec"]["clusterIP"], made["spec"]["ports"][0]["nodePort"]
    await client.delete(SVC, "default", "first")
    again = await client.create(SVC, svc("second", clusterIP=ip, type="NodePort",
                                         ports=[{"port": 80, "nodePort": port}]))
    assert again["spec"]["clusterIP"] == ip and again["spec"]["ports"][0]["nodePort"] == port
    claim = await server.store.get(f"/registry/ranges/serviceips/{ip}")
    assert claim is not None and b"/services/default/second" in claim.data
