"""Python clients we did not write, against one `sendo up` shared by this module:
the official `kubernetes` client, lightkube and kr8s. Each test uses names of its own."""
from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from .harness import Cluster, poll, ready_pods, shared_cluster, unique_port, web_deployment

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One sendo up for the whole module (the harness's Cluster, module scope)."""
    with shared_cluster(tmp_path_factory.mktemp("clients")) as c:
        yield c


@pytest.fixture(autouse=True)
def _alive_no_proxy(cluster: Cluster, monkeypatch):
    """The cluster still runs; httpx-based clients must not route loopback through a proxy."""
    for v in _PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    assert cluster.proc is not None and cluster.proc.poll() is None, \
        "sendo up is no longer running:\n" + cluster.log_tail()
    yield


def _cm(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def collect(events: Callable[[], Iterable[Any]], done: Callable[[list], bool], timeout: float,
            what: str) -> list:
    """Consume a watch in a daemon thread until done(seen) holds; fail after the deadline.
    (lightkube's watch reconnects forever, so it cannot be bounded from inside.)"""
    seen: list = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            for ev in events():
                seen.append(ev)
                if done(seen):
                    return
        except BaseException as e:  # handed to the test thread
            failed.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if failed:
        raise failed[0]
    assert not t.is_alive(), f"timed out after {timeout}s waiting for {what}; saw {seen}"
    return seen


def _status(e: ApiException) -> dict:
    try:
        return json.loads(e.body)
    except (TypeError, ValueError):
        return {}


# ------------------------------------------------------------------------------ kubernetes

def test_kubernetes_crud_selectors_pagination(cluster: Cluster):
    core = client.CoreV1Api(cluster.api())

    # --- CRUD with optimistic concurrency
    cm = core.create_namespaced_config_map("default", _cm("crud", {"a": "1"}, {"app": "crud"}))
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map("default", _cm("crud", {}))
    assert ei.value.status == 409 and _status(ei.value)["reason"] == "AlreadyExists"
    got = core.read_namespaced_config_map("crud", "default")
    got.data["b"] = "2"
    updated = core.replace_namespaced_config_map("crud", "default", got)
    assert updated.data == {"a": "1", "b": "2"}
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    stale = cm
    stale.data = {"stale": "yes"}
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_config_map("crud", "default", stale)  # carries the old resourceVersion
    assert ei.value.status == 409 and _status(ei.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("crud", "default").data == {"a": "1", "b": "2"}
    deleted = core.delete_namespaced_config_map("crud", "default")  # checked at the end
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_config_map("crud", "default")
    assert ei.value.status == 404 and _status(ei.value)["reason"] == "NotFound"
    assert _status(ei.value)["details"]["name"] == "crud"

    # --- label and field selectors
    names = [f"page-{i:02d}" for i in range(7)]
    for i, n in enumerate(names):
        core.create_namespaced_config_map("default", _cm(n, {"i": str(i)},
                                                         {"batch": "page", "parity": "even" if i % 2 == 0 else "odd"}))
    sel = lambda **kw: [c.metadata.name for c in core.list_namespaced_config_map("default", **kw).items]
    assert sel(label_selector="batch=page") == names
    assert sel(label_selector="batch=page,parity=odd") == names[1::2]
    assert sel(label_selector="parity in (odd),batch") == names[1::2]
    assert sel(label_selector="batch=page,parity!=odd") == names[0::2]
    assert sel(field_selector="metadata.name=page-03") == ["page-03"]
    assert sel(label_selector="batch=page", field_selector="metadata.name!=page-03") == [
        n for n in names if n != "page-03"]
    assert sel(label_selector="batch=nothing") == []

    # --- pagination: limit + continue, a consistent snapshot across pages
    first = core.list_namespaced_config_map("default", label_selector="batch=page", limit=3)
    pages, seen, token = 1, [c.metadata.name for c in first.items], first.metadata._continue
    assert len(first.items) == 3 and token
    rv = first.metadata.resource_version
    core.create_namespaced_config_map("default", _cm("page-99", {}, {"batch": "page"}))  # after the snapshot
    while token:
        page = core.list_namespaced_config_map("default", label_selector="batch=page", limit=3, _continue=token)
        assert len(page.items) <= 3
        assert page.metadata.resource_version == rv, "continued pages serve the first page's snapshot"
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        pages += 1
    assert seen == names and pages == 3
    assert sel(label_selector="batch=page") == names + ["page-99"]
    with pytest.raises(ApiException) as ei:
        core.list_namespaced_config_map("default", limit=3, _continue="not-a-token")
    assert ei.value.status in (400, 410), ei.value
    core.delete_collection_namespaced_config_map("default", label_selector="batch=page")
    assert sel(label_selector="batch=page") == []

    # a field selector on a field the kind does not index is refused
    with pytest.raises(ApiException) as ei:
        core.list_namespaced_config_map("default", field_selector="data.i=1")
    assert ei.value.status == 400 and "field label not supported: data.i" in _status(ei.value).get("message", "")

    # DELETE of a ConfigMap answers with a Status of Success naming what was deleted (the
    # deleted object itself is returned only for kinds like Pod and Service)
    # (client 37 declares delete's response as a plain object, so it hands back the dict)
    status = deleted if isinstance(deleted, dict) else deleted.to_dict()
    assert status["kind"] == "Status" and status["status"] == "Success", status
    assert status["details"]["name"] == "crud" and status["details"]["kind"] == "configmaps"


def test_kubernetes_deployment_patches(cluster: Cluster):
    api = cluster.api()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    name, port = "patchy", unique_port()
    apps.create_namespaced_deployment("default", web_deployment(name, port, replicas=1))

    def ready(n: int):
        d = apps.read_namespaced_deployment(name, "default")
        s = d.status
        return d if (s.ready_replicas or 0) == n and s.updated_replicas == n and s.replicas == n \
            and s.observed_generation == d.metadata.generation else None
    poll(lambda: ready(1), 60, what="one ready replica")

    # JSON patch (a list body)
    d = apps.patch_namespaced_deployment(name, "default", [
        {"op": "add", "path": "/metadata/labels/stage", "value": "json"},
        {"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert d.metadata.labels == {"app": name, "stage": "json"} and d.spec.replicas == 2
    # JSON merge patch (a dict body with the merge content type): null deletes, lists are replaced
    d = apps.patch_namespaced_deployment(name, "default", {"metadata": {"labels": {"stage": None, "merge": "yes"}},
                                                           "spec": {"minReadySeconds": 0}},
                                         _content_type="application/merge-patch+json")
    assert d.metadata.labels == {"app": name, "merge": "yes"}
    # strategic merge patch (a dict body): containers and env merge by name
    d = apps.patch_namespaced_deployment(name, "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "STRATEGIC", "value": "1"}]}]}}}})
    (c,) = d.spec.template.spec.containers
    assert sorted(e.name for e in c.env) == ["POD_IP", "STRATEGIC"]
    assert c.command[:3] == ["python3", "-m", "http.server"]
    # a JSON patch whose test fails changes nothing
    with pytest.raises(ApiException) as ei:
        apps.patch_namespaced_deployment(name, "default", [{"op": "test", "path": "/spec/replicas", "value": 9},
                                                           {"op": "replace", "path": "/spec/replicas", "value": 9}])
    assert 400 <= ei.value.status < 500 and ei.value.status != 404, ei.value
    assert apps.read_namespaced_deployment(name, "default").spec.replicas == 2
    # server-side apply through the client, with a field manager of its own
    d = apps.patch_namespaced_deployment(
        name, "default", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": name, "annotations": {"e2e/applied": "yes"}}},
        field_manager="e2e-client", _content_type="application/apply-patch+yaml")
    assert d.metadata.annotations["e2e/applied"] == "yes"
    assert "e2e-client" in {m.manager for m in d.metadata.managed_fields}

    poll(lambda: ready(2), 60, what="two ready replicas with the strategic patch rolled out")
    items = poll(lambda: ready_pods(cluster, f"app={name}", 2, port), 60, what="two new pods answering")
    for p in items:
        assert {"name": "STRATEGIC", "value": "1"} in p["spec"]["containers"][0]["env"], p["spec"]
    assert {p.metadata.name for p in core.list_namespaced_pod("default", label_selector=f"app={name}").items} \
        == {p["metadata"]["name"] for p in items}
    apps.delete_namespaced_deployment(name, "default", propagation_policy="Foreground")
    poll(lambda: not apps.list_namespaced_deployment("default", field_selector=f"metadata.name={name}").items,
         60, what="deployment deleted")


def _compact_store(data_dir: Path) -> int:
    """Compact the stopped cluster's store to its newest revision through the store's own
    API (what `etcdctl compact` does for etcd): every older revision is then too old."""
    from sendo.store.sqlite import SQLiteStore
    (db,) = data_dir.glob("**/state.db")

    async def run() -> int:
        store = SQLiteStore(str(db))
        await store.start()
        try:
            rev = store.revision
            await store.compact(rev)
            return rev
        finally:
            await store.close()
    return asyncio.run(run())


def test_kubernetes_watch_expired_then_relist(cluster: Cluster):
    core = client.CoreV1Api(cluster.api())
    old = core.create_namespaced_config_map("default", _cm("watched", {"v": "0"}, {"w": "yes"}))
    old_rv = old.metadata.resource_version
    for i in range(1, 4):
        core.patch_namespaced_config_map("watched", "default", {"data": {"v": str(i)}})

    # a watch from a still-kept revision replays the changes since then
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, "default", label_selector="w=yes",
                       resource_version=old_rv, timeout_seconds=10, _request_timeout=30):
        seen.append((ev["type"], ev["object"].data["v"]))
        if len(seen) == 3:
            w.stop()
    assert seen == [("MODIFIED", "1"), ("MODIFIED", "2"), ("MODIFIED", "3")], seen

    # compact everything, then the old revision is gone: 410 Expired, as an HTTP status or an ERROR event
    cluster.stop()
    compacted_to = _compact_store(cluster.data_dir)
    assert compacted_to > int(old_rv)
    cluster.start()  # (sendo may pick another port: the kubeconfig says which)
    core = client.CoreV1Api(cluster.api())
    with pytest.raises(ApiException) as ei:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", label_selector="w=yes",
                                      resource_version=old_rv, timeout_seconds=10, _request_timeout=30):
            pass
    assert ei.value.status == 410, ei.value
    assert "Expired" in str(ei.value.reason) or _status(ei.value).get("reason") == "Expired", ei.value

    # what an informer does next: re-list, then watch from the list's resourceVersion
    def list_then_watch(rv: str | None, want: str) -> list[tuple[str, str]]:
        events = []
        while True:
            if rv is None:
                lst = core.list_namespaced_config_map("default", label_selector="w=yes")
                rv = lst.metadata.resource_version
                events += [("LISTED", c.data["v"]) for c in lst.items]
                core.patch_namespaced_config_map("watched", "default", {"data": {"v": want}})
            try:
                ww = watch.Watch()
                for ev in ww.stream(core.list_namespaced_config_map, "default", label_selector="w=yes",
                                    resource_version=rv, timeout_seconds=15, _request_timeout=30):
                    events.append((ev["type"], ev["object"].data["v"]))
                    if ev["object"].data["v"] == want:
                        ww.stop()
                return events
            except ApiException as e:
                if e.status != 410:
                    raise
                rv = None  # expired: re-list
    events = list_then_watch(old_rv, "after")
    assert events == [("LISTED", "3"), ("MODIFIED", "after")], events
    # a list at the compacted revision is refused the same way
    with pytest.raises(ApiException) as ei:
        core.list_namespaced_config_map("default", resource_version=old_rv, resource_version_match="Exact")
    assert ei.value.status == 410, ei.value
    core.delete_namespaced_config_map("watched", "default")


# ------------------------------------------------------------------------------ lightkube

def test_lightkube(cluster: Cluster):
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.models.apps_v1 import DeploymentSpec
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import ConfigMap, Pod
    from lightkube.types import PatchType

    lk = Client(config=KubeConfig.from_file(str(cluster.kubeconfig)), trust_env=False, field_manager="lightkube-e2e")
    try:
        # ConfigMap: create / get / list / watch / patch / apply / delete
        created = lk.create(ConfigMap(metadata=ObjectMeta(name="lk", labels={"via": "lightkube"}), data={"a": "1"}))
        assert created.metadata.uid and created.data == {"a": "1"}
        assert lk.get(ConfigMap, "lk", namespace="default").metadata.uid == created.metadata.uid
        assert [c.metadata.name for c in lk.list(ConfigMap, namespace="default", labels={"via": "lightkube"})] == ["lk"]
        assert [c.metadata.name for c in lk.list(ConfigMap, namespace="default", chunk_size=1,
                                                 fields={"metadata.name": "lk"})] == ["lk"]
        lk.patch(ConfigMap, "lk", {"data": {"b": "2"}}, namespace="default", patch_type=PatchType.MERGE)
        lk.patch(ConfigMap, "lk", [{"op": "replace", "path": "/data/a", "value": "10"}], namespace="default",
                 patch_type=PatchType.JSON)
        assert lk.get(ConfigMap, "lk", namespace="default").data == {"a": "10", "b": "2"}
        events = collect(lambda: ((t, dict(o.data)) for t, o in lk.watch(
            ConfigMap, namespace="default", labels={"via": "lightkube"},
            resource_version=created.metadata.resourceVersion, server_timeout=10)),
            lambda seen: len(seen) == 2, 30, "two MODIFIED events")
        assert events == [("MODIFIED", {"a": "1", "b": "2"}), ("MODIFIED", {"a": "10", "b": "2"})], events

        # server-side apply: a manager of its own, conflicts, force
        applied = lk.apply(ConfigMap(metadata=ObjectMeta(name="lk-applied"), data={"k": "v"}), namespace="default",
                           field_manager="lightkube-e2e")
        assert applied.data == {"k": "v"}
        assert [(m.manager, m.operation) for m in applied.metadata.managedFields] == [("lightkube-e2e", "Apply")]
        with pytest.raises(ApiError) as ei:
            lk.apply(ConfigMap(metadata=ObjectMeta(name="lk-applied"), data={"k": "other"}), namespace="default",
                     field_manager="someone-else")
        assert ei.value.status.code == 409 and "conflict" in ei.value.status.message.lower()
        forced = lk.apply(ConfigMap(metadata=ObjectMeta(name="lk-applied"), data={"k": "other"}),
                          namespace="default", field_manager="someone-else", force=True)
        assert forced.data == {"k": "other"}
        lk.delete(ConfigMap, "lk", namespace="default")
        lk.delete(ConfigMap, "lk-applied", namespace="default")
        with pytest.raises(ApiError) as ei:
            lk.get(ConfigMap, "lk", namespace="default")
        assert ei.value.status.code == 404

        # Deployment: apply, wait for Available, scale by patch, watch its pods, delete
        port = unique_port()
        dep = Deployment.from_dict(web_deployment("lk-web", port, replicas=1))
        lk.apply(dep, field_manager="lightkube-e2e")
        def available():  # (lightkube's own wait() has no deadline)
            d = lk.get(Deployment, "lk-web", namespace="default")
            conds = (d.status.conditions if d.status else None) or []
            return d if any(c.type == "Available" and c.status == "True" for c in conds) else None
        got = poll(available, 60, what="lk-web Available")
        assert got.status.availableReplicas == 1
        assert [d.metadata.name for d in lk.list(Deployment, namespace="default", labels={"app": "lk-web"})] == [
            "lk-web"]
        assert isinstance(got.spec, DeploymentSpec)
        lk.patch(Deployment, "lk-web", {"spec": {"replicas": 2}}, namespace="default")

        def running(seen) -> set[str]:
            return {p.metadata.name for _, p in seen
                    if p.status and p.status.phase == "Running" and not p.metadata.deletionTimestamp}
        seen = collect(lambda: lk.watch(Pod, namespace="default", labels={"app": "lk-web"}, server_timeout=30),
                       lambda seen: len(running(seen)) == 2, 60, "two lk-web pods Running in the watch")
        assert {t for t, _ in seen} <= {"ADDED", "MODIFIED"}
        poll(lambda: ready_pods(cluster, "app=lk-web", 2, port), 60, what="two lk-web pods answering")
        lk.delete(Deployment, "lk-web", namespace="default")
        poll(lambda: not list(lk.list(Pod, namespace="default", labels={"app": "lk-web"})), 60,
             what="lk-web pods gone")
    finally:
        lk.close()


# ------------------------------------------------------------------------------ kr8s

def test_kr8s(cluster: Cluster):
    import kr8s
    from kr8s.objects import ConfigMap, Deployment, Node, Pod

    api = kr8s.api(kubeconfig=str(cluster.kubeconfig))
    assert api.version()["gitVersion"].startswith("v1.")
    nodes = list(api.get("nodes"))
    assert len(nodes) == 1 and isinstance(nodes[0], Node)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in nodes[0].status.conditions)

    cm = ConfigMap({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "kr8s-cm", "namespace": "default", "labels": {"via": "kr8s"}},
                    "data": {"x": "y"}}, api=api)
    cm.create()
    assert cm.metadata.uid
    got = list(api.get("configmaps", namespace="default", label_selector={"via": "kr8s"}))
    assert [c.name for c in got] == ["kr8s-cm"] and got[0].data == {"x": "y"}
    cm.patch({"data": {"x": "z"}})
    cm.refresh()
    assert cm.raw["data"] == {"x": "z"}
    cm.label(extra="1")
    assert ConfigMap.get("kr8s-cm", namespace="default", api=api).labels == {"via": "kr8s", "extra": "1"}

    port = unique_port()
    dep = Deployment(web_deployment("kr8s-web", port, replicas=1), api=api)
    dep.create()
    dep.wait("condition=Available", timeout=60)
    dep.scale(3)
    poll(lambda: ready_pods(cluster, "app=kr8s-web", 3, port), 60, what="three kr8s-web pods answering")
    dep.refresh()
    assert dep.replicas == 3
    pods = list(api.get("pods", namespace="default", label_selector="app=kr8s-web"))
    assert len(pods) == 3 and all(isinstance(p, Pod) for p in pods)
    assert all(p.status.podIP.startswith("127.") for p in pods)
    assert all(p.ready() for p in pods)
    dep.scale(1)
    poll(lambda: len([p for p in api.get("pods", namespace="default", label_selector="app=kr8s-web")
                      if not p.metadata.get("deletionTimestamp")]) == 1, 60, what="one kr8s-web pod")

    dep.delete()
    cm.delete()
    poll(lambda: not dep.exists() and not cm.exists(), 30, what="kr8s objects deleted")
    poll(lambda: not list(api.get("pods", namespace="default", label_selector="app=kr8s-web")), 60,
         what="kr8s-web pods gone")


# ---- certificates, CSI capacity and metadata-only answers (issue 16) ------------------------
def _csr_yaml(name: str, usages: list[str]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "team")])
    pem = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)
    return json.dumps({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                       "metadata": {"name": name},
                       "spec": {"request": base64.b64encode(pem).decode(), "usages": usages,
                                "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 86400}})


def test_kubectl_certificate_approve_deny_and_csi_capacity(cluster: Cluster):
    cluster.kubectl("apply", "-f", "-", input=_csr_yaml("e2e-alice", ["client auth"]))
    cluster.kubectl("apply", "-f", "-", input=_csr_yaml("e2e-bob", ["client auth"]))
    assert "Pending" in cluster.kubectl("get", "csr", "e2e-alice").stdout
    out = cluster.kubectl("certificate", "approve", "e2e-alice").stdout
    assert "approved" in out, out
    cluster.kubectl("certificate", "deny", "e2e-bob")
    got = poll(lambda: (c := cluster.kubectl_json("get", "csr", "e2e-alice"))["status"].get("certificate") and c,
               timeout=90, what="kubectl-approved CSR issued")
    cert = x509.load_pem_x509_certificate(base64.b64decode(got["status"]["certificate"]))
    ca = base64.b64decode(cluster.kubeconfig_data()["clusters"][0]["cluster"]["certificate-authority-data"])
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    assert cert.subject.rfc4514_string() == "O=team,CN=e2e-alice"
    row = cluster.kubectl("get", "csr", "e2e-alice", "--no-headers").stdout
    assert "Approved,Issued" in row and "kubernetes.io/kube-apiserver-client" in row and "24h" in row, row
    bob = cluster.kubectl_json("get", "csr", "e2e-bob")
    assert [c["type"] for c in bob["status"]["conditions"]] == ["Denied"] and not bob["status"].get("certificate")
    assert "Denied" in cluster.kubectl("get", "csr", "e2e-bob").stdout

    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity", "metadata": {"name": "e2e-cap"},
        "storageClassName": "fast", "capacity": "10Gi"}))
    row = cluster.kubectl("get", "csistoragecapacities", "e2e-cap", "--no-headers").stdout.split()
    assert row[:3] == ["e2e-cap", "fast", "10Gi"], row
    bad = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity", "metadata": {"name": "e2e-bad"},
        "capacity": "1Gi"}))
    assert bad.returncode != 0 and "storageClassName: Required value" in bad.stderr, bad.stderr


