"""Taint-based eviction: pods on a node with a NoExecute taint are deleted when they stop
tolerating it (Kubernetes' taint eviction controller, the "NoExecute taint manager").

For every pod bound to a node whose taints include NoExecute ones:

* a taint no toleration of the pod matches: the pod is deleted at once;
* all of them tolerated, and some of the tolerations used say ``tolerationSeconds``: the
  pod is deleted the smallest of those many seconds after this controller first saw it
  under the taints (the DefaultTolerationSeconds admission gives every pod 300 s for the
  not-ready and unreachable taints the node lifecycle controller sets);
* tolerated with no ``tolerationSeconds``: left alone for as long as the taints last.

When the taints go before the time is up (the agent came back), the eviction is cancelled.
Eviction is an ordinary graceful delete, preconditioned on the pod's uid (a replacement
with the same name is never hit), after a ``DisruptionTarget`` condition and a
``TaintManagerEviction`` Event, as Kubernetes writes them. A ReplicaSet no longer counts a
pod being deleted, so it makes a replacement, which the scheduler puts on a node without
the taint. The pod object itself goes when its agent confirms the containers stopped; on
a node that never comes back, see podgc.py.

Time is this process's monotonic clock (injectable for tests), as Kubernetes keeps it in
memory: a restarted controller gives every tainted pod its full toleration again.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..client import ApiError, Client
from ..client.events import EventRecorder
from ..client.informer import obj_key
from ..kinds.meta import now_rfc3339
from ..kinds.taints import toleration_matches
from .base import InformerFactory, split_key
from .podutil import NodePodsController

log = logging.getLogger(__name__)
Obj = dict[str, Any]

FOREVER = None


def no_execute_taints(node: Obj | None) -> list[Obj]:
    return [t for t in ((node or {}).get("spec") or {}).get("taints") or []
            if isinstance(t, dict) and t.get("effect") == "NoExecute"]


def toleration_time(pod: Obj, taints: list[Obj]) -> float | None:
    """Seconds the pod may stay under these NoExecute taints: 0 if one is not tolerated,
    None (for ever) if no toleration used sets tolerationSeconds, else the smallest
    tolerationSeconds (negative counts as 0) among the tolerations used."""
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]
    used: list[Obj] = []
    for taint in taints:
        key, value = taint.get("key") or "", taint.get("value") or ""
        matching = [t for t in tolerations if toleration_matches(t, key, value, "NoExecute")]
        if not matching:
            return 0.0
        used += matching
    seconds = [max(float(t["tolerationSeconds"]), 0.0) for t in used if t.get("tolerationSeconds") is not None]
    return min(seconds) if seconds else FOREVER


class TaintEvictionController(NodePodsController):
    name = "taint-eviction-controller"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.recorder = EventRecorder(client, self.name)
        self._since: dict[str, tuple[str, float]] = {}  # pod key -> (uid, when first seen under the taints)
        super().__init__(client, informers)

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def _on_node(self, typ: str, node: Obj, old: Obj | None) -> None:
        if typ != "DELETED" and no_execute_taints(node) == no_execute_taints(old):
            return
        for key in self.pods_on.keys(node["metadata"]["name"]):
            self.queue.add(key)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        key = obj_key(pod)
        if typ == "DELETED":
            self._since.pop(key, None)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if key in self._since or (node and no_execute_taints(self.node_inf.get(node))):
            self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        pod = self.pod_inf.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            self._since.pop(key, None)
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        taints = no_execute_taints(self.node_inf.get(node)) if node else []
        seconds = toleration_time(pod, taints) if taints else FOREVER
        if seconds is FOREVER:
            if self._since.pop(key, None) is not None:
                log.info("%s: pod %s tolerates its node's taints now: eviction cancelled", self.name, key)
            return None
        uid, now = pod["metadata"]["uid"], self.clock()
        seen = self._since.get(key)
        if seen is None or seen[0] != uid:
            seen = self._since[key] = (uid, now)
        left = seen[1] + seconds - now
        if left > 0:
            return left
        await self._evict(pod, node, taints)
        self._since.pop(key, None)
        return None

    async def _evict(self, pod: Obj, node: str, taints: list[Obj]) -> None:
        ns, name = split_key(obj_key(pod))
        log.info("%s: evicting pod %s/%s from node %s (NoExecute taints %s)", self.name, ns, name, node,
                 ", ".join(t.get("key", "") for t in taints))
        self.recorder.emit(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        condition = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                     "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now_rfc3339()}
        try:
            await self.client.patch(self.pod_kind, ns, name, {"status": {"conditions": [condition]}},
                                    type="strategic", sub="status")
            await self.client.delete(self.pod_kind, ns, name, preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            if e.status not in (404, 409):  # gone, or replaced by a pod of the same name: nothing to evict
                raise
