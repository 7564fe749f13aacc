"""CustomResourceDefinitions: defined, established, served, validated, watched, deleted — over HTTPS,
and with the real kubectl against the in-process server."""
import asyncio
import copy
import os
import ssl
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from sendo.client import ApiError
from sendo.server import Server, ServerConfig, free_port, kubeconfig
from conftest import wait_until

GROUP = "stable.example.com"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
NAME = f"crontabs.{GROUP}"
BASE = f"/apis/{GROUP}/v1"
CT = f"{BASE}/namespaces/default/crontabs"
KUBECTL = Path(sys.executable).parent / "kubectl"

SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "required": ["cronSpec"], "properties": {
        "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
        "image": {"type": "string"},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
        "size": {"type": "string", "enum": ["S", "M", "L"], "default": "M"},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
    "status": {"type": "object", "properties": {
        "replicas": {"type": "integer"}, "labelSelector": {"type": "string"},
        "conditions": {"type": "array", "items": {"type": "object", "properties": {
            "type": {"type": "string"}, "status": {"type": "string"}}}}}}}}

COLUMNS = [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
           {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
           {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
           {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
           {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def crd(plural="crontabs", kind="CronTab", scope="Namespaced", **version):
    v = {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": copy.deepcopy(SCHEMA)},
         "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                  "statusReplicasPath": ".status.replicas",
                                                  "labelSelectorPath": ".status.labelSelector"}},
         "additionalPrinterColumns": copy.deepcopy(COLUMNS)}
    v.update(version)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "scope": scope, "versions": [v],
                     "names": {"plural": plural, "kind": kind, "shortNames": ["ct"] if plural == "crontabs" else []}}}


def crontab(name, ns="default", **spec):
    return {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": name, "namespace": ns},
            "spec": {"cronSpec": "* * * * */5", "image": "cron:1", **spec}}


async def get_or_none(client, url):
    try:
        return await client.request("GET", url)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


async def established(client, name=NAME):
    obj = await get_or_none(client, f"{CRDS}/{name}")
    conds = {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or []}
    return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"


async def define(client, body=None, timeout=1.0):
    """Create a CRD and wait (at most a second, the promise) until it is Established and served."""
    body = body or crd()
    created = await client.request("POST", CRDS, body=body)
    name = body["metadata"]["name"]
    await wait_until(lambda: established(client, name), timeout=timeout, what=f"{name} established")
    return created


async def raw(server, method, url, body=None, headers=None):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    hdrs = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, server.cfg.url + url, data=None if body is None else orjson.dumps(body),
                             headers=hdrs) as r:
            return r.status, orjson.loads(await r.read() or b"null")


async def expect_error(coro, status):
    with pytest.raises(ApiError) as e:
        await coro
    assert e.value.status == status, e.value.body
    return e.value.body


# ----------------------------------------------------------------- definition and discovery


async def test_created_crd_is_established_within_a_second_and_discoverable(client):
    created = await define(client)
    assert created["metadata"]["name"] == NAME
    assert created["spec"]["names"]["singular"] == "crontab" and created["spec"]["names"]["listKind"] == "CronTabList"
    assert created["status"]["storedVersions"] == ["v1"]
    got = await client.request("GET", f"{CRDS}/{NAME}")
    assert got["status"]["acceptedNames"]["kind"] == "CronTab"
    assert got["status"]["acceptedNames"]["shortNames"] == ["ct"]
    groups = await client.request("GET", "/apis")
    group = next(g for g in groups["groups"] if g["name"] == GROUP)
    assert group["preferredVersion"]["groupVersion"] == f"{GROUP}/v1"
    assert (await client.request("GET", f"/apis/{GROUP}"))["versions"][0]["version"] == "v1"
    resources = {r["name"]: r for r in (await client.request("GET", BASE))["resources"]}
    assert set(resources) == {"crontabs", "crontabs/status", "crontabs/scale"}
    ct = resources["crontabs"]
    assert ct["kind"] == "CronTab" and ct["namespaced"] and ct["singularName"] == "crontab"
    assert ct["shortNames"] == ["ct"] and "watch" in ct["verbs"]
    assert resources["crontabs/scale"]["kind"] == "Scale"
    crd_res = {r["name"]: r for r in (await client.request("GET", "/apis/apiextensions.k8s.io/v1"))["resources"]}
    assert crd_res["customresourcedefinitions"]["shortNames"][0] == "crd"
    assert not crd_res["customresourcedefinitions"]["namespaced"]


