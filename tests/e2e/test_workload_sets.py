"""StatefulSets, DaemonSets, PodDisruptionBudgets and node drains on one `sendo up`,
through the real kubectl and the official `kubernetes` client.

The tests of this module run in order on one cluster: the StatefulSet first (ordered
start, per-pod DNS, claims kept on scale-down, rollout undo, a 429 eviction), then a
DaemonSet that gets a pod on a hollow node joining later, and a `kubectl drain` of the
real node that a PodDisruptionBudget holds up until a replacement is Ready there.
"""
from __future__ import annotations

import threading

import dns.message
import dns.query
import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from .harness import Agent, Cluster, http_get, is_ready, poll, shared_cluster, to_yaml, unique_port

NS = "default"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("sets")) as c:
        yield c


@pytest.fixture(autouse=True)
def _alive(cluster: Cluster):
    assert cluster.proc is not None and cluster.proc.poll() is None, \
        "sendo up is no longer running:\n" + cluster.log_tail()
    yield


def apply(cluster: Cluster, *objs: dict) -> str:
    return cluster.kubectl("apply", "-f", "-", input=to_yaml(*objs)).stdout


def web_statefulset(port: int, replicas: int = 3) -> list[dict]:
    labels = {"app": "web-sts"}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": port}]}}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
           "spec": {"serviceName": "web", "replicas": replicas, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                        "name": "web", "image": "python:3.11",
                        "command": ["python3", "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
                        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}]}}
    return [service, sts]


class PodEvents:
    """The official client's watch of pods, recorded in the API server's order (resumed
    from the last resourceVersion whenever the server ends the stream)."""

    def __init__(self, api: k8s.ApiClient, selector: str):
        self.core = k8s.CoreV1Api(api)
        self.events: list[tuple[str, str, bool, bool]] = []  # type, name, ready, terminating
        self.error: Exception | None = None
        self._w = k8s_watch.Watch()
        self._stopped = threading.Event()
        rv = self.core.list_namespaced_pod(NS, label_selector=selector).metadata.resource_version
        self._t = threading.Thread(target=self._run, args=(selector, rv), daemon=True)
        self._t.start()

    def _run(self, selector: str, rv: str) -> None:
        try:
            while not self._stopped.is_set():
                for ev in self._w.stream(self.core.list_namespaced_pod, NS, label_selector=selector,
                                         resource_version=rv, timeout_seconds=300):
                    pod = ev["object"]
                    rv = pod.metadata.resource_version
                    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
                    self.events.append((ev["type"], pod.metadata.name, ready,
                                        pod.metadata.deletion_timestamp is not None))
        except Exception as e:  # the stream ends when stop() closes it
            self.error = e

    def stop(self) -> None:
        self._stopped.set()
        self._w.stop()

    def first(self, pred, timeout: float = 60) -> int:
        """Where the first event `pred` holds for is; the watch may trail what kubectl saw."""
        def found() -> list[int] | None:  # a list: index 0 is a find, not a falsy miss
            return next(([i] for i, e in enumerate(list(self.events)) if pred(e)), None)
        return poll(found, timeout=timeout, what=f"a watch event ({self.error or 'stream open'})")[0]


