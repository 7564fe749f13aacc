"""Volumes and storage without a server: the `..data` writer, downward API files, hostPath
checks, the scheduler's claim plan and the PersistentVolume controller reconcile by reconcile."""
from __future__ import annotations

import os

import pytest

from sendo.agent import atomic
from sendo.agent.volumes import VolumeError, downward_value, host_path_check
from sendo.client import kind
from sendo.controllers.persistentvolume import PersistentVolumeController, volume_fits
from sendo.kinds.registry import builtin_registry
from sendo.kinds.storage import CLEANUP_FINALIZER, SELECTED_NODE_ANNOTATION, STORAGE_DIR_ANNOTATION
from sendo.scheduler.plugins import NodeInfo
from sendo.scheduler.volumes import VOLUME_AFFINITY, plan_claims

PVCS, PVS, NODES = kind("persistentvolumeclaims"), kind("persistentvolumes"), kind("nodes")
SCS = kind("storageclasses", "storage.k8s.io")


# ---------------------------------------------------------------------------- atomic writer

def test_a_new_version_replaces_the_files_at_once_and_keys_that_went_are_unlinked(tmp_path):
    d = str(tmp_path / "vol")
    assert atomic.write(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o400)})
    first = os.readlink(os.path.join(d, "..data"))
    assert first.startswith("..") and os.readlink(os.path.join(d, "a")) == "..data/a"
    assert open(os.path.join(d, "sub", "b"), "rb").read() == b"2"
    assert os.stat(os.path.join(d, "sub", "b")).st_mode & 0o777 == 0o400
    assert not atomic.write(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o400)})  # the same: nothing written
    assert atomic.write(d, {"a": (b"changed", 0o644)})
    assert open(os.path.join(d, "a"), "rb").read() == b"changed"
    assert not os.path.lexists(os.path.join(d, "sub"))
    assert not os.path.exists(os.path.join(d, first))  # the old version is gone
    assert sorted(n for n in os.listdir(d) if n.startswith("..")) == sorted(["..data", os.readlink(os.path.join(d, "..data"))])


# ---------------------------------------------------------------------------- downward API and hostPath

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"b": "2", "a": "1"},
                    "annotations": {"note": "x"}},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"},
                                                           "requests": {"cpu": "250m"}}}]}}


@pytest.mark.parametrize("item,want", [
    ({"fieldRef": {"fieldPath": "metadata.labels"}}, b'a="1"\nb="2"'),
    ({"fieldRef": {"fieldPath": "metadata.annotations['note']"}}, b"x"),
    ({"fieldRef": {"fieldPath": "metadata.uid"}}, b"u1"),
    ({"resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}, b"64"),
    ({"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}, b"250"),
    ({"resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}, b"4"),  # the node's, no limit
])
def test_downward_api_files_read_as_the_kubelet_writes_them(item, want):
    assert downward_value(POD, item, {"cpu": "4", "memory": "1Gi"}) == want


def test_host_path_types_are_checked_and_the_or_create_ones_create(tmp_path):
    d, f = str(tmp_path / "d"), str(tmp_path / "f")
    host_path_check(d, "DirectoryOrCreate")
    host_path_check(f, "FileOrCreate")
    assert os.path.isdir(d) and os.path.isfile(f)
    with pytest.raises(VolumeError, match="is not a directory"):
        host_path_check(f, "Directory")
    with pytest.raises(VolumeError, match="is not a file"):
        host_path_check(d, "File")
    with pytest.raises(VolumeError, match="does not exist"):
        host_path_check(str(tmp_path / "nope"), "Directory")


# ---------------------------------------------------------------------------- validation

def _causes(plural: str, obj: dict, group: str = "") -> list[str]:
    r = builtin_registry().get(group, "v1", plural)
    r.strategy.default(obj)
    return [c.field for c in r.strategy.validate(obj)]


def test_bad_volume_sources_and_storage_objects_name_the_field():
    pod = {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "s", "mountPath": "/s",
                                                                     "subPath": "/abs"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": "s", "items": [{"key": "k", "path": "../k"}]}},
                    {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t",
                                                                                     "expirationSeconds": 60}}]}},
                    {"name": "e", "emptyDir": {"medium": "Disk"}}]}}
    assert _causes("pods", pod) == ["spec.volumes[0].secret.items[0].path",
                                    "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds",
                                    "spec.volumes[2].emptyDir.medium", "spec.containers[0].volumeMounts[0].subPath"]
    pv = {"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"], "local": {"path": "/x"},
                                              "persistentVolumeReclaimPolicy": "Keep"}}
    assert _causes("persistentvolumes", pv) == ["spec.capacity", "spec.nodeAffinity",
                                                "spec.persistentVolumeReclaimPolicy"]
    sc = {"metadata": {"name": "c"}, "provisioner": "", "volumeBindingMode": "Later"}
    assert _causes("storageclasses", sc, "storage.k8s.io") == ["provisioner", "volumeBindingMode"]
    r = builtin_registry().get("storage.k8s.io", "v1", "storageclasses")
    old = {"metadata": {"name": "c"}, "provisioner": "a.io/x"}
    assert [c.field for c in r.strategy.validate_update({**old, "provisioner": "b.io/y"}, old)] == ["provisioner"]


