"""Scheduling plugins: which nodes a pod may run on (filters) and which it should (scores).

Everything here is pure and synchronous. The scheduler keeps one ``NodeInfo`` per
node, updated incrementally from its informers, and builds one ``PodInfo`` per pod
it places, so a decision reads a handful of numbers per node and never re-sums the
cluster. Reasons and messages follow kube-scheduler's, so `kubectl describe pod`
reads the same.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ..kinds.nodematch import term_matches, tolerates
from ..kinds.quantity import parse_bytes, parse_cpu

__all__ = ["term_matches", "tolerates"]  # re-exported: the matching rules live in kinds/nodematch.py

Obj = dict[str, Any]

# What scoring assumes for a container that requests nothing (kube-scheduler's
# "non-zero" requests), so best-effort pods still spread by load.
NONZERO_CPU = 100
NONZERO_MEM = 200 * 2**20

SPREAD_WEIGHT = 2  # spreading replicas of one owner outweighs a small difference in load

NOT_READY = "node(s) were not ready"
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"
NO_CPU = "Insufficient cpu"
NO_MEMORY = "Insufficient memory"

FILTERED_EFFECTS = ("NoSchedule", "NoExecute")
UNSCHEDULABLE_TAINT = ("node.kubernetes.io/unschedulable", "", "NoSchedule")


# ----------------------------------------------------------------- pods
class Requests:
    """What a pod asks of a node: exact requests (for fit) and non-zero ones (for scoring)."""

    __slots__ = ("cpu", "mem", "nz_cpu", "nz_mem")

    def __init__(self, cpu: int = 0, mem: int = 0, nz_cpu: int = 0, nz_mem: int = 0):
        self.cpu, self.mem, self.nz_cpu, self.nz_mem = cpu, mem, nz_cpu, nz_mem


def _quantity(parse, value: Any) -> int:
    if value is None:
        return 0
    try:
        return max(parse(value), 0)
    except ValueError:
        return 0  # validation rejects these; a bad value must not stop the scheduler


def _container_requests(c: Obj) -> tuple[int, int]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    # a limit without a request means request == limit (Kubernetes defaults it so)
    return (_quantity(parse_cpu, req.get("cpu", lim.get("cpu"))),
            _quantity(parse_bytes, req.get("memory", lim.get("memory"))))


def pod_requests(spec: Obj) -> Requests:
    """Sum over containers; init containers run one at a time, so only the largest counts."""
    r = Requests()
    for c in spec.get("containers") or []:
        cpu, mem = _container_requests(c)
        r.cpu += cpu
        r.mem += mem
        r.nz_cpu += cpu or NONZERO_CPU
        r.nz_mem += mem or NONZERO_MEM
    for c in spec.get("initContainers") or []:
        cpu, mem = _container_requests(c)
        r.cpu, r.mem = max(r.cpu, cpu), max(r.mem, mem)
        r.nz_cpu, r.nz_mem = max(r.nz_cpu, cpu or NONZERO_CPU), max(r.nz_mem, mem or NONZERO_MEM)
    overhead = spec.get("overhead") or {}
    if overhead:
        cpu, mem = _quantity(parse_cpu, overhead.get("cpu")), _quantity(parse_bytes, overhead.get("memory"))
        r.cpu += cpu
        r.mem += mem
        r.nz_cpu += cpu
        r.nz_mem += mem
    return r


def owner_uid(pod: Obj) -> str | None:
    """The uid replicas share: the controller owner's, else the first owner's."""
    refs = pod["metadata"].get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return ref.get("uid")
    return refs[0].get("uid") if refs else None


class PodInfo:
    """The parts of a pod the filters and scores read, parsed once per attempt."""

    __slots__ = ("req", "tolerations", "node_selector", "affinity", "owner")

    def __init__(self, pod: Obj):
        spec = pod.get("spec") or {}
        self.req = pod_requests(spec)
        self.tolerations: list[Obj] = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
        self.node_selector = tuple((spec.get("nodeSelector") or {}).items())
        na = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.affinity: list[Obj] | None = None if required is None else list(required.get("nodeSelectorTerms") or [])
        self.owner = owner_uid(pod)


# ----------------------------------------------------------------- nodes
class NodeInfo:
    """One node as the scheduler sees it: its schedulable facts and what is placed on it.

    ``cpu``/``mem``/``pods`` are the sums of requests of the pods bound (or assumed)
    here and still running; they change by one pod at a time, never by re-summing.
    """

    __slots__ = ("name", "present", "ready", "unschedulable", "taints", "labels", "alloc_cpu", "alloc_mem",
                 "alloc_pods", "cpu", "mem", "nz_cpu", "nz_mem", "pods", "owners", "_signature")

    def __init__(self, name: str):
        self.name = name
        self.present = False  # a Node object exists (pods may name a node before it registers)
        self.ready = False
        self.unschedulable = False
        self.taints: tuple[tuple[str, str, str], ...] = ()
        self.labels: dict[str, str] = {}
        self.alloc_cpu = self.alloc_mem = self.alloc_pods = 0
        self.cpu = self.mem = self.nz_cpu = self.nz_mem = self.pods = 0
        self.owners: dict[str, int] = {}  # owner uid -> pods of that owner here
        self._signature: tuple = ()

    def set_node(self, node: Obj) -> bool:
        """Take the node's current facts; True if anything a filter reads changed."""
        spec, status = node.get("spec") or {}, node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.present = True
        self.ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints = tuple((t.get("key", ""), t.get("value") or "", t.get("effect", ""))
                            for t in spec.get("taints") or [] if t.get("effect") in FILTERED_EFFECTS)
        self.labels = dict((node.get("metadata") or {}).get("labels") or {})
        self.alloc_cpu = _quantity(parse_cpu, alloc.get("cpu"))
        self.alloc_mem = _quantity(parse_bytes, alloc.get("memory"))
        self.alloc_pods = _quantity(parse_bytes, alloc.get("pods"))  # a plain count, in quantity form
        sig = (self.ready, self.unschedulable, self.taints, tuple(sorted(self.labels.items())),
               self.alloc_cpu, self.alloc_mem, self.alloc_pods)
        changed, self._signature = sig != self._signature, sig
        return changed

    def clear_node(self) -> None:
        self.present = False
        self._signature = ()

    def add(self, req: Requests, owner: str | None) -> None:
        self.cpu += req.cpu
        self.mem += req.mem
        self.nz_cpu += req.nz_cpu
        self.nz_mem += req.nz_mem
        self.pods += 1
        if owner:
            self.owners[owner] = self.owners.get(owner, 0) + 1

    def remove(self, req: Requests, owner: str | None) -> None:
        self.cpu -= req.cpu
        self.mem -= req.mem
        self.nz_cpu -= req.nz_cpu
        self.nz_mem -= req.nz_mem
        self.pods -= 1
        if owner:
            n = self.owners.get(owner, 0) - 1
            if n > 0:
                self.owners[owner] = n
            else:
                self.owners.pop(owner, None)

    # ------------------------------------------------------------- filter
    def misfit(self, pod: PodInfo) -> tuple[str, ...]:
        """Why the pod cannot run here (empty: it can). Checked cheapest first, as kube does."""
        if not self.ready:
            return (NOT_READY,)
        if self.unschedulable and not tolerates(pod.tolerations, *UNSCHEDULABLE_TAINT):
            return (UNSCHEDULABLE,)
        for key, value, effect in self.taints:
            if not tolerates(pod.tolerations, key, value, effect):
                return (f"node(s) had untolerated taint {{{key}: {value}}}",)
        if pod.node_selector:
            labels = self.labels
            for k, v in pod.node_selector:
                if labels.get(k) != v:
                    return (AFFINITY,)
        if pod.affinity is not None and not any(term_matches(t, self.labels, self.name) for t in pod.affinity):
            return (AFFINITY,)
        req = pod.req
        if (self.pods < self.alloc_pods and (not req.cpu or self.cpu + req.cpu <= self.alloc_cpu)
                and (not req.mem or self.mem + req.mem <= self.alloc_mem)):
            return ()
        why = []
        if self.pods + 1 > self.alloc_pods:
            why.append(TOO_MANY_PODS)
        if req.cpu and self.cpu + req.cpu > self.alloc_cpu:
            why.append(NO_CPU)
        if req.mem and self.mem + req.mem > self.alloc_mem:
            why.append(NO_MEMORY)
        return tuple(why)


