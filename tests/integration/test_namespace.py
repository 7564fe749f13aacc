"""Namespace lifecycle: Terminating, contents removed, then gone; no new content meanwhile."""
from sendo.client import ApiError, kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.namespace import NamespaceController
from conftest import wait_until

NS = kind("namespaces")
CM = kind("configmaps")


async def test_deleted_namespace_terminates_empties_and_disappears(client):
    await client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    for i in range(3):
        await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": f"c{i}", "namespace": "team"}})
    await client.delete(NS, None, "team")
    ns = await client.get(NS, None, "team")
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    try:
        await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "late", "namespace": "team"}})
        raise AssertionError("created content in a terminating namespace")
    except ApiError as e:
        assert e.status == 403 and "being terminated" in e.body["message"]

    informers = InformerFactory(client)
    ctrl = NamespaceController(client, informers)
    await informers.start()
    await ctrl.start()
    try:
        async def gone():
            return await client.get_or_none(NS, None, "team") is None
        await wait_until(gone, 10, what="namespace to disappear")
        assert (await client.list(CM, "team"))["items"] == []
    finally:
        await ctrl.stop()
        await informers.stop()
