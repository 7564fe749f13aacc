"""ResourceQuota and LimitRange on a real `sendo up`, driven by the real kubectl and the official
Python client: a quota refuses the pod that exceeds it naming the quota, `kubectl get/describe
quota` show used/hard, a deleted pod frees its share, and a LimitRange defaults and bounds pods."""
from __future__ import annotations

import pytest

from tests.waiting import poll

from .harness import shared_cluster, to_yaml


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("quota") / "cluster") as c:
        yield c


def pod(name: str, ns: str, resources: dict | None = None) -> dict:
    c: dict = {"name": "app", "image": "busybox", "command": ["sleep", "3600"]}
    if resources is not None:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [c], "terminationGracePeriodSeconds": 1}}


def test_quota_refuses_the_third_pod_and_frees_on_delete(cluster):
    from kubernetes import client
    core = client.CoreV1Api(cluster.api())
    cluster.kubectl("create", "namespace", "team-a")
    cluster.kubectl("create", "quota", "compute", "--hard=pods=2,requests.cpu=1", "-n", "team-a")
    small = {"requests": {"cpu": "400m"}}
    for name in ("one", "two"):
        cluster.kubectl("apply", "-f", "-", input=to_yaml(pod(name, "team-a", small)))
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(pod("three", "team-a", small)), check=False)
    assert r.returncode != 0
    assert ('pods "three" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=400m, '
            'used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1') in r.stderr, r.stderr

    table = cluster.kubectl("get", "quota", "-n", "team-a").stdout
    assert table.split("\n")[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert "pods: 2/2, requests.cpu: 800m/1" in table, table
    described = cluster.kubectl("describe", "quota", "compute", "-n", "team-a").stdout
    lines = {tuple(line.split()) for line in described.splitlines()}
    assert ("pods", "2", "2") in lines and ("requests.cpu", "800m", "1") in lines, described

    # the official client reads the typed object; a pod without a cpu request is refused by the quota
    quota = core.read_namespaced_resource_quota("compute", "team-a")
    assert quota.status.used == {"pods": "2", "requests.cpu": "800m"} and quota.status.hard["pods"] == "2"
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod("team-a", pod("bare", "team-a"))
    assert e.value.status == 403
    assert "failed quota: compute: must specify requests.cpu for: app" in e.value.body

    cluster.kubectl("delete", "pod", "one", "-n", "team-a", timeout=120)
    poll(lambda: core.read_namespaced_resource_quota("compute", "team-a").status.used.get("pods") == "1", 90,
         what="the quota's used pods back to 1 after the delete")
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod("three", "team-a", small)))


def test_limitrange_defaults_a_pod_and_refuses_one_above_max(cluster):
    from kubernetes import client
    core = client.CoreV1Api(cluster.api())
    cluster.kubectl("create", "namespace", "team-b")
    core.create_namespaced_limit_range("team-b", {
        "metadata": {"name": "bounds"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "500m", "memory": "64Mi"},
                             "defaultRequest": {"cpu": "100m"}}]}})
    assert cluster.kubectl("get", "limits", "-n", "team-b").stdout.split("\n")[0].split() == \
        ["NAME", "CREATED", "AT"]
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod("plain", "team-b")))
    got = cluster.kubectl_json("get", "pod", "plain", "-n", "team-b")
    assert got["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "64Mi"},
                                                         "requests": {"cpu": "100m", "memory": "64Mi"}}
    r = cluster.kubectl("apply", "-f", "-", input=to_yaml(pod("huge", "team-b", {"limits": {"cpu": "2"}})),
                        check=False)
    assert r.returncode != 0
    assert 'pods "huge" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in r.stderr, r.stderr
    described = cluster.kubectl("describe", "limits", "bounds", "-n", "team-b").stdout
    assert ("Container", "cpu", "-", "1", "100m", "500m", "-") in {tuple(x.split()) for x in described.splitlines()}, \
        described
    assert "maxLimitRequestRatio" in cluster.kubectl("explain", "limitrange.spec.limits").stdout
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_limit_range("team-b", {"metadata": {"name": "bad"}, "spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}})
    assert e.value.status == 422 and "spec.limits[0].min[cpu]" in e.value.body
