"""Server-side apply and managedFields over HTTPS, and with the real kubectl."""
import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from sendo.client import ApiError, kind
from sendo.client.rest import path
from sendo.kinds.base import Resource
from sendo.server import kubeconfig

DEPLOY = kind("deployments", "apps")
CM = kind("configmaps")
APPLY = "application/apply-patch+yaml"
KUBECTL = Path(sys.executable).parent / "kubectl"


def deployment(replicas=2, image="nginx", **labels):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", **labels}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


async def apply(client, obj, manager="kubectl", r=DEPLOY, name="web", ns="default", **params):
    if manager is not None:
        params["fieldManager"] = manager
    body = obj if isinstance(obj, (bytes, str)) else orjson.dumps(obj)
    async with client.session.patch(client.server + path(r, ns, name), data=body, params=params,
                                     headers={"Content-Type": APPLY}) as resp:
        got = orjson.loads(await resp.read())
        if resp.status >= 400:
            raise ApiError(resp.status, got)
        return resp.status, got


def managers(obj):
    return {(e["manager"], e["operation"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}


async def test_apply_creates_with_defaults_and_an_apply_entry(client):
    status, d = await apply(client, deployment())
    assert status == 201 and d["metadata"]["uid"] and d["metadata"]["generation"] == 1
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted like any create
    [entry] = d["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl", "Apply", "apps/v1")
    assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {} and "f:strategy" not in entry["fieldsV1"]["f:spec"]
    assert await client.get(DEPLOY, "default", "web") == d
    status, again = await apply(client, deployment())  # nothing changed: no write
    assert status == 200 and again["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]


async def test_apply_accepts_yaml_and_checks_like_a_create(client):
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"},
                           "data": {"when": "2024-01-01T00:00:00Z"}})
    status, c = await apply(client, body, r=CM, name="y")
    assert status == 201 and c["data"] == {"when": "2024-01-01T00:00:00Z"}  # timestamps stay strings
    with pytest.raises(ApiError) as e:
        await apply(client, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}}, r=CM, name="y",
                    ns="nope")
    assert e.value.status == 404
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(ApiError) as e:
        await apply(client, bad)
    assert e.value.status == 422 and await client.get_or_none(DEPLOY, "default", "web") is None
    with pytest.raises(ApiError) as e:
        await apply(client, {**deployment(), "kind": "ReplicaSet"})
    assert e.value.status == 400


async def test_apply_needs_a_field_manager_and_force_belongs_to_apply(client):
    with pytest.raises(ApiError) as e:
        await apply(client, deployment(), manager=None)
    assert e.value.status == 422 and e.value.body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
    assert e.value.body["details"]["causes"][0]["field"] == "fieldManager"
    await client.create(DEPLOY, deployment())
    with pytest.raises(ApiError) as e:
        await client.request("PATCH", path(DEPLOY, "default", "web"), body={"spec": {"replicas": 1}},
                             params={"force": "true"}, content_type="application/merge-patch+json")
    assert e.value.status == 422 and "force: Forbidden: may not be specified for non-apply patch" in e.value.body[
        "message"]