# ---------------------------------------------------------------------------- scheduler

def _claim(name, volume=None, cls="local-path", selected=None):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "finalizers": ["kubernetes.io/pvc-protection"]}
    if selected:
        meta["annotations"] = {SELECTED_NODE_ANNOTATION: selected}
    return {"metadata": meta, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                                       "resources": {"requests": {"storage": "1Gi"}},
                                       **({"volumeName": volume} if volume else {})},
            "status": {"phase": "Bound" if volume else "Pending"}}


def _pod_with(*claims):
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}}


def _node(name, **labels):
    ni = NodeInfo(name)
    ni.set_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}})
    return ni


def test_the_scheduler_places_waiting_claims_first_and_follows_bound_volumes():
    classes = {"local-path": {"volumeBindingMode": "WaitForFirstConsumer"}, "now": {"volumeBindingMode": "Immediate"}}
    pv = {"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}}
    claims = {"wait": _claim("wait"), "bound": _claim("bound", "pv1"), "now": _claim("now", cls="now"),
              "picked": _claim("picked", selected="n1")}
    plan = lambda *names: plan_claims(_pod_with(*names), lambda ns, n: claims.get(n),  # noqa: E731
                                      {"pv1": pv}.get, classes.get)
    assert plan_claims({"metadata": {"name": "p"}, "spec": {}}, None, None, None) is None
    p = plan("wait")
    assert p.error is None and p.to_select == [("default", "wait")] and p.misfit(_node("n1")) is None
    p = plan("bound", "wait")
    assert p.misfit(_node("n1")) == VOLUME_AFFINITY and p.misfit(_node("n2")) is None
    assert plan("now").error == "pod has unbound immediate PersistentVolumeClaims"
    assert plan("missing").error == 'persistentvolumeclaim "missing" not found'
    p = plan("picked")
    assert p.misfit(_node("n2")) and p.misfit(_node("n1")) is None and not p.to_select


# ---------------------------------------------------------------------------- PV controller

LOCAL_PATH = {"metadata": {"name": "local-path"}, "provisioner": "sendo.io/local-path", "reclaimPolicy": "Delete",
              "volumeBindingMode": "WaitForFirstConsumer"}


async def test_a_claim_waits_for_its_consumer_then_gets_a_volume_on_the_selected_node(fake_api):
    pvc_ctl = fake_api.build(PersistentVolumeController)
    fake_api.add(SCS, LOCAL_PATH)
    fake_api.add(NODES, {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"},
                                      "annotations": {STORAGE_DIR_ANNOTATION: "/data/storage"}}})
    fake_api.add(PVCS, _claim("data"))
    assert await fake_api.run(pvc_ctl, "pvc:default/data") == []  # no consumer yet
    fake_api.add(PVCS, _claim("data", selected="n1"))
    writes = await fake_api.run(pvc_ctl, "pvc:default/data")
    assert [(c.method, c.path) for c in writes] == [
        ("POST", "/api/v1/persistentvolumes"), ("PATCH", "/api/v1/persistentvolumes/pvc-uid-data/status"),
        ("PATCH", "/api/v1/namespaces/default/persistentvolumeclaims/data"),
        ("PATCH", "/api/v1/namespaces/default/persistentvolumeclaims/data/status")]
    pv = writes[0].body
    assert pv["spec"]["hostPath"]["path"] == "/data/storage/pvc-uid-data_default_data"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["n1"]
    assert pv["spec"]["capacity"] == {"storage": "1Gi"} and pv["metadata"]["finalizers"] == [CLEANUP_FINALIZER]
    assert pv["spec"]["claimRef"]["uid"] == "uid-data"
    assert writes[2].body["spec"]["volumeName"] == "pvc-uid-data"
    assert writes[3].body["status"] == {"phase": "Bound", "capacity": {"storage": "1Gi"},
                                        "accessModes": ["ReadWriteOnce"]}
    assert await fake_api.run(pvc_ctl, "pvc:default/data") == []  # settled
    assert [c.path for c in await fake_api.run(pvc_ctl, "pv:pvc-uid-data")] == []

    # the claim goes: the volume is Released, then deleted (its finalizer waits for the node)
    fake_api.fake.remove(PVCS, "default", "data")
    writes = await fake_api.run(pvc_ctl, "pv:pvc-uid-data")
    assert [(c.method, c.path) for c in writes] == [
        ("PATCH", "/api/v1/persistentvolumes/pvc-uid-data/status"), ("DELETE", "/api/v1/persistentvolumes/pvc-uid-data")]
    assert writes[0].body["status"]["phase"] == "Released"


