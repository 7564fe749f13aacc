"""The official `kubernetes` Python client against sendo: nodes, ConfigMaps, a Deployment
created from client models, a watch on its pods, scaling by patch, deletion."""
from __future__ import annotations

from kubernetes import client, watch

from .harness import Cluster, answers, poll, unique_port


def test_nodes_and_configmaps(cluster: Cluster):
    api = cluster.api()
    core = client.CoreV1Api(api)

    nodes = core.list_node().items
    assert len(nodes) == 1
    ready = [c for c in nodes[0].status.conditions if c.type == "Ready"]
    assert len(ready) == 1 and ready[0].status == "True", nodes[0].status.conditions
    assert nodes[0].spec.pod_cidr.startswith("127.")

    created = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"team": "e2e"}),
        data={"greeting": "hello", "multi": "a\nb\n"}))
    assert created.metadata.uid and created.metadata.resource_version
    got = core.read_namespaced_config_map("settings", "default")
    assert got.data == {"greeting": "hello", "multi": "a\nb\n"}
    assert got.metadata.uid == created.metadata.uid
    listed = core.list_namespaced_config_map("default", label_selector="team=e2e").items
    assert [c.metadata.name for c in listed] == ["settings"]
    core.delete_namespaced_config_map("settings", "default")
    assert core.list_namespaced_config_map("default", label_selector="team=e2e").items == []


def _deployment(name: str, port: int, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="web", image="python:3.11",
        command=["python3", "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
        env=[client.V1EnvVar(name="POD_IP", value_from=client.V1EnvVarSource(
            field_ref=client.V1ObjectFieldSelector(field_path="status.podIP")))],
        ports=[client.V1ContainerPort(container_port=port, name="http")])
    return client.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                              spec=client.V1PodSpec(containers=[container]))))


def test_deployment_watch_scale_delete(cluster: Cluster):
    api = cluster.api()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    name, port = "py-web", unique_port()
    sel = f"app={name}"

    apps.create_namespaced_deployment("default", _deployment(name, port, replicas=2))

    def ready(n: int):
        d = apps.read_namespaced_deployment(name, "default")
        return d if (d.status.ready_replicas or 0) == n and d.status.replicas == n else None
    d = poll(lambda: ready(2), 60, what="readyReplicas == 2")
    assert d.status.updated_replicas == 2 and d.status.available_replicas == 2
    assert d.status.observed_generation == d.metadata.generation
    first = {p.metadata.name for p in core.list_namespaced_pod("default", label_selector=sel).items}
    assert len(first) == 2

    # watch the deployment's pods; once the existing ones are listed, scale up by patch and
    # see the new pod ADDED, then MODIFIED until it runs
    events: list[tuple[str, str, str | None]] = []
    w = watch.Watch()
    patched = False
    new_running = None
    for ev in w.stream(core.list_namespaced_pod, "default", label_selector=sel, timeout_seconds=60,
                       _request_timeout=90):
        pod = ev["object"]
        events.append((ev["type"], pod.metadata.name, pod.status.phase if pod.status else None))
        if not patched and {n for t, n, _ in events if t == "ADDED"} >= first:
            apps.patch_namespaced_deployment(name, "default", {"spec": {"replicas": 3}})
            patched = True
        if (ev["type"] == "MODIFIED" and pod.metadata.name not in first and pod.status
                and pod.status.phase == "Running" and pod.status.pod_ip):
            new_running = pod
            w.stop()
    assert patched, events
    assert new_running is not None, f"no MODIFIED event with the new pod Running: {events}"
    assert any(t == "ADDED" and n == new_running.metadata.name for t, n, _ in events), events
    assert all(t in ("ADDED", "MODIFIED") for t, _, _ in events), events
    assert new_running.metadata.owner_references[0].kind == "ReplicaSet"

    d = poll(lambda: ready(3), 60, what="readyReplicas == 3")
    pods = core.list_namespaced_pod("default", label_selector=sel).items
    assert len(pods) == 3
    for p in pods:
        poll(lambda: answers(p.status.pod_ip, port), 20, what=f"{p.metadata.name} answering")
    assert len(cluster.pod_processes(cmdline_contains=f"http.server {port}")) == 3

    # scale down through the scale subresource
    scale = apps.patch_namespaced_deployment_scale(name, "default", {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1
    poll(lambda: ready(1), 60, what="readyReplicas == 1")
    poll(lambda: len(core.list_namespaced_pod("default", label_selector=sel).items) == 1, 60,
         what="one pod left")
    poll(lambda: len(cluster.pod_processes(cmdline_contains=f"http.server {port}")) == 1, 30,
         what="one process left")
    assert apps.read_namespaced_deployment_scale(name, "default").status.replicas == 1

    # delete with foreground propagation: the dependents go first, then the Deployment
    apps.delete_namespaced_deployment(name, "default", propagation_policy="Foreground")
    poll(lambda: not apps.list_namespaced_deployment("default").items, 60, what="deployment gone")
    poll(lambda: not apps.list_namespaced_replica_set("default").items, 60, what="replicasets gone")
    poll(lambda: not core.list_namespaced_pod("default", label_selector=sel).items, 60, what="pods gone")
    poll(lambda: not cluster.pod_processes(), 30, what="processes stopped")