def test_kubernetes_client_csr_capacity_and_metadata_only(cluster: Cluster):
    api = cluster.api()
    certs = client.CertificatesV1Api(api)
    body = json.loads(_csr_yaml("e2e-carol", ["digital signature", "client auth"]))
    made = certs.create_certificate_signing_request(body)
    assert made.spec.username and made.spec.signer_name == "kubernetes.io/kube-apiserver-client"
    made.status = client.V1CertificateSigningRequestStatus(conditions=[client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="PythonClient", message="ok")])
    certs.replace_certificate_signing_request_approval("e2e-carol", made)
    issued = poll(lambda: certs.read_certificate_signing_request("e2e-carol").status.certificate, timeout=90,
                  what="python-approved CSR issued")
    assert issued.startswith("LS0t")  # base64 of "-----BEGIN"
    storage = client.StorageV1Api(api)
    cap = storage.create_namespaced_csi_storage_capacity("default", {
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity", "metadata": {"name": "py-cap"},
        "storageClassName": "fast", "maximumVolumeSize": "1Gi"})
    assert cap.maximum_volume_size == "1Gi"
    assert "py-cap" in [c.metadata.name for c in storage.list_namespaced_csi_storage_capacity("default").items]

    client.CoreV1Api(api).create_namespaced_config_map("default", _cm("py-meta", {"k": "v"}))
    dyn = DynamicClient(api).resources.get(api_version="v1", kind="ConfigMap")
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    listed = dyn.get(namespace="default", header_params={"Accept": accept})
    assert listed.kind == "PartialObjectMetadataList" and listed.apiVersion == "meta.k8s.io/v1"
    assert all(set(i.to_dict()) == {"kind", "apiVersion", "metadata"} for i in listed.items)
    one = dyn.get(namespace="default", name="py-meta",
                  header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"})
    assert one.kind == "PartialObjectMetadata" and "data" not in one.to_dict()
