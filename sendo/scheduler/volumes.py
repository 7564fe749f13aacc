"""The scheduler's view of a pod's PersistentVolumeClaims (kube-scheduler's VolumeBinding
plugin, cut down): which nodes the claims allow, and which claims wait for the pod.

* a claim that does not exist, is being deleted, or is unbound in an `Immediate` class
  keeps the pod Pending with kube-scheduler's message;
* a bound claim whose PersistentVolume has node affinity limits the pod to those nodes;
* an unbound claim of a `WaitForFirstConsumer` class does not stop the pod: once a node
  is chosen the claim gets `volume.kubernetes.io/selected-node`, and the provisioner
  makes its volume there (a claim that already names a node limits the pod to it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..kinds.storage import SELECTED_NODE_ANNOTATION, pod_claims
from ..kinds.nodematch import term_matches
from .plugins import NodeInfo

Obj = dict[str, Any]
VOLUME_AFFINITY = "node(s) had volume node affinity conflict"
SELECTED_ELSEWHERE = "node(s) didn't match the node selected for its PersistentVolumeClaims"


@dataclass
class ClaimPlan:
    error: str | None = None  # the pod cannot be placed now: why
    terms: list[list[Obj]] = field(default_factory=list)  # each bound volume's nodeSelectorTerms
    nodes: set[str] | None = None  # nodes already selected for waiting claims
    to_select: list[tuple[str, str]] = field(default_factory=list)  # (ns, claim) to annotate with the node

    def misfit(self, ni: NodeInfo) -> str | None:
        if self.nodes is not None and ni.name not in self.nodes:
            return SELECTED_ELSEWHERE
        for terms in self.terms:
            if not any(term_matches(t, ni.labels, ni.name) for t in terms):
                return VOLUME_AFFINITY
        return None


def plan_claims(pod: Obj, claim_of, volume_of, class_of) -> ClaimPlan | None:
    """None when the pod uses no claim. `claim_of(ns, name)`, `volume_of(name)`,
    `class_of(name)` read the informer caches."""
    ns = pod["metadata"].get("namespace", "")
    claims = pod_claims(pod)
    if not claims:
        return None
    plan = ClaimPlan()
    for name in claims:
        pvc = claim_of(ns, name)
        if pvc is None:
            plan.error = f'persistentvolumeclaim "{name}" not found'
            return plan
        if pvc["metadata"].get("deletionTimestamp"):
            plan.error = f'persistentvolumeclaim "{name}" is being deleted'
            return plan
        volume = (pvc.get("spec") or {}).get("volumeName")
        if volume:
            pv = volume_of(volume)
            if pv is None:
                plan.error = f'persistentvolume "{volume}" not found'
                return plan
            required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
            if required.get("nodeSelectorTerms"):
                plan.terms.append(list(required["nodeSelectorTerms"]))
            continue
        cls = class_of((pvc.get("spec") or {}).get("storageClassName") or "")
        if cls is None or cls.get("volumeBindingMode") != "WaitForFirstConsumer":
            plan.error = "pod has unbound immediate PersistentVolumeClaims"
            return plan
        selected = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
        if selected:
            plan.nodes = {selected} if plan.nodes is None else plan.nodes & {selected}
        else:
            plan.to_select.append((ns, name))
    return plan