async def test_a_claim_takes_the_smallest_fitting_available_volume_and_a_retained_one_stays_released(fake_api):
    pvc_ctl = fake_api.build(PersistentVolumeController)

    def pv(name, size, policy="Retain"):
        return {"metadata": {"name": name}, "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                                                     "storageClassName": "manual", "hostPath": {"path": f"/x/{name}"},
                                                     "persistentVolumeReclaimPolicy": policy},
                "status": {"phase": "Available"}}
    fake_api.add(PVS, pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "512Mi"))
    claim = _claim("c", cls="manual")
    assert volume_fits(pv("small", "2Gi"), claim) and not volume_fits(pv("tiny", "512Mi"), claim)
    fake_api.add(PVCS, claim)
    writes = await fake_api.run(pvc_ctl, "pvc:default/c")
    assert writes[0].path == "/api/v1/persistentvolumes/small"
    assert writes[0].body["spec"]["claimRef"]["name"] == "c"
    fake_api.fake.remove(PVCS, "default", "c")
    writes = await fake_api.run(pvc_ctl, "pv:small")
    assert [(c.method, c.body["status"]["phase"]) for c in writes] == [("PATCH", "Released")]


async def test_a_claim_without_a_class_gets_the_default_one(fake_api):
    pvc_ctl = fake_api.build(PersistentVolumeController)
    fake_api.add(SCS, {**LOCAL_PATH, "metadata": {"name": "local-path", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}})
    claim = _claim("c")
    del claim["spec"]["storageClassName"]
    fake_api.add(PVCS, claim)
    writes = await fake_api.run(pvc_ctl, "pvc:default/c")
    assert [(c.method, c.body) for c in writes] == [("PATCH", {"spec": {"storageClassName": "local-path"}})]


# ---------------------------------------------------------------------------- mounts

class _Host:
    def __init__(self):
        self.events = []

    def event(self, pod, type_, reason, message):
        self.events.append((type_, reason, message))


class _Runtime:
    def __init__(self, name, mounts_volumes):
        self.name, self.mounts_volumes = name, mounts_volumes


class _PodView:
    def __init__(self, runtime, volumes):
        self.host, self.runtime, self.volumes = _Host(), runtime, volumes
        self.pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"}}


def _spec():
    from sendo.agent.runtime import ContainerSpec
    return ContainerSpec("u", "default", "p", "c", 0, ["true"], {}, None, "/dev/null")


