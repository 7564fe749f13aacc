"""Pod garbage collection: pod objects no agent will ever finish are removed for good
(Kubernetes' pod GC controller, kube-controller-manager's ``podgc``).

A pod being deleted waits for its agent to stop the containers and delete the object. Some
never will, and are force-deleted (grace period 0) here:

* orphaned: bound to a node that no longer exists (checked against the API, not only the
  cache, before deleting) — `kubectl delete node` of a lost machine frees its pods' names;
* being deleted but never bound to a node;
* being deleted on a node that is not Ready and carries the
  ``node.kubernetes.io/out-of-service`` taint: an operator's word that the machine is
  down and its processes gone (Kubernetes' non-graceful node shutdown).

A pod being deleted on a node that is merely unreachable is left to wait, as Kubernetes
does: its agent may still be running it behind a partition, so only that agent (when it
comes back, see agent.py) or an operator may say it stopped. A ReplicaSet does not count
such a pod, so Deployments are whole again meanwhile; a StatefulSet never runs two pods of
one identity.

Orphaned pods that have not finished are first marked Failed with a ``DisruptionTarget``
condition (reason DeletionByPodGC), as Kubernetes does, so owners see why they went.
"""
from __future__ import annotations

import logging
from typing import Any

from ..client import ApiError
from ..client.informer import obj_key
from ..kinds.meta import now_rfc3339
from ..kinds.taints import OUT_OF_SERVICE_TAINT
from .base import split_key
from .nodelifecycle import ready_status
from .podutil import NodePodsController

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _out_of_service(node: Obj) -> bool:
    return ready_status(node) != "True" and any(
        t.get("key") == OUT_OF_SERVICE_TAINT and t.get("effect") in ("NoExecute", "NoSchedule")
        for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict))


class PodGCController(NodePodsController):
    name = "pod-garbage-collector"
    workers = 1

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        if typ == "DELETED" or _out_of_service(node):
            for key in self.pods_on.keys(node["metadata"]["name"]):
                self.queue.add(key)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        if typ == "DELETED":
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if pod["metadata"].get("deletionTimestamp") or (node and self.node_inf.get(node) is None):
            self.enqueue(pod)

    async def reconcile(self, key: str) -> float | None:
        pod = self.pod_inf.get(key)
        if pod is None:
            return None
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            if deleting:
                await self._force_delete(pod, "it was never scheduled")
            return None
        node = self.node_inf.get(node_name)
        if node is None:
            if await self.client.get_or_none(self.node_kind, None, node_name) is None:  # not a stale cache
                await self._mark_failed(pod, f"PodGC: node {node_name} no longer exists")
                await self._force_delete(pod, f"its node {node_name} no longer exists")
            return None
        if deleting and _out_of_service(node):
            await self._force_delete(pod, f"its node {node_name} is out of service")
        return None

    async def _mark_failed(self, pod: Obj, message: str) -> None:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        ns, name = split_key(obj_key(pod))
        now = now_rfc3339()
        status = {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                                                     "reason": "DeletionByPodGC", "message": message,
                                                     "lastTransitionTime": now}]}
        try:
            await self.client.patch(self.pod_kind, ns, name, {"status": status}, type="strategic", sub="status")
        except ApiError as e:
            if e.status != 404:
                raise

    async def _force_delete(self, pod: Obj, why: str) -> None:
        ns, name = split_key(obj_key(pod))
        log.info("%s: force-deleting pod %s/%s: %s", self.name, ns, name, why)
        try:
            await self.client.delete(self.pod_kind, ns, name, gracePeriodSeconds=0,
                                     preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            if e.status not in (404, 409):
                raise
