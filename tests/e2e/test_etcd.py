"""The e2e core on etcd: `sendo up --datastore etcd://…` with the same tests that run on SQLite.

A Deployment runs and is watched, scaled and deleted (official `kubernetes` client), a
Service gets endpoints and balances over them, `kubectl get --watch` and a CRD through
the real kubectl — each the very test function of the SQLite suite, here run against one
`sendo up` whose store is an etcd member on loopback (started and stopped by PID).
"""
from __future__ import annotations

import os

import pytest

from .harness import Cluster, shared_cluster
from .test_kubectl_verbs import test_custom_resources, test_get_output_formats_and_watch  # noqa: F401
from .test_python_client import test_deployment_watch_scale_delete  # noqa: F401
from .test_services import test_cluster_ip_balances_and_follows_scaling  # noqa: F401


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, etcd):
    """One sendo up on etcd for the module (keys under a prefix of its own)."""
    url = f"{etcd.url}/e2e-{os.getpid()}"
    with shared_cluster(tmp_path_factory.mktemp("etcd-e2e"), ("--datastore", url)) as c:
        yield c


def test_objects_live_in_etcd_under_kubernetes_keys(cluster: Cluster, etcd):
    import asyncio

    from sendo.store import open_store
    cluster.kubectl("create", "configmap", "in-etcd", "--from-literal=a=b")

    async def read():
        s = open_store(f"{etcd.url}/e2e-{os.getpid()}")
        await s.start()
        try:
            return await s.get("/registry/core/configmaps/default/in-etcd")
        finally:
            await s.close()
    kv = asyncio.run(read())
    assert kv is not None
    rv = cluster.kubectl_json("get", "configmap", "in-etcd")["metadata"]["resourceVersion"]
    assert rv == str(kv.mod_rev)  # resourceVersion is the etcd key's mod revision