def dns_address(cluster: Cluster) -> tuple[str, int]:
    """Where the cluster DNS listens, as a pod sees it (SENDO_DNS in its environment)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dnsaddr"},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "c", "image": "python:3.11", "command": ["sh", "-c", "echo $SENDO_DNS"]}]}}
    apply(cluster, pod)
    poll(lambda: cluster.kubectl("get", "pod", "dnsaddr", "-o", "jsonpath={.status.phase}").stdout == "Succeeded",
         timeout=60, what="the DNS address pod to finish")
    host, port = cluster.kubectl("logs", "dnsaddr").stdout.strip().rsplit(":", 1)
    assert host.startswith("127.")  # loopback only
    return host, int(port)


def resolve(host: str, port: int, name: str) -> list[str]:
    answer = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=2)
    return [r.address for rrset in answer.answer for r in rrset]


def test_statefulset_starts_in_order_answers_by_pod_name_and_keeps_claims(cluster: Cluster):
    api = cluster.api()
    port = unique_port()
    events = PodEvents(api, "app=web-sts")
    try:
        apply(cluster, *web_statefulset(port))
        out = cluster.kubectl("rollout", "status", "sts/web", "--timeout=180s", timeout=200).stdout
        assert "partitioned roll out complete: 3 new pods have been updated" in out, out
        # OrderedReady: web-1 is created only after web-0 is Ready, web-2 after web-1
        for before, after in (("web-0", "web-1"), ("web-1", "web-2")):
            ready_at = events.first(lambda e: e[1] == before and e[2])
            added_at = events.first(lambda e: e[0] == "ADDED" and e[1] == after)
            assert ready_at < added_at, events.events
        pods = {p["metadata"]["name"]: p for p in cluster.kubectl_json("get", "pods", "-l", "app=web-sts")["items"]}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        for name, p in pods.items():
            assert p["spec"]["hostname"] == name and p["spec"]["subdomain"] == "web"
            assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == name
            claim = [v for v in p["spec"]["volumes"] if v["name"] == "data"][0]
            assert claim["persistentVolumeClaim"]["claimName"] == f"data-{name}"
        # per-pod DNS names of the headless Service, and each pod answers on its own address
        host, dport = dns_address(cluster)
        for name, p in pods.items():
            fqdn = f"{name}.web.{NS}.svc.cluster.local"
            addrs = poll(lambda: resolve(host, dport, fqdn) or None, timeout=30, what=f"DNS {fqdn}")
            assert addrs == [p["status"]["podIP"]]
            assert http_get(addrs[0], port)[0] == 200
        assert sorted(resolve(host, dport, f"web.{NS}.svc.cluster.local")) == \
            sorted(p["status"]["podIP"] for p in pods.values())

        claims = lambda: sorted(c["metadata"]["name"] for c in cluster.kubectl_json("get", "pvc")["items"])  # noqa: E731
        assert claims() == ["data-web-0", "data-web-1", "data-web-2"]

        # scale down through the scale subresource (official client): highest ordinal first, claims kept
        apps = k8s.AppsV1Api(api)
        apps.patch_namespaced_stateful_set_scale("web", NS, {"spec": {"replicas": 1}})
        poll(lambda: sorted(p["metadata"]["name"] for p in
                            cluster.kubectl_json("get", "pods", "-l", "app=web-sts")["items"]) == ["web-0"],
             timeout=90, what="web-1 and web-2 to go")
        gone2 = events.first(lambda e: e[1] == "web-2" and e[3])
        gone1 = events.first(lambda e: e[1] == "web-1" and e[3])
        assert gone2 < gone1, events.events
        assert claims() == ["data-web-0", "data-web-1", "data-web-2"]
        status = poll(lambda: (lambda s: s if s.replicas == 1 and s.ready_replicas == 1 else None)(
            apps.read_namespaced_stateful_set_status("web", NS).status), timeout=60, what="status of 1 replica")
        assert status.current_revision == status.update_revision and status.observed_generation >= 2
    finally:
        events.stop()

    # an immutable field: 422 naming spec
    r = cluster.kubectl("patch", "sts", "web", "-p", '{"spec":{"serviceName":"other"}}', check=False)
    assert r.returncode != 0 and "Forbidden: updates to statefulset spec for fields other than" in r.stderr, r.stderr

    # rolling update and undo
    first_rev = apps.read_namespaced_stateful_set("web", NS).status.update_revision
    cluster.kubectl("set", "env", "sts/web", "VERSION=2")
    cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s", timeout=150)
    pod_env = lambda: {e["name"]: e.get("value") for e in  # noqa: E731
                       cluster.kubectl_json("get", "pod", "web-0")["spec"]["containers"][0]["env"]}
    poll(lambda: pod_env().get("VERSION") == "2" and is_ready(cluster.kubectl_json("get", "pod", "web-0")),
         timeout=90, what="web-0 on the new template")
    second_rev = apps.read_namespaced_stateful_set("web", NS).status.update_revision
    assert second_rev != first_rev
    out = cluster.kubectl("rollout", "undo", "sts/web").stdout
    assert "rolled back" in out, out
    poll(lambda: "VERSION" not in pod_env() and is_ready(cluster.kubectl_json("get", "pod", "web-0")),
         timeout=90, what="web-0 back on the first template")
    assert poll(lambda: apps.read_namespaced_stateful_set("web", NS).status.update_revision == first_rev or None,
                timeout=30, what="the first revision to be current again")

    # a budget that allows no disruption: eviction is refused with 429 and Kubernetes' message
    cluster.kubectl("create", "pdb", "web", "--selector", "app=web-sts", "--min-available", "1")
    policy = k8s.PolicyV1Api(api)
    poll(lambda: (lambda s: s.observed_generation and s.expected_pods == 1 and s.current_healthy == 1)(
        policy.read_namespaced_pod_disruption_budget_status("web", NS).status), timeout=60, what="PDB status")
    row = cluster.kubectl("get", "pdb", "web", "--no-headers").stdout.split()
    assert row[:4] == ["web", "1", "N/A", "0"], row
    pdb = policy.read_namespaced_pod_disruption_budget("web", NS).status
    assert pdb.disruptions_allowed == 0 and pdb.desired_healthy == 1
    assert [(c.type, c.status, c.reason) for c in pdb.conditions] == [("DisruptionAllowed", "False",
                                                                       "InsufficientPods")]
    core = k8s.CoreV1Api(api)
    with pytest.raises(k8s.ApiException) as err:
        core.create_namespaced_pod_eviction("web-0", NS, k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name="web-0")))
    assert err.value.status == 429
    assert "Cannot evict pod as it would violate the pod's disruption budget." in err.value.body
    cluster.kubectl("delete", "pdb", "web")
    cluster.kubectl("delete", "sts", "web")
    poll(lambda: not cluster.kubectl_json("get", "pods", "-l", "app=web-sts")["items"], timeout=90,
         what="the StatefulSet's pods to go")
    assert claims() == ["data-web-0", "data-web-1", "data-web-2"]  # whenDeleted: Retain


def hollow_node(cluster: Cluster) -> Agent:
    """`sendo agent --hollow 1` joining the cluster as node hollow-0000 (stopped by PID);
    hollow nodes act for many nodes at once, and a node token speaks for one node only."""
    return Agent(cluster, "--hollow", "1", "--node-name", "hollow", token_file="admin-token")


def daemonset() -> dict:
    labels = {"app": "nodeagent"}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "nodeagent"},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "a", "image": "busybox", "command": ["sleep", "3600"]}]}}}}


def sleeper_deployment() -> dict:
    labels = {"app": "guarded"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guarded"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "s", "image": "busybox", "command": ["sleep", "3600"]}],
                         "volumes": [{"name": "scratch", "emptyDir": {}}]}}}}


def test_daemonset_follows_new_nodes_and_drain_respects_the_budget(cluster: Cluster):
    api = cluster.api()
    apps, policy = k8s.AppsV1Api(api), k8s.PolicyV1Api(api)
    real_node = cluster.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    apply(cluster, daemonset(), sleeper_deployment(),
          {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    cluster.kubectl("rollout", "status", "ds/nodeagent", "--timeout=120s", timeout=150)
    cluster.kubectl("rollout", "status", "deploy/guarded", "--timeout=120s", timeout=150)
    poll(lambda: policy.read_namespaced_pod_disruption_budget("guarded", NS).status.disruptions_allowed == 1,
         timeout=60, what="the budget to allow one disruption")

    hollow = hollow_node(cluster)
    try:
        def daemon_nodes():
            return sorted(p["spec"].get("nodeName", "") for p in
                          cluster.kubectl_json("get", "pods", "-l", "app=nodeagent")["items"] if is_ready(p))
        assert poll(lambda: daemon_nodes() == sorted([real_node, "hollow-0000"]), timeout=60,
                    what="a daemon pod on the new node")
        st = poll(lambda: (lambda s: s if s.number_ready == 2 and s.desired_number_scheduled == 2 else None)(
            apps.read_namespaced_daemon_set("nodeagent", NS).status), timeout=60, what="DaemonSet status")
        assert st.current_number_scheduled == 2 and st.number_misscheduled == 0 and st.updated_number_scheduled == 2
        row = cluster.kubectl("get", "ds", "nodeagent", "--no-headers").stdout.split()
        assert row[:6] == ["nodeagent", "2", "2", "2", "2", "2"], row
        pod = next(p for p in cluster.kubectl_json("get", "pods", "-l", "app=nodeagent")["items"]
                   if p["spec"]["nodeName"] == "hollow-0000")
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                                "values": ["hollow-0000"]}]}]
        assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} \
            in pod["spec"]["tolerations"]

        # drain the real node: the budget lets one pod go, refuses the second (429, retried by
        # kubectl) until its replacement is Ready on the hollow node
        r = cluster.kubectl("drain", real_node, "--ignore-daemonsets", "--delete-emptydir-data",
                            "--timeout=150s", timeout=180)
        out = r.stdout + r.stderr
        assert "Cannot evict pod as it would violate the pod's disruption budget." in out, out
        assert f"node/{real_node} drained" in out, out
        node = cluster.kubectl_json("get", "node", real_node)
        assert node["spec"]["unschedulable"] is True
        guarded = cluster.kubectl_json("get", "pods", "-l", "app=guarded")["items"]
        assert {p["spec"]["nodeName"] for p in guarded} == {"hollow-0000"}
        assert real_node in daemon_nodes()  # daemon pods stay (--ignore-daemonsets)
        cluster.kubectl("uncordon", real_node)
        assert not cluster.kubectl_json("get", "node", real_node)["spec"].get("unschedulable")

        # a rolling update of the DaemonSet and its undo
        cluster.kubectl("set", "env", "ds/nodeagent", "VERSION=2")
        out = cluster.kubectl("rollout", "status", "ds/nodeagent", "--timeout=120s", timeout=150).stdout
        assert 'daemon set "nodeagent" successfully rolled out' in out, out
        revs = cluster.kubectl_json("get", "controllerrevisions", "-l", "app=nodeagent")["items"]
        assert sorted(r["revision"] for r in revs) == [1, 2]
        out = cluster.kubectl("rollout", "undo", "ds/nodeagent").stdout
        assert "rolled back" in out, out
        cluster.kubectl("rollout", "status", "ds/nodeagent", "--timeout=120s", timeout=150)
        history = cluster.kubectl("rollout", "history", "ds/nodeagent").stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"], history
        envs = [c.get("env") for p in cluster.kubectl_json("get", "pods", "-l", "app=nodeagent")["items"]
                if not p["metadata"].get("deletionTimestamp") for c in p["spec"]["containers"]]
        assert envs == [None, None]
    finally:
        hollow.stop()
