"""What the official `kubernetes` client and kubectl need from the wire: required status
fields, default tolerations, ReplicationControllers."""
from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import wait_until

from sendo.client import ApiError
from sendo.server import kubeconfig

KUBECTL = Path(sys.executable).parent / "kubectl"

TEMPLATE = {"metadata": {"labels": {"app": "wire"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


@pytest.fixture
def official(server, tmp_path):
    """An ApiClient of the official client. It is synchronous: call it through `call()`,
    in a thread, so the server on this event loop keeps serving."""
    from kubernetes import client, config
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(server.cfg.url, server.admin_token, server.ca_pem)))
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    api = client.ApiClient(cfg)
    yield api
    api.close()


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


def workload(name: str, **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "wire"}}, "template": copy.deepcopy(TEMPLATE), **spec}}


@pytest.mark.parametrize("kind,extra", [("daemon_set", {}), ("stateful_set", {"serviceName": "wire"}),
                                        ("replica_set", {"replicas": 0})])
async def test_official_client_creates_reads_and_lists_workloads(official, client, kind, extra):
    """Before: ValueError "Invalid value for current_number_scheduled, must not be None" on create."""
    from kubernetes.client import AppsV1Api
    apps = AppsV1Api(official)
    plural = kind.replace("_", "") + "s"
    created = await call(getattr(apps, f"create_namespaced_{kind}"), "default", workload("w", **extra))
    read = await call(getattr(apps, f"read_namespaced_{kind}"), "w", "default")
    listed = await call(getattr(apps, f"list_namespaced_{kind}"), "default")
    assert created.metadata.uid == read.metadata.uid == listed.items[0].metadata.uid
    if kind == "daemon_set":
        s = read.status
        assert (s.current_number_scheduled, s.desired_number_scheduled, s.number_misscheduled,
                s.number_ready) == (0, 0, 0, 0)
    else:
        assert read.status.replicas == 0
    # a whole status written without the counters (as a controller may) still reads back
    raw = await client.request("GET", f"/apis/apps/v1/namespaces/default/{plural}/w")
    raw["status"] = {"observedGeneration": 1}
    await client.request("PUT", f"/apis/apps/v1/namespaces/default/{plural}/w/status", body=raw)
    assert (await call(getattr(apps, f"read_namespaced_{kind}_status"), "w", "default")).status.observed_generation == 1


NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": 300}


def pod(name: str, tolerations: list | None = None) -> dict:
    spec = copy.deepcopy(TEMPLATE["spec"])
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def test_pods_get_default_toleration_seconds_once(client):
    pods = "/api/v1/namespaces/default/pods"
    plain = await client.request("POST", pods, body=pod("plain"))
    assert plain["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]

    own = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    mine = await client.request("POST", pods, body=pod("mine", [own]))
    assert mine["spec"]["tolerations"] == [own, UNREACHABLE]

    everything = {"operator": "Exists"}
    assert (await client.request("POST", pods, body=pod("all", [everything])))["spec"]["tolerations"] == [everything]

    # an update that leaves them out (the manifest as first written) keeps them: no duplicates, no 422
    body = pod("plain")
    body["metadata"]["labels"] = {"updated": "yes"}
    updated = await client.request("PUT", f"{pods}/plain", body=body)
    assert updated["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]
    assert updated["metadata"]["labels"] == {"updated": "yes"}


# ----------------------------------------------------------------- ReplicationController

RCS = "/api/v1/namespaces/default/replicationcontrollers"


def rc(name: str, replicas: int = 2, **spec) -> dict:
    template = copy.deepcopy(TEMPLATE)
    template["metadata"]["labels"] = {"app": name}
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "template": template, **spec}}