async def test_invalid_crds_are_422_naming_the_field(client):
    cases = []
    bad = crd()
    bad["metadata"]["name"] = "crontab.stable.example.com"
    cases.append((bad, "metadata.name", 'must be spec.names.plural+"."+spec.group'))
    bad = crd()
    bad["spec"]["scope"] = "Global"
    cases.append((bad, "spec.scope", 'Unsupported value: "Global"'))
    bad = crd()
    bad["spec"]["versions"][0]["storage"] = False
    cases.append((bad, "spec.versions", "must have exactly one version marked as storage version"))
    bad = crd()
    del bad["spec"]["versions"][0]["schema"]
    cases.append((bad, "spec.versions[0].schema.openAPIV3Schema", "Required value: schemas are required"))
    bad = crd()
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"] = {}
    cases.append((bad, "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[image].type",
                  "Required value: must not be empty for specified object fields"))
    bad = crd()
    del bad["spec"]["names"]["kind"]
    cases.append((bad, "spec.names.kind", "Required value"))
    bad = crd()
    bad["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = "text"
    cases.append((bad, "spec.versions[0].additionalPrinterColumns[0].type", 'Unsupported value: "text"'))
    bad = crd()
    bad["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = ".status.replicas"
    cases.append((bad, "spec.versions[0].subresources.scale.specReplicasPath", "should be a json path under .spec"))
    for body, field, message in cases:
        err = await expect_error(client.request("POST", CRDS, body=body), 422)
        causes = {c["field"]: c["message"] for c in err["details"]["causes"]}
        assert field in causes and message in causes[field], (field, err["message"])
        assert err["message"].startswith('CustomResourceDefinition.apiextensions.k8s.io "')
    assert (await client.request("GET", CRDS))["items"] == []



async def test_patterns_re2_cannot_compile_are_refused_at_crd_creation(client):
    field = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[image].pattern"
    for pattern in [r"^(a)\1$", "^(?=a)b", "("]:
        bad = crd()
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"] = {
            "type": "string", "pattern": pattern}
        err = await expect_error(client.request("POST", CRDS, body=bad), 422)
        causes = {c["field"]: c["message"] for c in err["details"]["causes"]}
        assert "must be a valid regular expression (RE2 syntax)" in causes[field], err["message"]


async def test_a_backtracking_pattern_never_blocks_the_api(client, server):
    """^(a+)+$ against 31 a's and a "!" took Python's re 31 s on the server's only loop."""
    body = crd()
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"] = {
        "type": "string", "pattern": "^(a+)+$"}
    await define(client, body)
    write = asyncio.create_task(expect_error(client.request("POST", CT, body=crontab("evil", image="a" * 31 + "!")),
                                             422))
    try:
        for _ in range(5):  # the API keeps answering while the write is matched
            assert await asyncio.wait_for(client.request("GET", "/healthz"), timeout=10) == "ok"
        err = await asyncio.wait_for(write, timeout=10)
    finally:
        write.cancel()
    assert err["details"]["causes"][0]["field"] == "spec.image"
    assert "should match '^(a+)+$'" in err["message"]
    assert (await client.request("POST", CT, body=crontab("fine", image="aaa")))["spec"]["image"] == "aaa"

