"""Which fields each kind can be selected by (`fieldSelector`), as Kubernetes allows.

Every kind supports metadata.name and metadata.namespace; the others are per kind.
A selector on any other field is refused with 400, as Kubernetes does, instead of
silently matching nothing.
"""
from __future__ import annotations

from .base import Resource

COMMON = frozenset({"metadata.name", "metadata.namespace"})

BY_KIND: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                             "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                             "status.podIPs", "status.nominatedNodeName"}),
    ("", "events"): frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("", "nodes"): frozenset({"spec.unschedulable"}),
    ("", "replicationcontrollers"): frozenset({"status.replicas"}),
    ("apps", "replicasets"): frozenset({"status.replicas"}),
    ("batch", "jobs"): frozenset({"status.successful"}),
    ("certificates.k8s.io", "certificatesigningrequests"): frozenset({"spec.signerName"}),
}


def selectable(r: Resource) -> frozenset[str]:
    return COMMON | BY_KIND.get((r.group, r.plural), frozenset())