async def test_replicationcontroller_defaults_validation_and_columns(client):
    created = await client.request("POST", RCS, body=rc("web"))
    assert created["spec"]["selector"] == {"app": "web"}  # from the template's labels
    assert created["metadata"]["labels"] == {"app": "web"}
    assert created["status"] == {"replicas": 0}
    assert created["spec"]["template"]["spec"]["restartPolicy"] == "Always"

    bad = [(rc("a", selector={"app": "other"}), "spec.template.metadata.labels", "`selector` does not match"),
           (rc("b", replicas=-1), "spec.replicas", "greater than or equal to 0"),
           (rc("c", replicas=2**31), "spec.replicas", "32-bit"),
           ({**rc("d"), "spec": {"replicas": 1, "selector": {"app": "d"}}}, "spec.template", "Required value"),
           (rc("e", selector={"app": 5}), "spec.selector", "must be a string")]
    never = rc("f")
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    bad.append((never, "spec.template.spec.restartPolicy", 'supported values: "Always"'))
    for body, field, message in bad:
        with pytest.raises(ApiError) as e:
            await client.request("POST", RCS, body=body)
        assert e.value.status == 422, e.value.body
        causes = {c["field"]: c["message"] for c in e.value.body["details"]["causes"]}
        assert field in causes and message in causes[field], (field, causes)

    created["spec"]["selector"] = {"app": "web", "tier": "x"}  # may change, unlike a ReplicaSet's
    created["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert (await client.request("PUT", f"{RCS}/web", body=created))["spec"]["selector"]["tier"] == "x"

    table = await client.session.get(client.server + RCS, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    body = await table.json()
    assert [c["name"] for c in body["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Desired", "Current", "Ready", "Age"]
    assert body["rows"][0]["cells"][:4] == ["web", 2, 0, 0]
    assert body["rows"][0]["cells"][-1] == "app=web,tier=x"


@pytest.fixture
async def replication_manager(client):
    """The ReplicationController controller and the garbage collector, on a shared informer factory."""
    from sendo.controllers.base import InformerFactory
    from sendo.controllers.gc import GarbageCollector
    from sendo.controllers.replicationcontroller import ReplicationManager
    informers = InformerFactory(client)
    loops = [ReplicationManager(client, informers), GarbageCollector(client, informers)]
    await informers.start()
    for loop in loops:
        await loop.start()
    yield loops[0]
    for loop in loops:
        await loop.stop()
    await informers.stop()


async def live_pods(client, app: str) -> list[dict]:
    pods = (await client.request("GET", "/api/v1/namespaces/default/pods",
                                 params={"labelSelector": f"app={app}"}))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def kubectl(kubeconfig_path, *args) -> subprocess.CompletedProcess:
    """The real kubectl, bounded in time (call it in a thread)."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig_path), HOME=str(kubeconfig_path.parent))
    return subprocess.run([str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=60)


async def test_replicationcontroller_is_reconciled_and_scaled_by_kubectl_and_the_official_client(
        client, server, official, replication_manager, tmp_path):
    from kubernetes.client import CoreV1Api
    core = CoreV1Api(official)
    created = await call(core.create_namespaced_replication_controller, "default", rc("web"))
    assert created.status.replicas == 0 and created.spec.selector == {"app": "web"}

    async def pods_are(n: int) -> bool:
        return len(await live_pods(client, "web")) == n
    await wait_until(lambda: pods_are(2), what="2 pods")
    pods = await live_pods(client, "web")
    assert {r["kind"] for p in pods for r in p["metadata"]["ownerReferences"]} == {"ReplicationController"}

    async def status_replicas(n: int) -> bool:
        return (await call(core.read_namespaced_replication_controller_status, "web", "default")).status.replicas == n
    await wait_until(lambda: status_replicas(2), what="status.replicas 2")

    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump(kubeconfig(server.cfg.url, server.admin_token, server.ca_pem)))
    done = await asyncio.to_thread(kubectl, cfg, "scale", "rc", "web", "--replicas=3")
    assert done.returncode == 0, done.stderr
    assert "scaled" in done.stdout
    await wait_until(lambda: pods_are(3), what="3 pods after kubectl scale")
    got = await asyncio.to_thread(kubectl, cfg, "get", "rc", "web")
    assert got.returncode == 0, got.stderr
    assert got.stdout.split("\n")[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]

    scale = await call(core.patch_namespaced_replication_controller_scale, "web", "default", {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1
    await wait_until(lambda: pods_are(1), what="1 pod after scaling down")
    listed = await call(core.list_namespaced_replication_controller, "default")
    assert [(i.metadata.name, i.spec.replicas) for i in listed.items] == [("web", 1)]

    done = await asyncio.to_thread(kubectl, cfg, "delete", "rc", "web", "--wait=false")
    assert done.returncode == 0, done.stderr
    await wait_until(lambda: pods_are(0), what="the pods collected after the RC is deleted")
