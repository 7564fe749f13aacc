"""OpenAPI v2/v3 documents built from the kubernetes client's models, kubectl explain, and
fieldValidation (Strict / Warn / Ignore) through the API and through the real kubectl."""
import asyncio
import copy
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from sendo.api.openapi import OpenAPI
from sendo.kinds.registry import builtin_registry
from sendo.server import kubeconfig
from conftest import wait_until

KUBECTL = Path(sys.executable).parent / "kubectl"
ROOT = Path(__file__).resolve().parents[2]
GROUP = "stable.example.com"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
CRONTABS = f"/apis/{GROUP}/v1/namespaces/default/crontabs"
POD = "io.k8s.api.core.v1.Pod"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CRONTAB = "com.example.stable.v1.CronTab"

CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": f"crontabs.{GROUP}"},
       "spec": {"group": GROUP, "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "singular": "crontab"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                    "description": "CronTab runs a command on a schedule.", "type": "object",
                    "properties": {"spec": {
                        "type": "object", "description": "What to run and when.", "required": ["cronSpec"],
                        "properties": {"cronSpec": {"type": "string", "description": "When, in cron format."},
                                       "replicas": {"type": "integer"},
                                       "extra": {"type": "object",
                                                 "x-kubernetes-preserve-unknown-fields": True}}}}}}}]}}


def deployment(name="web", **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, **spec}}


async def request(server, method, url, body=None, headers=None, **params):
    """(status, response headers, raw body) of one request."""
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Authorization": f"Bearer {server.admin_token}", **(headers or {})}
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, server.cfg.url + url, data=data, headers=headers, params=params) as r:
            return r.status, r.headers, await r.read()


async def call(server, method, url, body=None, content_type="application/json", **params):
    """(status, parsed body, [Warning header values]) of one request."""
    status, headers, raw = await request(server, method, url, body, {"Content-Type": content_type}, **params)
    return status, orjson.loads(raw) if raw else None, headers.getall("Warning", [])


async def define_crd(server, body=None):
    status, _, _ = await call(server, "POST", CRDS, body or CRD)
    assert status == 201
    await wait_until(lambda: server.registry.get(GROUP, "v1", "crontabs") is not None, what="crontabs served")


def refs(node, out=None):
    out = set() if out is None else out
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):  # (JSONSchemaProps has a property named "$ref")
                out.add(v)
            else:
                refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)
    return out


def keywords(schemas):
    """The keyword sets of every schema node (property names are names, not keywords)."""
    for s in schemas:
        if not isinstance(s, dict):
            continue
        yield set(s)
        yield from keywords((s.get("properties") or {}).values())
        yield from keywords([s.get("items"), s.get("additionalProperties"), *(s.get("allOf") or [])])


# ----------------------------------------------------------------- laziness