async def test_names_already_in_use_are_not_accepted(client, server):
    await define(client)
    other = crd(plural="crontabz", kind="CronTab")
    await client.request("POST", CRDS, body=other)

    async def refused():
        got = await client.request("GET", f"{CRDS}/crontabz.{GROUP}")
        conds = {c["type"]: c for c in got["status"].get("conditions") or []}
        return conds.get("NamesAccepted", {}).get("status") == "False" and conds["Established"]["status"] == "False"
    await wait_until(refused, timeout=2, what="KindConflict")
    got = await client.request("GET", f"{CRDS}/crontabz.{GROUP}")
    assert [c["reason"] for c in got["status"]["conditions"] if c["type"] == "NamesAccepted"] == ["KindConflict"]
    await expect_error(client.request("GET", f"{BASE}/namespaces/default/crontabz"), 404)
    # once the holder of the kind is gone, the other definition is accepted and served
    await client.request("DELETE", f"{CRDS}/{NAME}")
    await wait_until(lambda: established(client, f"crontabz.{GROUP}"), timeout=3, what="crontabz established")
    assert await client.request("GET", f"{BASE}/namespaces/default/crontabz")

    # a built-in kind cannot be taken over
    leases = crd(plural="leases", kind="Lease")
    leases["metadata"]["name"] = "leases.coordination.k8s.io"
    leases["spec"]["group"] = "coordination.k8s.io"
    await client.request("POST", CRDS, body=leases)

    async def plural_conflict():
        got = await client.request("GET", f"{CRDS}/leases.coordination.k8s.io")
        return [c["reason"] for c in got["status"].get("conditions") or [] if c["type"] == "NamesAccepted"] == [
            "PluralConflict"]
    await wait_until(plural_conflict, timeout=2, what="PluralConflict")
    r = client.request("GET", "/apis/coordination.k8s.io/v1")
    assert {x["name"]: x["kind"] for x in (await r)["resources"]}["leases"] == "Lease"
    assert not server.registry.get("coordination.k8s.io", "v1", "leases").custom
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}}
    await client.request("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", body=lease)
    await client.request("DELETE", f"{CRDS}/leases.coordination.k8s.io")

    async def gone():
        return await get_or_none(client, f"{CRDS}/leases.coordination.k8s.io") is None
    await wait_until(gone, timeout=3, what="conflicting CRD deleted")
    assert await client.request("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l")


# ----------------------------------------------------------------- custom objects


