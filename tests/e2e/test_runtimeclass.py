"""RuntimeClass through the real kubectl: the class every node's runtime gets, and a pod
that names a class the cluster lacks until someone creates it."""
from __future__ import annotations

from .harness import Cluster, poll, to_yaml


def test_runtime_classes_pick_the_runtime(cluster: Cluster):
    assert cluster.kubectl("get", "runtimeclass", "process", "-o", "jsonpath={.handler}").stdout == "process"
    assert "HANDLER" in cluster.kubectl("get", "runtimeclasses").stdout

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fussy"},
           "spec": {"runtimeClassName": "sandboxed", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "python:3.11",
                                    "command": ["python3", "-c", "import time; time.sleep(120)"]}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod))

    def waiting_message() -> str:
        return cluster.kubectl("get", "pod", "fussy", "-o",
                               "jsonpath={.status.containerStatuses[0].state.waiting.message}").stdout
    poll(lambda: "RuntimeClass" in waiting_message(), 30, what="the pod waiting for its RuntimeClass")
    assert waiting_message() == 'Failed to create pod sandbox: RuntimeClass "sandboxed" not found'
    assert "ContainerCreating" in cluster.kubectl("get", "pod", "fussy").stdout
    poll(lambda: "FailedCreatePodSandBox" in cluster.kubectl("get", "events", "--field-selector",
                                                             "involvedObject.name=fussy").stdout,
         30, what="the FailedCreatePodSandBox event")

    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "sandboxed"},
          "handler": "process"}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(rc))
    poll(lambda: cluster.kubectl("get", "pod", "fussy", "-o", "jsonpath={.status.phase}").stdout == "Running",
         60, what="the pod running once its RuntimeClass exists")

    bad = cluster.kubectl("apply", "-f", "-", check=False,
                          input=to_yaml({**rc, "metadata": {"name": "bad"}, "handler": "Not_Valid"}))
    assert bad.returncode != 0 and "handler" in bad.stderr