def test_schemas_are_built_lazily_in_a_child_process():
    """Starting the API costs nothing; the first document imports the client elsewhere."""
    code = """if True:
        import asyncio, sys
        from sendo.server import Server
        from sendo.api.app import APIServer
        from sendo.api.openapi import OpenAPI
        from sendo.kinds.registry import builtin_registry
        assert "kubernetes" not in sys.modules
        before = set(sys.modules)
        async def main():
            doc = await OpenAPI(builtin_registry()).group_version("", "v1")
            assert b'"io.k8s.api.core.v1.Pod"' in doc
            new = {m.split(".")[0] for m in set(sys.modules) - before}
            assert not new & {"kubernetes", "pydantic", "pydantic_core"}, new
        asyncio.run(main())
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ----------------------------------------------------------------- documents


async def test_v3_root_lists_each_group_version_with_a_content_hash(server):
    status, root, _ = await call(server, "GET", "/openapi/v3")
    assert status == 200
    paths = root["paths"]
    for gv in ("api/v1", "apis/apps/v1", "apis/batch/v1", "apis/apiextensions.k8s.io/v1"):
        url = paths[gv]["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{gv}?hash=") and len(url.split("hash=")[1]) == 32
    _, again, _ = await call(server, "GET", "/openapi/v3")
    assert again == root  # stable while nothing changes
    status, _, _ = await call(server, "GET", "/openapi/v3/apis/nothing.example.com/v1")
    assert status == 404


async def test_v3_group_version_documents_hold_every_kind_and_what_it_refers_to(server):
    _, root, _ = await call(server, "GET", "/openapi/v3")
    for gv, entry in root["paths"].items():
        status, doc, _ = await call(server, "GET", entry["serverRelativeURL"])
        assert status == 200 and doc["openapi"].startswith("3.")
        schemas = doc["components"]["schemas"]
        for ref in refs(doc):  # the document is complete: every $ref resolves inside it
            assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, (gv, ref)
        for path, item in doc["paths"].items():  # kubectl learns here that the server validates fields
            if "patch" in item:
                assert any(p["name"] == "fieldValidation" for p in item["patch"]["parameters"]), path
                assert item["patch"]["x-kubernetes-group-version-kind"]["version"] == gv.split("/")[-1]
        group, version = ("", gv.split("/")[1]) if gv.startswith("api/") else gv.split("/")[1:]
        for r in server.registry.in_group_version(group, version):
            gvks = [g for s in schemas.values() for g in s.get("x-kubernetes-group-version-kind", [])]
            assert {"group": group, "version": version, "kind": r.kind} in gvks, r.kind

    _, core, _ = await call(server, "GET", root["paths"]["api/v1"]["serverRelativeURL"])
    s = core["components"]["schemas"]
    pod = s[POD]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "Pod"}]
    assert pod["description"].startswith("Pod is a collection of containers")
    assert set(pod["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert pod["properties"]["metadata"]["allOf"] == [{"$ref": f"#/components/schemas/{OBJECT_META}"}]
    spec = s["io.k8s.api.core.v1.PodSpec"]
    assert "containers" in spec["required"]
    assert spec["properties"]["containers"]["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    container = s["io.k8s.api.core.v1.Container"]
    assert container["required"] == ["name"]
    assert "# noqa" not in container["properties"]["image"]["description"]
    assert s["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]["additionalProperties"] == {
        "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}
    assert s["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"] is True
    assert s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {**s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"],
                                                              "type": "string", "format": "date-time"}
    assert s["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]["allOf"][0]["$ref"].endswith(
        "intstr.IntOrString")
    assert s[OBJECT_META]["properties"]["creationTimestamp"]["allOf"][0]["$ref"].endswith("meta.v1.Time")
    free = s["io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"]
    assert free["x-kubernetes-preserve-unknown-fields"] is True

    _, apps, _ = await call(server, "GET", root["paths"]["apis/apps/v1"]["serverRelativeURL"])
    a = apps["components"]["schemas"]
    assert a[DEPLOYMENT]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}]
    assert "io.k8s.api.apps.v1.DeploymentStrategy" in a and "io.k8s.api.core.v1.PodTemplateSpec" in a
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector" in a
    assert POD not in a  # only what apps/v1 refers to


async def test_v2_document_is_swagger_with_definitions_and_paths(server):
    status, doc, _ = await call(server, "GET", "/openapi/v2")
    assert status == 200 and doc["swagger"] == "2.0"
    defs = doc["definitions"]
    for name in (POD, DEPLOYMENT, "io.k8s.api.batch.v1.CronJob", OBJECT_META,
                 "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"):
        assert name in defs, name
    for ref in refs(doc):
        assert ref.startswith("#/definitions/") and ref.split("/")[-1] in defs, ref
    assert not any("oneOf" in kw or "nullable" in kw for kw in keywords(defs.values()))  # v3-only
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert defs[POD]["properties"]["metadata"]["$ref"] == f"#/definitions/{OBJECT_META}"
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True} in patch["parameters"]
    status, again, _ = await call(server, "GET", "/openapi/v2")
    assert again == doc  # rendered once


async def test_custom_kind_schema_comes_from_its_crd(server):
    await define_crd(server)
    _, root, _ = await call(server, "GET", "/openapi/v3")
    url = root["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"]
    status, doc, _ = await call(server, "GET", url)
    assert status == 200
    s = doc["components"]["schemas"]
    ct = s[CRONTAB]
    assert ct["x-kubernetes-group-version-kind"] == [{"group": GROUP, "version": "v1", "kind": "CronTab"}]
    assert ct["description"] == "CronTab runs a command on a schedule."
    assert ct["properties"]["spec"]["properties"]["cronSpec"]["type"] == "string"
    assert ct["properties"]["metadata"]["allOf"] == [{"$ref": f"#/components/schemas/{OBJECT_META}"}]
    assert {"apiVersion", "kind"} <= set(ct["properties"])
    assert s["com.example.stable.v1.CronTabList"]["properties"]["items"]["items"] == {
        "$ref": f"#/components/schemas/{CRONTAB}"}
    assert OBJECT_META in s and "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry" in s
    for ref in refs(doc):
        assert ref.split("/")[-1] in s, ref
    _, v2, _ = await call(server, "GET", "/openapi/v2")
    assert CRONTAB in v2["definitions"] and f"/apis/{GROUP}/v1/namespaces/{{namespace}}/crontabs" in v2["paths"]

    # a changed schema is a new document under a new hash
    status, crd, _ = await call(server, "GET", f"{CRDS}/crontabs.{GROUP}")
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["schedule"] = {"type": "string"}
    status, _, _ = await call(server, "PUT", f"{CRDS}/crontabs.{GROUP}", crd)
    assert status == 200

    async def rehashed():
        _, r, _ = await call(server, "GET", "/openapi/v3")
        return r["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"] != url
    await wait_until(rehashed, what="a new hash for the changed CRD")
    _, r, _ = await call(server, "GET", "/openapi/v3")
    _, doc, _ = await call(server, "GET", r["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"])
    assert "schedule" in doc["components"]["schemas"][CRONTAB]["properties"]["spec"]["properties"]
    assert r["paths"]["api/v1"] == root["paths"]["api/v1"]  # other documents keep their hash


# ----------------------------------------------------------------- unknown fields, the lookup itself


async def test_field_tree_finds_unknown_fields():
    registry = builtin_registry()
    defs = await OpenAPI(registry).definitions()
    name = defs.name_of("apps", "v1", "Deployment")
    tree = defs.tree(name)
    assert tree is defs.tree(name)  # compiled once
    d = deployment()
    d["metadata"]["managedFields"] = [{"manager": "x", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    d["metadata"]["labels"] = {"any": "label"}
    d["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": 1000}}
    d["status"] = {"replicas": 1, "conditions": [{"type": "Available", "status": "True",
                                                   "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
    assert tree.unknown(d) == []
    d["spec"]["replica"] = 3
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    d["spec"]["template"]["spec"]["containers"].append({"name": "b", "image": "x", "ports": [{"containerPort": 1,
                                                                                           "nmae": "p"}]})
    d["metadata"]["bogus"] = {"deep": 1}
    assert sorted(tree.unknown(d)) == ["metadata.bogus", "spec.replica",
                                       "spec.template.spec.containers[0].imagePullPolicyy",
                                       "spec.template.spec.containers[1].ports[0].nmae"]
    # recursive types (a CRD's JSONSchemaProps) and maps of objects
    crd = defs.tree(defs.name_of("apiextensions.k8s.io", "v1", "CustomResourceDefinition"))
    assert crd.unknown(copy.deepcopy(CRD)) == []
    bad = copy.deepcopy(CRD)
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"][
        "typo"] = 1
    assert crd.unknown(bad) == [
        "spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.replicas.typo"]


async def test_objects_the_server_itself_writes_have_no_unknown_fields(server, client):
    """What the server stores (defaults, status, allocations) stays within the schemas."""
    await call(server, "POST", DEPLOYS, deployment(), fieldValidation="Strict")
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}],
                    "type": "NodePort"}}
    assert (await call(server, "POST", "/api/v1/namespaces/default/services", svc, fieldValidation="Strict"))[0] == 201
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert (await call(server, "POST", "/api/v1/namespaces/default/pods", pod, fieldValidation="Strict"))[0] == 201
    api = OpenAPI(server.registry)
    seen = 0
    for r in server.registry.all():
        if r.custom:
            continue
        find = await api.unknown_fields_of(r)
        assert find is not None, r.kind
        kvs, _ = await server.api.api.list_kvs(r, None)
        for kv in kvs:
            assert find(orjson.loads(kv.value)) == [], (r.kind, kv.key)
            seen += 1
    assert seen >= 6


# ----------------------------------------------------------------- fieldValidation through the API


async def test_strict_refuses_unknown_fields_and_writes_nothing(server):
    bad = deployment()
    bad["spec"]["foo"] = 1
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    status, body, _ = await call(server, "POST", DEPLOYS, bad, fieldValidation="Strict")
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
                               'error: unknown field "spec.template.spec.containers[0].imagePullPolicyy", '
                               'unknown field "spec.foo"')  # in the order of the document
    assert (await call(server, "GET", f"{DEPLOYS}/web"))[0] == 404
    status, _, _ = await call(server, "POST", DEPLOYS, bad, fieldValidation="Strict", dryRun="All")
    assert status == 400

    status, created, warnings = await call(server, "POST", DEPLOYS, deployment(), fieldValidation="Strict")
    assert status == 201 and warnings == []
    # update
    bad = copy.deepcopy(created)
    bad["spec"]["replica"] = 3
    status, body, _ = await call(server, "PUT", f"{DEPLOYS}/web", bad, fieldValidation="Strict")
    assert status == 400 and body["message"].endswith('strict decoding error: unknown field "spec.replica"')
    # patches: merge, strategic, JSON
    for ctype, patch in (("application/merge-patch+json", {"spec": {"replica": 3}}),
                         ("application/strategic-merge-patch+json", {"spec": {"replica": 3}}),
                         ("application/json-patch+json", [{"op": "add", "path": "/spec/replica", "value": 3}])):
        status, body, _ = await call(server, "PATCH", f"{DEPLOYS}/web", patch, ctype, fieldValidation="Strict")
        assert status == 400, ctype
        assert body["message"] == 'strict decoding error: unknown field "spec.replica"'
    # server-side apply
    applied = deployment()
    applied["spec"]["replica"] = 3
    status, body, _ = await call(server, "PATCH", f"{DEPLOYS}/web", applied, "application/apply-patch+yaml",
                                 fieldValidation="Strict", fieldManager="me", force="true")
    assert status == 400 and 'unknown field "spec.replica"' in body["message"]
    _, now, _ = await call(server, "GET", f"{DEPLOYS}/web")
    assert "replica" not in now["spec"] and now["metadata"]["resourceVersion"] == created["metadata"][
        "resourceVersion"]
    # a good patch still goes through
    status, _, warnings = await call(server, "PATCH", f"{DEPLOYS}/web", {"spec": {"replicas": 2}},
                                     "application/merge-patch+json", fieldValidation="Strict")
    assert status == 200 and warnings == []


async def test_warn_writes_and_sends_warning_headers(server):
    bad = deployment()
    bad["spec"]["foo"] = 1
    bad["metadata"]["colour"] = "blue"
    status, created, warnings = await call(server, "POST", DEPLOYS, bad, fieldValidation="Warn")
    assert status == 201
    assert warnings == ['299 - "unknown field \\"metadata.colour\\""', '299 - "unknown field \\"spec.foo\\""']
    status, _, warnings = await call(server, "PATCH", f"{DEPLOYS}/web", {"spec": {"bar": 2}},
                                     "application/merge-patch+json", fieldValidation="Warn")
    assert status == 200 and warnings == ['299 - "unknown field \\"spec.bar\\""']  # only what is new
    _, now, _ = await call(server, "GET", f"{DEPLOYS}/web")
    now["spec"]["baz"] = 3
    status, _, warnings = await call(server, "PUT", f"{DEPLOYS}/web", now, fieldValidation="Warn")
    assert status == 200 and warnings == ['299 - "unknown field \\"spec.baz\\""']


async def test_ignore_or_absent_keeps_todays_behaviour(server):
    bad = deployment()
    bad["spec"]["foo"] = 1
    status, _, warnings = await call(server, "POST", DEPLOYS, bad)
    assert status == 201 and warnings == []
    bad["metadata"]["name"] = "web2"
    bad["spec"]["selector"]["matchLabels"]["app"] = bad["spec"]["template"]["metadata"]["labels"]["app"] = "web2"
    status, _, warnings = await call(server, "POST", DEPLOYS, bad, fieldValidation="Ignore")
    assert status == 201 and warnings == []
    # what the stored object already holds is not held against a later Strict write
    _, now, _ = await call(server, "GET", f"{DEPLOYS}/web2")
    now["spec"]["replicas"] = 3
    status, _, _ = await call(server, "PUT", f"{DEPLOYS}/web2", now, fieldValidation="Strict")
    assert status == 200
    status, body, _ = await call(server, "POST", DEPLOYS, deployment("web3"), fieldValidation="Sometimes")
    assert status == 422 and "fieldValidation" in body["message"] and "Sometimes" in body["message"]


async def test_custom_kinds_use_their_crd_schema(server):
    await define_crd(server)
    ct = {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": "c1"},
          "spec": {"cronSpec": "* * * * *", "extra": {"anything": {"goes": 1}}, "typo": 1}}
    status, body, _ = await call(server, "POST", CRONTABS, ct, fieldValidation="Strict")
    assert status == 400
    assert body["message"] == ('CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: '
                               'unknown field "spec.typo"')
    status, created, warnings = await call(server, "POST", CRONTABS, ct, fieldValidation="Warn")
    assert status == 201 and warnings == ['299 - "unknown field \\"spec.typo\\""']
    assert "typo" not in created["spec"] and created["spec"]["extra"] == {"anything": {"goes": 1}}  # pruned
    status, body, _ = await call(server, "PATCH", f"{CRONTABS}/c1", {"spec": {"other": 1}},
                                 "application/merge-patch+json", fieldValidation="Strict")
    assert status == 400 and body["message"] == 'strict decoding error: unknown field "spec.other"'
    status, _, warnings = await call(server, "PATCH", f"{CRONTABS}/c1", {"spec": {"replicas": 2}},
                                     "application/merge-patch+json", fieldValidation="Strict")
    assert status == 200 and warnings == []


# ----------------------------------------------------------------- the real kubectl


async def kubectl(env, *args, timeout=60):
    proc = await asyncio.create_subprocess_exec(str(KUBECTL), *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"kubectl {' '.join(args)} timed out")
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def kube_env(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump(kubeconfig(server.cfg.url, server.admin_token, server.ca_pem)))
    return dict(os.environ, HOME=str(home), KUBECONFIG=str(cfg))


async def test_kubectl_explain_builtin_kinds(kube_env):
    rc, out, err = await kubectl(kube_env, "explain", "pod")
    assert rc == 0, err
    assert "KIND:       Pod" in out and "VERSION:    v1" in out
    assert "Pod is a collection of containers that can run on a host." in out
    assert "spec\t<PodSpec>" in out and "metadata\t<ObjectMeta>" in out

    rc, out, err = await kubectl(kube_env, "explain", "pod.spec.containers")
    assert rc == 0, err
    assert "FIELD: containers <[]Container>" in out
    assert "name\t<string> -required-" in out and "image\t<string>" in out
    assert "# noqa" not in out and "Gets the" not in out

    rc, out, err = await kubectl(kube_env, "explain", "deployment.spec.strategy", "--recursive")
    assert rc == 0, err
    assert "GROUP:      apps" in out and "FIELD: strategy <DeploymentStrategy>" in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "maxSurge\t<IntOrString>" in out and "maxUnavailable\t<IntOrString>" in out
    assert "type\t<string>" in out

    rc, out, err = await kubectl(kube_env, "explain", "pod.spec.containers.resources.limits")
    assert rc == 0 and "<map[string]Quantity>" in out, err
    rc, out, err = await kubectl(kube_env, "explain", "pod.spec.nosuchfield")
    assert rc != 0 and 'field "nosuchfield" does not exist' in err


async def test_kubectl_explain_custom_kind(server, kube_env, tmp_path):
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(CRD))
    rc, _, err = await kubectl(kube_env, "apply", "-f", str(tmp_path / "crd.yaml"))
    assert rc == 0, err
    rc, _, err = await kubectl(kube_env, "wait", "--for", "condition=established", "--timeout=10s",
                               f"crd/crontabs.{GROUP}")
    assert rc == 0, err
    rc, out, err = await kubectl(kube_env, "explain", "crontab")
    assert rc == 0, err
    assert f"GROUP:      {GROUP}" in out and "KIND:       CronTab" in out
    assert "CronTab runs a command on a schedule." in out and "metadata\t<ObjectMeta>" in out
    rc, out, err = await kubectl(kube_env, "explain", "crontabs.spec", "--recursive")
    assert rc == 0, err
    assert "cronSpec\t<string> -required-" in out and "replicas\t<integer>" in out
    rc, out, err = await kubectl(kube_env, "explain", "crontab.metadata.labels")
    assert rc == 0 and "<map[string]string>" in out, err


async def test_kubectl_apply_with_a_typo_is_refused_unless_validation_is_off(server, kube_env, tmp_path):
    manifest = deployment()
    manifest["spec"]["replica"] = 3
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(manifest))

    rc, out, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc != 0
    assert 'strict decoding error: unknown field "spec.replica"' in err and "BadRequest" in err
    assert (await call(server, "GET", f"{DEPLOYS}/web"))[0] == 404

    rc, out, err = await kubectl(kube_env, "apply", "--server-side", "-f", str(path))
    assert rc != 0 and 'unknown field "spec.replica"' in err

    rc, out, err = await kubectl(kube_env, "apply", "--validate=false", "-f", str(path))
    assert rc == 0 and "deployment.apps/web created" in out, err

    # an existing object: the patch kubectl sends is checked too, and Warn prints what was unknown
    fixed = deployment()
    fixed["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    path.write_text(yaml.safe_dump(fixed))
    rc, out, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc != 0 and "error when patching" in err
    assert 'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in err
    rc, out, err = await kubectl(kube_env, "apply", "--validate=warn", "-f", str(path))
    assert rc == 0 and "configured" in out, err
    assert 'Warning: unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in err

    # and an ordinary apply of a correct manifest is untouched by all this
    path.write_text(yaml.safe_dump(deployment("ok")))
    rc, out, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc == 0 and "deployment.apps/ok created" in out and "Warning" not in err, err


# ----------------------------------------------------------------- every operation usable by generic tools


async def test_every_operation_declares_its_path_parameters_query_types_and_body(server):
    """A tool that knows only the document (schemathesis, an SDK generator) can call
    every operation: each {param} of a path is declared, writes carry a body."""
    _, root, _ = await call(server, "GET", "/openapi/v3")
    ops = 0
    for entry in root["paths"].values():
        _, doc, _ = await call(server, "GET", entry["serverRelativeURL"])
        for path, item in doc["paths"].items():
            declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            for method, op in item.items():
                if method == "parameters":
                    continue
                ops += 1
                for p in op["parameters"]:
                    assert p["in"] == "query" and p["schema"]["type"] in ("string", "integer", "boolean"), (path, p)
                if method in ("post", "put", "patch"):
                    content = op["requestBody"]["content"]
                    assert all("schema" in c for c in content.values()), (path, method)
                    if method == "patch":
                        assert "application/merge-patch+json" in content
                else:
                    assert method == "delete" or "requestBody" not in op, (path, method)
    assert ops >= 200  # 22 kinds × 7 operations, plus their subresources

    _, v3, _ = await call(server, "GET", root["paths"]["api/v1"]["serverRelativeURL"])
    pods = v3["paths"]["/api/v1/namespaces/{namespace}/pods"]
    assert {"name": "limit", "in": "query", "schema": {"type": "integer", "uniqueItems": True}} in (
        pods["get"]["parameters"])
    assert pods["post"]["requestBody"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{POD}"}
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in v3["paths"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}/binding" in v3["paths"]
    # v2: the same as body parameters
    _, v2, _ = await call(server, "GET", "/openapi/v2")
    put = v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["put"]
    assert {"name": "body", "in": "body", "required": True,
            "schema": {"$ref": f"#/definitions/{DEPLOYMENT}"}} in put["parameters"]
    patch = v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]


async def test_documents_carry_the_patch_merge_keys(server):
    _, v2, _ = await call(server, "GET", "/openapi/v2")
    containers = v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    env = v2["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["env"]
    assert env["x-kubernetes-patch-merge-key"] == "name"
    assert "x-kubernetes-patch-strategy" not in v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"][
        "tolerations"]


# ----------------------------------------------------------------- /openapi/v2 in protobuf


def _wire(buf: bytes) -> dict[int, list]:
    """Field number → values of one protobuf message (length-delimited values as bytes)."""
    from sendo.api.protobuf import fields
    out: dict[int, list] = {}
    for num, _, val in fields(buf):
        out.setdefault(num, []).append(val)
    return out


async def test_v2_in_protobuf_when_kubectl_asks_for_it(server):
    accept = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json"  # as kubectl asks
    status, headers, raw = await request(server, "GET", "/openapi/v2", headers={"Accept": accept})
    assert status == 200
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    doc = _wire(raw)
    assert doc[1] == [b"2.0"]
    definitions = {_wire(d)[1][0].decode(): _wire(d)[2][0] for d in _wire(doc[9][0])[1]}
    pod = _wire(definitions[POD])
    assert pod[4][0].decode().startswith("Pod is a collection of containers")  # description
    assert _wire(pod[22][0])[1] == [b"object"]  # type
    gvk = {_wire(e)[1][0]: _wire(_wire(e)[2][0])[2][0] for e in pod[31]}
    assert orjson.loads(gvk[b"x-kubernetes-group-version-kind"]) == [{"group": "", "version": "v1", "kind": "Pod"}]
    paths = {_wire(p)[1][0].decode() for p in _wire(doc[8][0])[2]}
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}" in paths
    _, as_json, _ = await call(server, "GET", "/openapi/v2")  # JSON clients still get JSON
    assert as_json["swagger"] == "2.0"


async def test_kubectl_apply_of_a_kind_the_server_lacks_says_so(kube_env, tmp_path):
    path = tmp_path / "widget.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}))
    rc, out, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc != 0
    assert 'no matches for kind "Widget" in version "example.com/v1"' in err, err
    assert "proto:" not in err


async def test_kubectl_apply_removes_a_list_entry_dropped_from_the_manifest(server, kube_env, tmp_path):
    """kubectl computes apply patches from the documents: without the merge keys it would
    send the env list whole and the server, merging by name, would keep the removed one."""
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(d))
    rc, _, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc == 0, err
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "3"}]
    path.write_text(yaml.safe_dump(d))
    rc, _, err = await kubectl(kube_env, "apply", "-f", str(path))
    assert rc == 0, err
    _, now, _ = await call(server, "GET", f"{DEPLOYS}/web")
    assert now["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "3"}]
