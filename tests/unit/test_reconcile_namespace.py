"""Namespace controller, one reconcile at a time on a fake API that records the calls."""
import pytest

from sendo.client import kind
from sendo.controllers.namespace import NamespaceController

NAMESPACES, PODS, CONFIGMAPS = kind("namespaces"), kind("pods"), kind("configmaps")
DEPLOY = kind("deployments", "apps")
GONE = "2026-01-01T00:00:00Z"


def resource(name, namespaced=True, verbs=("get", "list", "delete")):
    return {"name": name, "namespaced": namespaced, "verbs": list(verbs)}


@pytest.fixture
def discovery(fake_api):
    """What discovery answers: core pods/configmaps/nodes, apps deployments."""
    objs = fake_api.fake.objects
    objs["/apis"] = {"groups": [{"name": "apps", "preferredVersion": {"groupVersion": "apps/v1"}}]}
    objs["/api/v1"] = {"resources": [resource("pods"), resource("pods/status"), resource("configmaps"),
                                     resource("nodes", namespaced=False),
                                     resource("bindings", verbs=("create",))]}
    objs["/apis/apps/v1"] = {"resources": [resource("deployments")]}
    return fake_api


def namespace(name="doomed", deleting=True):
    meta = {"name": name, **({"deletionTimestamp": GONE} if deleting else {})}
    return {"metadata": meta, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}}


def obj(name, **meta):
    return {"metadata": {"name": name, "namespace": "doomed", **meta}}


async def test_everything_inside_a_terminating_namespace_is_deleted_then_it_is_looked_at_again(discovery):
    nc = discovery.build(NamespaceController)
    discovery.add(NAMESPACES, namespace())
    discovery.add(PODS, obj("p"), obj("leaving", deletionTimestamp=GONE))
    discovery.add(CONFIGMAPS, obj("cm"))
    discovery.add(DEPLOY, obj("d"))
    discovery.fake.calls.clear()
    assert await nc.reconcile("doomed") == 0.5  # the contents are going: look again soon
    deletes = [c for c in discovery.fake.writes() if c.method == "DELETE"]
    assert sorted(c.path for c in deletes) == ["/api/v1/namespaces/doomed/configmaps/cm",
                                               "/api/v1/namespaces/doomed/pods/p",
                                               "/apis/apps/v1/namespaces/doomed/deployments/d"]
    assert all(c.body == {"propagationPolicy": "Background"} for c in deletes)
    assert not [c for c in discovery.fake.calls if "finalize" in c.path or "bindings" in c.path
                or "/nodes" in c.path or "pods/status" in c.path]


async def test_an_empty_terminating_namespace_is_released_through_finalize(discovery):
    nc = discovery.build(NamespaceController)
    discovery.add(NAMESPACES, namespace())
    writes = await discovery.run(nc, "doomed")
    assert [(c.method, c.path) for c in writes] == [("PUT", "/api/v1/namespaces/doomed/finalize")]
    assert writes[0].body["spec"]["finalizers"] == []


async def test_a_live_namespace_is_not_touched(discovery):
    nc = discovery.build(NamespaceController)
    discovery.add(NAMESPACES, namespace("alive", deleting=False))
    discovery.add(PODS, obj("p") | {"metadata": {"name": "p", "namespace": "alive"}})
    await discovery.run(nc, "alive")
    assert discovery.fake.calls == []


async def test_a_namespace_without_our_finalizer_is_left_to_others(discovery):
    nc = discovery.build(NamespaceController)
    discovery.add(NAMESPACES, namespace() | {"spec": {"finalizers": ["example.com/other"]}})
    await discovery.run(nc, "doomed")
    assert discovery.fake.calls == []