async def test_custom_object_crud_with_defaults_and_pruning(client):
    await define(client)
    body = crontab("a")
    body["spec"]["unknown"] = "dropped"
    body["spec"]["extra"] = {"anything": {"goes": [1, 2]}}
    body["topLevelJunk"] = 1
    obj = await client.request("POST", CT, body=body)
    assert obj["spec"] == {"cronSpec": "* * * * */5", "image": "cron:1", "replicas": 1, "size": "M",
                           "extra": {"anything": {"goes": [1, 2]}}}
    assert "topLevelJunk" not in obj
    m = obj["metadata"]
    assert m["uid"] and m["generation"] == 1 and m["namespace"] == "default" and m["creationTimestamp"]
    assert await client.request("GET", f"{CT}/a") == obj

    obj["spec"]["replicas"] = 3
    updated = await client.request("PUT", f"{CT}/a", body=obj)
    assert updated["spec"]["replicas"] == 3 and updated["metadata"]["generation"] == 2
    patched = await client.request("PATCH", f"{CT}/a", body={"spec": {"image": "cron:2", "size": None}},
                                   content_type="application/merge-patch+json")
    assert patched["spec"]["image"] == "cron:2" and patched["spec"]["size"] == "M"  # removed, defaulted again
    listed = await client.request("GET", CT)
    assert listed["kind"] == "CronTabList" and [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    all_ns = await client.request("GET", f"{BASE}/crontabs")
    assert len(all_ns["items"]) == 1
    await client.request("DELETE", f"{CT}/a")
    await expect_error(client.request("GET", f"{CT}/a"), 404)


async def test_schema_violations_are_422_naming_the_field(client):
    await define(client)
    err = await expect_error(client.request("POST", CT, body=crontab("bad", replicas="string", size="XL")), 422)
    assert err["reason"] == "Invalid" and err["details"]["kind"] == "CronTab" and err["details"]["group"] == GROUP
    causes = {c["field"]: c["message"] for c in err["details"]["causes"]}
    assert causes["spec.replicas"] == ('Invalid value: "string": spec.replicas in body must be of type integer: '
                                       '"string"')
    assert causes["spec.size"] == 'Unsupported value: "XL": supported values: "S", "M", "L"'
    assert err["message"].startswith('CronTab.stable.example.com "bad" is invalid: [')
    body = crontab("bad", replicas=11)
    del body["spec"]["cronSpec"]
    err = await expect_error(client.request("POST", CT, body=body), 422)
    assert {c["field"]: c["message"] for c in err["details"]["causes"]} == {
        "spec.cronSpec": "Required value",
        "spec.replicas": "Invalid value: 11: spec.replicas in body should be less than or equal to 10"}
    await client.request("POST", CT, body=crontab("good"))
    err = await expect_error(client.request("PATCH", f"{CT}/good", body={"spec": {"cronSpec": "never"}},
                                            content_type="application/merge-patch+json"), 422)
    assert err["details"]["causes"][0]["field"] == "spec.cronSpec"
    assert (await client.request("GET", f"{CT}/good"))["spec"]["cronSpec"] == "* * * * */5"
    await expect_error(client.request("POST", CT, body={**crontab("x"), "kind": "Other"}), 400)


async def test_status_subresource_is_separate_from_the_main_resource(client):
    await define(client)
    body = crontab("s")
    body["status"] = {"replicas": 9}
    obj = await client.request("POST", CT, body=body)
    assert "status" not in obj  # create cannot set status
    obj["status"] = {"replicas": 4}
    obj = await client.request("PUT", f"{CT}/s", body=obj)
    assert "status" not in obj and obj["metadata"]["generation"] == 1
    obj["status"] = {"replicas": 2, "labelSelector": "app=s", "bogus": 1,
                     "conditions": [{"type": "Ready", "status": "True"}]}
    obj["spec"]["replicas"] = 7
    st = await client.request("PUT", f"{CT}/s/status", body=obj)
    assert st["status"] == {"replicas": 2, "labelSelector": "app=s",
                            "conditions": [{"type": "Ready", "status": "True"}]}
    assert st["spec"]["replicas"] == 1 and st["metadata"]["generation"] == 1
    err = await expect_error(client.request("PATCH", f"{CT}/s/status", body={"status": {"replicas": "two"}},
                                            content_type="application/merge-patch+json"), 422)
    assert err["details"]["causes"][0]["field"] == "status.replicas"
    got = await client.request("GET", f"{CT}/s/status")
    assert got["status"]["replicas"] == 2


async def test_scale_subresource(client):
    await define(client)
    await client.request("POST", CT, body=crontab("sc", replicas=2))
    await client.request("PATCH", f"{CT}/sc/status", body={"status": {"replicas": 1, "labelSelector": "app=sc"}},
                         content_type="application/merge-patch+json")
    scale = await client.request("GET", f"{CT}/sc/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 1, "selector": "app=sc"}
    scale["spec"]["replicas"] = 5
    out = await client.request("PUT", f"{CT}/sc/scale", body=scale)
    assert out["spec"]["replicas"] == 5
    assert (await client.request("GET", f"{CT}/sc"))["spec"]["replicas"] == 5
    err = await expect_error(client.request("PATCH", f"{CT}/sc/scale", body={"spec": {"replicas": 11}},
                                            content_type="application/merge-patch+json"), 422)
    assert "spec.replicas" in err["message"]


async def test_printer_columns_as_a_table(client, server):
    await define(client)
    await client.request("POST", CT, body=crontab("p", replicas=3))
    await client.request("PATCH", f"{CT}/p/status", body={"status": {"conditions": [
        {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}},
        content_type="application/merge-patch+json")
    status, tbl = await raw(server, "GET", CT, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert status == 200 and tbl["kind"] == "Table"
    cols = [(c["name"], c["type"], c["priority"]) for c in tbl["columnDefinitions"]]
    assert cols == [("Name", "string", 0), ("Spec", "string", 0), ("Replicas", "integer", 0),
                    ("Ready", "string", 0), ("Image", "string", 1), ("Age", "date", 0)]
    [row] = tbl["rows"]
    assert row["cells"][:5] == ["p", "* * * * */5", 3, "True", "cron:1"]
    assert row["cells"][5].endswith("s")
    # without printer columns: NAME and AGE, as Kubernetes
    plain = crd(plural="plains", kind="Plain", additionalPrinterColumns=None)
    await define(client, plain)
    await client.request("POST", f"{BASE}/namespaces/default/plains",
                         body={"apiVersion": f"{GROUP}/v1", "kind": "Plain", "metadata": {"name": "x"},
                               "spec": {"cronSpec": "* * * * *"}})
    status, tbl = await raw(server, "GET", f"{BASE}/namespaces/default/plains",
                            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert [c["name"] for c in tbl["columnDefinitions"]] == ["Name", "Age"]


async def test_watch_on_a_custom_resource(client, server):
    await define(client)
    r = server.registry.get(GROUP, "v1", "crontabs")
    seen = []

    rv = (await client.request("GET", CT))["metadata"]["resourceVersion"]

    async def watch():  # from the revision before the writes: nothing can be missed
        async for etype, obj in client.watch(r, "default", resourceVersion=rv, timeoutSeconds=5):
            seen.append((etype, obj["metadata"]["name"], obj["spec"].get("replicas")))
            if etype == "DELETED":
                return
    task = asyncio.create_task(watch())
    await client.request("POST", CT, body=crontab("w"))
    await client.request("PATCH", f"{CT}/w", body={"spec": {"replicas": 2}},
                         content_type="application/merge-patch+json")
    await client.request("DELETE", f"{CT}/w")
    await asyncio.wait_for(task, 5)
    assert seen == [("ADDED", "w", 1), ("MODIFIED", "w", 2), ("DELETED", "w", 2)]


async def test_cluster_scoped_crd(client):
    await define(client, crd(plural="clocks", kind="Clock", scope="Cluster"))
    obj = await client.request("POST", f"{BASE}/clocks",
                               body={"apiVersion": f"{GROUP}/v1", "kind": "Clock", "metadata": {"name": "c"},
                                     "spec": {"cronSpec": "* * * * *"}})
    assert "namespace" not in obj["metadata"]
    await expect_error(client.request("GET", f"{BASE}/namespaces/default/clocks/c"), 404)


# ----------------------------------------------------------------- changing and deleting the definition


async def test_updating_a_crd_updates_what_is_served(client):
    await define(client)
    await client.request("POST", CT, body=crontab("u"))
    cur = await client.request("GET", f"{CRDS}/{NAME}")
    v1 = cur["spec"]["versions"][0]
    v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["owner"] = {"type": "string",
                                                                                     "default": "ops"}
    v2 = copy.deepcopy(v1)
    v2.update(name="v2", storage=False)
    cur["spec"]["versions"].append(v2)
    cur = await client.request("PUT", f"{CRDS}/{NAME}", body=cur)
    assert cur["metadata"]["generation"] == 2

    async def has_v2():
        return await get_or_none(client, f"/apis/{GROUP}/v2") is not None
    await wait_until(has_v2, timeout=2, what="v2 served")
    obj = await client.request("POST", CT, body=crontab("u2"))
    assert obj["spec"]["owner"] == "ops"
    versions = (await client.request("GET", f"/apis/{GROUP}"))["versions"]
    assert {v["version"] for v in versions} == {"v1", "v2"}

    cur["spec"]["versions"][1]["served"] = False
    cur["spec"]["group"] = "other.example.com"
    err = await expect_error(client.request("PUT", f"{CRDS}/{NAME}", body=cur), 422)
    assert any(c["field"] == "spec.group" and "immutable" in c["message"] for c in err["details"]["causes"])
    cur["spec"]["group"] = GROUP
    await client.request("PUT", f"{CRDS}/{NAME}", body=cur)

    async def v2_gone():
        return await get_or_none(client, f"/apis/{GROUP}/v2") is None
    await wait_until(v2_gone, timeout=2, what="v2 no longer served")
    assert len((await client.request("GET", CT))["items"]) == 2


async def test_deleting_a_crd_deletes_its_objects_then_itself(client):
    await define(client)
    await client.request("POST", CT, body=crontab("one"))
    await client.request("POST", f"{BASE}/namespaces/kube-system/crontabs", body=crontab("two", ns="kube-system"))
    held = crontab("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await client.request("POST", CT, body=held)

    await client.request("DELETE", f"{CRDS}/{NAME}")
    cur = await client.request("GET", f"{CRDS}/{NAME}")
    assert cur["metadata"]["deletionTimestamp"]
    assert "customresourcecleanup.apiextensions.k8s.io" in cur["metadata"]["finalizers"]
    assert {c["type"]: c["status"] for c in cur["status"]["conditions"]}["Terminating"] == "True"

    async def only_held_left():
        items = (await client.request("GET", f"{BASE}/crontabs"))["items"]
        return [i["metadata"]["name"] for i in items] == ["held"] and items[0]["metadata"].get("deletionTimestamp")
    await wait_until(only_held_left, timeout=3, what="objects deleted")
    err = await expect_error(client.request("POST", CT, body=crontab("late")), 405)
    assert "terminating" in err["message"]
    assert await get_or_none(client, f"{CRDS}/{NAME}") is not None  # held back by the object's finalizer

    await client.request("PATCH", f"{CT}/held", body={"metadata": {"finalizers": None}},
                         content_type="application/merge-patch+json")

    async def gone():
        return await get_or_none(client, f"{CRDS}/{NAME}") is None
    await wait_until(gone, timeout=3, what="CRD gone")

    async def not_served():
        return await get_or_none(client, BASE) is None
    await wait_until(not_served, timeout=2, what="API path gone")
    await expect_error(client.request("GET", CT), 404)
    assert GROUP not in [g["name"] for g in (await client.request("GET", "/apis"))["groups"]]

    # created again, it starts out empty
    await define(client)
    assert (await client.request("GET", f"{BASE}/crontabs"))["items"] == []
    await client.request("POST", CT, body=crontab("again"))


async def test_recreated_crd_is_not_clobbered_by_the_old_deletion(client, server):
    await define(client)
    old_uid = (await client.request("GET", f"{CRDS}/{NAME}"))["metadata"]["uid"]
    for i in range(5):
        await client.request("POST", CT, body=crontab(f"o{i}"))
    await client.request("DELETE", f"{CRDS}/{NAME}")

    async def gone():
        return await get_or_none(client, f"{CRDS}/{NAME}") is None
    await wait_until(gone, timeout=3, what="CRD gone")
    await define(client)
    new = await client.request("GET", f"{CRDS}/{NAME}")
    assert new["metadata"]["uid"] != old_uid and not new["metadata"].get("deletionTimestamp")
    await client.request("POST", CT, body=crontab("fresh"))
    # the registrar ran the old CRD's clean-up (the CRD could not go otherwise); wait until
    # that task and every pass queued for this name are over, then look for damage
    registrar = server.crds

    def idle():
        return old_uid not in registrar._cleanups and NAME not in registrar._workers
    await wait_until(idle, timeout=10, what="the registrar done with the old CRD")
    assert [i["metadata"]["name"] for i in (await client.request("GET", CT))["items"]] == ["fresh"]
    assert await established(client)


async def test_stored_crds_are_served_after_a_restart(tmp_path):
    cfg = ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controllers=False)
    from sendo.client import Client
    s = Server(cfg)
    await s.start()
    c = Client(cfg.url, s.admin_token, s.ca_pem)
    try:
        await define(c)
        await c.request("POST", CT, body=crontab("kept"))
    finally:
        await c.close()
        await s.stop()
    s = Server(cfg)
    await s.start()
    c = Client(cfg.url, s.admin_token, s.ca_pem)
    try:
        assert (await c.request("GET", f"{CT}/kept"))["spec"]["replicas"] == 1
        assert await established(c)
    finally:
        await c.close()
        await s.stop()


# ----------------------------------------------------------------- the real kubectl


async def kubectl(env, *args, check=True, timeout=60):
    proc = await asyncio.create_subprocess_exec(str(KUBECTL), *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"kubectl {' '.join(args)} timed out")
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {err.decode()}")
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_applies_a_crd_and_its_objects(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg_path = tmp_path / "kubeconfig"
    cfg_path.write_text(yaml.safe_dump(kubeconfig(server.cfg.url, server.admin_token, server.ca_pem)))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "KUBECONFIG"}
    env.update(HOME=str(home), KUBECONFIG=str(cfg_path))
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd()))
    cr = crontab("my-cron", replicas=3)
    cr["spec"]["unknownField"] = 1
    (tmp_path / "cr.yaml").write_text(yaml.safe_dump(cr))

    await kubectl(env, "apply", "-f", str(tmp_path / "crd.yaml"))
    await kubectl(env, "wait", "--for", "condition=established", "--timeout=10s", f"crd/{NAME}")
    _, out, _ = await kubectl(env, "apply", "--validate=false", "-f", str(tmp_path / "cr.yaml"))
    assert "crontab.stable.example.com/my-cron created" in out
    _, out, _ = await kubectl(env, "get", "crontabs")
    header, line = out.strip().splitlines()
    assert header.split() == ["NAME", "SPEC", "REPLICAS", "READY", "AGE"]
    assert line.split()[:7] == ["my-cron", "*", "*", "*", "*", "*/5", "3"]
    _, out, _ = await kubectl(env, "get", "ct", "-o", "wide")
    assert "IMAGE" in out.splitlines()[0] and "cron:1" in out
    _, out, _ = await kubectl(env, "get", "crd")
    assert out.split()[:4] == ["NAME", "CREATED", "AT", NAME]
    # a second apply patches the object (a merge patch for a custom resource)
    cr["spec"]["replicas"] = 4
    (tmp_path / "cr.yaml").write_text(yaml.safe_dump(cr))
    _, out, _ = await kubectl(env, "apply", "--validate=false", "-f", str(tmp_path / "cr.yaml"))
    assert "configured" in out
    _, out, _ = await kubectl(env, "get", "crontab", "my-cron", "-o", "jsonpath={.spec.replicas}")
    assert out == "4"
    await kubectl(env, "scale", "--replicas=5", "crontabs/my-cron")
    _, out, _ = await kubectl(env, "get", "crontab", "my-cron", "-o", "jsonpath={.spec.replicas}")
    assert out == "5"
    bad = crontab("bad-cron", replicas="three")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = await kubectl(env, "apply", "--validate=false", "-f", str(tmp_path / "bad.yaml"), check=False)
    assert code != 0 and 'spec.replicas: Invalid value: "string"' in err and "must be of type integer" in err
    await kubectl(env, "delete", "crd", NAME, "--timeout=20s")
    code, _, err = await kubectl(env, "get", "crontabs", check=False)
    assert code != 0
