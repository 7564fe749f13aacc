"""Volumes and storage through the real kubectl and the official client, on one `sendo up`
(process runtime, as root: each container sees its volumes at their mountPath in a
private mount namespace).

Mount paths live under this module's temporary directory: the process runtime creates
missing mount points on the host, and a test must not leave directories in /etc.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from .harness import Cluster, poll, shared_cluster, to_yaml


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("volumes")) as c:
        yield c


@pytest.fixture(scope="module")
def mnt(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mnt")


def logs(c: Cluster, pod: str, container: str) -> str:
    return c.kubectl("logs", pod, "-c", container, check=False).stdout


def events(c: Cluster, name: str) -> list[dict]:
    return c.kubectl_json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


def test_configmap_updates_in_place_secret_mode_and_an_emptydir_shared_by_two_containers(cluster, mnt):
    c = cluster
    cfg, sec, shared, info, sub = (f"{mnt}/cfg", f"{mnt}/sec", f"{mnt}/shared", f"{mnt}/info", f"{mnt}/sub.conf")
    proj = f"{mnt}/proj"
    loop = (f'while true; do echo "greeting=$(cat {cfg}/greeting) sub=$(cat {sub}) '
            f'mode=$(stat -L -c %a {sec}/password) pw=$(cat {sec}/password) from-b=$(cat {shared}/x) '
            f'labels=$(cat {info}/labels | tr "\\n" ,) data=$(ls -a {cfg} | grep -c "^..data$") '
            f'proj=$(stat -L -c %a {proj}/nested/greet):$(cat {proj}/nested/greet):$(wc -c < {proj}/token)"; '
            'sleep 0.3; done')
    manifest = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"greeting": "hello"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"}, "stringData": {"password": "s3cret"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols", "labels": {"app": "vols"}},
         "spec": {"terminationGracePeriodSeconds": 1, "containers": [
             {"name": "reader", "image": "busybox", "command": ["sh", "-c", loop],
              "volumeMounts": [{"name": "cfg", "mountPath": cfg}, {"name": "sec", "mountPath": sec},
                               {"name": "shared", "mountPath": shared}, {"name": "info", "mountPath": info},
                               {"name": "cfg", "mountPath": sub, "subPath": "greeting"},
                               {"name": "proj", "mountPath": proj}]},
             {"name": "writer", "image": "busybox",
              "command": ["sh", "-c", f"echo written-by-b > {shared}/x; exec sleep 3600"],
              "volumeMounts": [{"name": "shared", "mountPath": shared}]}],
             "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}},
                         {"name": "sec", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
                         {"name": "shared", "emptyDir": {"medium": "Memory"}},
                         {"name": "info", "downwardAPI": {"items": [{"path": "labels",
                                                                     "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                         {"name": "proj", "projected": {"sources": [
                             {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 3600}},
                             {"configMap": {"name": "app-config", "items": [
                                 {"key": "greeting", "path": "nested/greet", "mode": 0o600}]}}]}}]}},
    ]
    c.kubectl("apply", "-f", "-", input=to_yaml(*manifest))
    first = "greeting=hello sub=hello mode=400 pw=s3cret from-b=written-by-b labels=app=\"vols\" data=1"
    poll(lambda: first in logs(c, "vols", "reader"), 60, what="the volumes seen by the pod")
    assert not os.path.exists(f"{cfg}/greeting")  # on the host, the mount point stays empty
    assert "proj=600:hello:" in logs(c, "vols", "reader")
    # the projected token is the pod's ServiceAccount's, for the audience asked
    pod = c.kubectl_json("get", "pod", "vols")
    token_file = (c.data_dir / "agent" / pod["spec"]["nodeName"] / "pods" / pod["metadata"]["uid"] / "volumes" / "proj"
                  / "token")
    payload = token_file.read_text().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == ["vault"] and claims["exp"] - claims["iat"] == 3600
    assert claims["sub"] == "system:serviceaccount:default:default"

    manifest[0]["data"]["greeting"] = "changed"
    c.kubectl("apply", "-f", "-", input=to_yaml(manifest[0]))
    c.kubectl("label", "pod", "vols", "tier=web")
    # the mounted ConfigMap and labels change in the running pod; a subPath mount keeps its file
    poll(lambda: 'greeting=changed sub=hello mode=400 pw=s3cret from-b=written-by-b '
                 'labels=app="vols",tier="web" data=1 proj=600:changed:' in logs(c, "vols", "reader"), 30,
         what="the ConfigMap change in the running pod")
    c.kubectl("delete", "pod", "vols", "--wait=true", timeout=60)
    with open("/proc/self/mountinfo") as f:
        assert str(c.data_dir) not in f.read()  # the tmpfs emptyDir is unmounted with its pod


def test_a_local_path_claim_keeps_its_data_across_pods_and_is_deleted_with_its_claim(cluster, mnt):
    from kubernetes import client
    c = cluster
    core = client.CoreV1Api(c.api())
    data = f"{mnt}/data"
    core.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "db"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def run(name: str, script: str) -> None:
        core.create_namespaced_pod("default", {
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                 "volumeMounts": [{"name": "d", "mountPath": data}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "db"}}]}})
        poll(lambda: core.read_namespaced_pod(name, "default").status.phase in ("Succeeded", "Failed"), 60,
             what=f"pod {name} done")
        assert core.read_namespaced_pod(name, "default").status.phase == "Succeeded", logs(c, name, "main")

    pvc = core.read_namespaced_persistent_volume_claim("db", "default")
    assert pvc.spec.storage_class_name == "local-path" and pvc.status.phase == "Pending"  # waits for a pod
    run("first", f"echo kept > {data}/file")
    pvc = core.read_namespaced_persistent_volume_claim("db", "default")
    assert pvc.status.phase == "Bound" and pvc.status.capacity == {"storage": "1Gi"}
    assert pvc.metadata.annotations["volume.kubernetes.io/selected-node"]
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.status.phase == "Bound" and pv.spec.persistent_volume_reclaim_policy == "Delete"
    assert pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values == \
        [pvc.metadata.annotations["volume.kubernetes.io/selected-node"]]
    directory = pv.spec.host_path.path
    assert directory.startswith(str(c.data_dir)) and open(f"{directory}/file").read() == "kept\n"
    core.delete_namespaced_pod("first", "default")

    run("second", f"cat {data}/file")
    assert logs(c, "second", "main") == "kept\n"
    table = c.kubectl("get", "pv,pvc").stdout
    assert "default/db" in table and "local-path" in table and "Bound" in table and "1Gi" in table
    assert "local-path (default)" in c.kubectl("get", "storageclass").stdout

    core.delete_namespaced_pod("second", "default", grace_period_seconds=0)
    core.delete_namespaced_persistent_volume_claim("db", "default")
    poll(lambda: not core.list_persistent_volume().items, 60, what="the volume deleted with its claim")
    assert not os.path.exists(directory)


def test_pods_wait_for_what_their_volumes_need_and_bad_volumes_are_refused(cluster, mnt):
    c = cluster
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
               {"name": "main", "image": "busybox", "command": ["sh", "-c", f"cat {mnt}/late/k; exec sleep 3600"],
                "volumeMounts": [{"name": "late", "mountPath": f"{mnt}/late"}]}],
               "volumes": [{"name": "late", "configMap": {"name": "late"}}]}}
    big = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
           "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
               {"name": "main", "image": "busybox",
                "command": ["sh", "-c", f"dd if=/dev/zero of={mnt}/small/f bs=1024 count=2048; exec sleep 3600"],
                "volumeMounts": [{"name": "small", "mountPath": f"{mnt}/small"}]}],
               "volumes": [{"name": "small", "emptyDir": {"sizeLimit": "1Mi"}}]}}
    c.kubectl("apply", "-f", "-", input=to_yaml(pod, big))
    poll(lambda: any(e["reason"] == "FailedMount" and 'configmap "late" not found' in e["message"]
                     for e in events(c, "waits")), 60, what="the FailedMount event")
    c.kubectl("create", "configmap", "late", "--from-literal=k=arrived")
    poll(lambda: "arrived" in logs(c, "waits", "main"), 60, what="the pod started once its ConfigMap exists")

    # an emptyDir past its sizeLimit gets its pod evicted
    poll(lambda: c.kubectl_json("get", "pod", "big")["status"].get("reason") == "Evicted", 60,
         what="the eviction of a pod over its emptyDir sizeLimit")
    st = c.kubectl_json("get", "pod", "big")["status"]
    assert st["phase"] == "Failed" and 'EmptyDir volume "small" exceeds the limit "1Mi"' in st["message"]

    bad = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bad"},
           "spec": {"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x", "type": "Dir"}}}
    r = c.kubectl("apply", "-f", "-", input=to_yaml(bad), check=False)
    assert r.returncode != 0 and "spec.capacity: Required value" in r.stderr and "spec.hostPath.type" in r.stderr
    pod["metadata"]["name"] = "bad"
    pod["spec"]["volumes"][0]["configMap"]["items"] = [{"key": "k", "path": "../escape"}]
    r = c.kubectl("apply", "-f", "-", input=to_yaml(pod), check=False)
    assert r.returncode != 0 and "spec.volumes[0].configMap.items[0].path" in r.stderr
    c.kubectl("delete", "pod", "waits", "big", "--wait=false")