CONTAINER = {"name": "c", "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                                           {"name": "data", "mountPath": "/data/one", "subPath": "one",
                                            "readOnly": True}]}


async def test_a_runtime_that_mounts_gets_one_mount_per_volume_mount(tmp_path):
    from sendo.agent.prestart.volumes import mount_volumes
    from sendo.agent.volumes import Volume
    cfg, data = tmp_path / "cfg", tmp_path / "data"
    cfg.mkdir()
    view = _PodView(_Runtime("docker", True), {"config": Volume("config", str(cfg), read_only=True, content=True),
                                               "data": Volume("data", str(data))})
    data.mkdir()
    spec = _spec()
    await mount_volumes(view, CONTAINER, spec)
    assert [(m.container_path, m.host_path, m.read_only) for m in spec.mounts] == [
        ("/etc/app", str(cfg), True), ("/data/one", str(data / "one"), True)]
    assert (data / "one").is_dir()  # a subPath in a writable volume is made
    assert view.host.events == []


async def test_without_mounts_the_container_gets_the_paths_and_the_pod_an_event(tmp_path):
    from sendo.agent.prestart.volumes import mount_volumes
    from sendo.agent.volumes import Volume
    view = _PodView(_Runtime("process", False), {"config": Volume("config", str(tmp_path), content=True),
                                                 "data": Volume("data", str(tmp_path))})
    spec = _spec()
    await mount_volumes(view, CONTAINER, spec)
    assert spec.mounts == [] and spec.env["SENDO_VOLUME_CONFIG"] == str(tmp_path)
    ((type_, reason, message),) = view.host.events
    assert (type_, reason) == ("Warning", "VolumePathsMapped")
    assert "/etc/app (volume config) is $SENDO_VOLUME_CONFIG" in message


async def test_a_sub_path_may_not_lead_out_of_its_volume(tmp_path):
    from sendo.agent.prestart.base import HookError
    from sendo.agent.prestart.volumes import mount_volumes
    from sendo.agent.volumes import Volume
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "out").symlink_to("/etc")
    view = _PodView(_Runtime("docker", True), {"config": Volume("config", str(vol))})
    with pytest.raises(HookError, match="leads outside"):
        await mount_volumes(view, {"name": "c", "volumeMounts": [
            {"name": "config", "mountPath": "/x", "subPath": "out"}]}, _spec())


def test_the_process_runtime_mounts_parents_before_what_they_hold(tmp_path):
    from sendo.agent.runtime import Mount
    from sendo.agent.runtime.mountns import wrap
    argv, exe = wrap(["sh", "-c", "true"], "/bin/sh", [Mount("/a/b", str(tmp_path)), Mount("/a", "/f", True)],
                     "/work")
    assert exe.endswith("unshare") and argv[:4] == [exe, "--mount", "--propagation", "private"]
    tail = argv[argv.index("sendo-mount") + 1:]
    assert tail == ["/work", "/f", "/a", "ro", "f", str(tmp_path), "/a/b", "rw", "d", "--", "/bin/sh", "-c", "true"]


async def test_a_claim_in_use_is_kept_until_its_pods_are_done(fake_api):
    pvc_ctl = fake_api.build(PersistentVolumeController)
    claim = _claim("c", cls="manual")
    del claim["metadata"]["finalizers"]
    fake_api.add(PVCS, claim)
    writes = await fake_api.run(pvc_ctl, "pvc:default/c")
    assert writes[0].body["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    user = {"metadata": {"name": "user", "namespace": "default"}, "status": {"phase": "Running"},
            "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}
    fake_api.add(kind("pods"), user)
    fake_api.add(PVCS, {**_claim("c", cls="manual"), "metadata": {
        **_claim("c")["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}})
    assert await fake_api.run(pvc_ctl, "pvc:default/c") == []  # its pod runs: kept
    fake_api.add(kind("pods"), {**user, "status": {"phase": "Succeeded"}})
    writes = await fake_api.run(pvc_ctl, "pvc:default/c")
    assert [(c.method, c.body["metadata"]["finalizers"]) for c in writes] == [("PATCH", [])]