def pick(candidates: list[NodeInfo], pod: PodInfo) -> NodeInfo:
    """The best-scoring feasible node; ties go to the first, which rotates between pods."""
    if len(candidates) == 1:
        return candidates[0]
    owner = pod.owner
    counts = [n.owners.get(owner, 0) for n in candidates] if owner else None
    most = max(counts) if counts else 0
    best, best_score = candidates[0], -1.0
    p_cpu, p_mem = pod.req.nz_cpu, pod.req.nz_mem
    for i, n in enumerate(candidates):
        # least-allocated plus balanced cpu/memory (each 0..100) after adding the pod; inline:
        # this runs for a hundred nodes per pod
        fc = (n.nz_cpu + p_cpu) / n.alloc_cpu if n.alloc_cpu else 1.0
        fm = (n.nz_mem + p_mem) / n.alloc_mem if n.alloc_mem else 1.0
        if fc > 1.0:
            fc = 1.0
        if fm > 1.0:
            fm = 1.0
        score = (2.0 - fc - fm) * 50.0 + (1.0 - abs(fc - fm) / 2.0) * 100.0
        if most:
            # fewer pods of the same owner is better, normalised as kube's selector spreading
            score += SPREAD_WEIGHT * 100.0 * (most - counts[i]) / most
        if score > best_score:
            best, best_score = n, score
    return best


def fit_error(total: int, reasons: Counter) -> str:
    """kube-scheduler's message: `0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.`"""
    parts = sorted(f"{n} {why}" for why, n in reasons.items())
    return f"0/{total} nodes are available" + (": " + ", ".join(parts) if parts else "") + "."


def nodes_to_find(total: int, percentage: int | None, minimum: int = 100) -> int:
    """How many feasible nodes to look for before scoring (kube's percentageOfNodesToScore).

    The adaptive default falls from 50% faster than kube's (1% per 10 nodes, floor 5%):
    a Python filter+score costs about a microsecond per node, and rotating the start
    index keeps a sample from favouring the same nodes.
    """
    if total <= minimum:
        return total
    pct = percentage if percentage else max(5, 50 - total // 10)
    return min(total, max(minimum, total * pct // 100))