async def test_reapply_without_a_field_removes_it(client):
    await apply(client, deployment(tier="web"))
    smaller = deployment()
    del smaller["spec"]["replicas"]
    _, d = await apply(client, smaller)
    assert d["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["replicas"] == 1  # removed, then defaulted again
    assert "f:replicas" not in managers(d)["kubectl", "Apply", ""]["fieldsV1"]["f:spec"]


async def test_conflict_between_two_managers_then_force(client):
    await apply(client, deployment(), manager="team-a")
    with pytest.raises(ApiError) as e:
        await apply(client, deployment(replicas=3), manager="team-b")
    assert e.value.status == 409 and e.value.body["reason"] == "Conflict"
    assert e.value.body["message"] == 'Apply failed with 1 conflict: conflict with "team-a": .spec.replicas'
    assert e.value.body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "team-a"', "field": ".spec.replicas"}]
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 2

    _, d = await apply(client, deployment(replicas=3), manager="team-b", force="true")
    assert d["spec"]["replicas"] == 3
    fields = {m: e["fieldsV1"] for (m, _, _), e in managers(d).items()}
    assert "f:replicas" in fields["team-b"]["f:spec"] and "f:replicas" not in fields["team-a"]["f:spec"]


async def test_an_update_conflicts_with_apply_as_kubernetes_names_it(client):
    await apply(client, deployment())
    await client.request("PATCH", path(DEPLOY, "default", "web", "scale"), body={"spec": {"replicas": 5}},
                         params={"fieldManager": "kubectl-scale"}, content_type="application/merge-patch+json")
    with pytest.raises(ApiError) as e:
        await apply(client, deployment())
    assert e.value.body["message"] == ('Apply failed with 1 conflict: conflict with "kubectl-scale" with subresource '
                                       '"scale" using apps/v1: .spec.replicas')


async def test_ordinary_writes_record_update_entries(client, server):
    d = await client.create(DEPLOY, deployment())  # our client's User-Agent is "sendo"
    assert list(managers(d)) == [("sendo", "Update", "")]
    assert managers(d)["sendo", "Update", ""]["fieldsV1"]["f:spec"]["f:replicas"] == {}

    d["spec"]["replicas"] = 4
    d = await client.request("PUT", path(DEPLOY, "default", "web"), body=d, params={"fieldManager": "editor"})
    assert managers(d)["editor", "Update", ""]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in managers(d)["sendo", "Update", ""]["fieldsV1"]["f:spec"]

    async with client.session.patch(client.server + path(DEPLOY, "default", "web"),
                                    data=orjson.dumps({"metadata": {"labels": {"x": "1"}}}),
                                    headers={"Content-Type": "application/merge-patch+json",
                                             "User-Agent": "kubectl-edit/v1.37.0 (linux/amd64) kubernetes/abc"}) as r:
        d = orjson.loads(await r.read())
    assert managers(d)["kubectl-edit", "Update", ""]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:x": {}}}}

    d["status"] = {"replicas": 1}
    d = await client.update_status(DEPLOY, d)
    status_entry = managers(d)["sendo", "Update", "status"]
    assert status_entry["subresource"] == "status" and status_entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


async def test_dry_run_apply_stores_nothing(client):
    status, d = await apply(client, deployment(), dryRun="All")
    assert status == 201 and d["metadata"]["managedFields"][0]["manager"] == "kubectl"
    assert await client.get_or_none(DEPLOY, "default", "web") is None
    await apply(client, deployment())
    _, d = await apply(client, deployment(replicas=7), dryRun="All")
    assert d["spec"]["replicas"] == 7
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 2


async def test_strategic_merge_patch_is_refused_for_custom_resources(client, server):
    widgets = Resource("example.com", "v1", "Widget", "widgets", True, custom=True)
    server.registry.add(widgets)
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
         "spec": {"size": 1}}
    await client.create(widgets, w)
    with pytest.raises(ApiError) as e:
        await client.patch(widgets, "default", "w", {"spec": {"size": 2}}, type="strategic")
    assert e.value.status == 415 and e.value.body["reason"] == "UnsupportedMediaType"
    assert e.value.body["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
    assert (await client.patch(widgets, "default", "w", {"spec": {"size": 2}}))["spec"]["size"] == 2
    _, got = await apply(client, {**w, "spec": {"size": 3}}, r=widgets, name="w", manager="me", force="true")
    assert got["spec"]["size"] == 3


# ----------------------------------------------------------------------------- the real kubectl

@pytest.fixture
def kubectl(server, tmp_path):
    """Run the real kubectl against the in-process server (its own HOME: discovery cache)."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig(server.cfg.url, server.admin_token, server.ca_pem)))
    env = {"HOME": str(home), "KUBECONFIG": str(config), "PATH": os.environ.get("PATH", "")}

    async def run(*args: str, check: bool = True) -> tuple[int, str, str]:
        p = await asyncio.create_subprocess_exec(str(KUBECTL), *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {err.decode()}")
        return p.returncode, out.decode(), err.decode()
    run.home = home
    return run


async def test_kubectl_server_side_apply(kubectl, client):
    manifest = kubectl.home / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(deployment()))
    _, out, _ = await kubectl("apply", "--server-side", "-f", str(manifest))
    assert "deployment.apps/web serverside-applied" in out
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 2

    manifest.write_text(yaml.safe_dump(deployment(replicas=3)))
    await kubectl("apply", "--server-side", "-f", str(manifest))
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 3

    await kubectl("scale", "deployment/web", "--replicas=5")
    code, _, err = await kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert code != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: ' \
           '.spec.replicas' in err
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 5

    await kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert (await client.get(DEPLOY, "default", "web"))["spec"]["replicas"] == 3

    _, out, _ = await kubectl("get", "deploy", "web", "-o", "yaml", "--show-managed-fields")
    shown = yaml.safe_load(out)["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in shown] == [("kubectl", "Apply")]  # scale's only field moved
    _, out, _ = await kubectl("get", "deploy", "web", "-o", "yaml")
    assert "managedFields" not in out


async def test_kubectl_client_side_apply_then_server_side(kubectl, client):
    manifest = kubectl.home / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                        "data": {"a": "1"}}))
    await kubectl("apply", "-f", str(manifest))
    c = await client.get(CM, "default", "c")
    assert list(managers(c)) == [("kubectl-client-side-apply", "Update", "")]
    await kubectl("apply", "--server-side", "-f", str(manifest))  # kubectl migrates ownership to itself
    c = await client.get(CM, "default", "c")
    assert ("kubectl", "Apply", "") in managers(c)
    assert managers(c)["kubectl", "Apply", ""]["fieldsV1"]["f:data"] == {"f:a": {}}
