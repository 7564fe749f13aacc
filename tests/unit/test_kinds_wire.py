"""What the official `kubernetes` client and kubectl need from the wire: required status
fields, default tolerations, ReplicationControllers."""
from __future__ import annotations

import asyncio
import copy

import pytest
import yaml

from sendo.server import kubeconfig

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
