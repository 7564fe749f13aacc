"""pods/<name>/eviction: delete a pod unless that would break its PodDisruptionBudget.

The rules kube-apiserver's eviction REST follows: a pod that is pending, finished or
already being deleted goes at once; a pod no budget selects goes at once; a pod two
budgets select is refused (500, as Kubernetes does). With one budget, the eviction
takes one of its `status.disruptionsAllowed` with a compare-and-swap on the budget's
status (recording the pod in `status.disruptedPods`, so the disruption controller does
not count it healthy while it terminates) and then deletes the pod; none left is a 429
with Kubernetes' message, which `kubectl drain` retries. An unready pod may go without
spending the budget when the budget is met anyway (`IfHealthyBudget`) or always
(`unhealthyPodEvictionPolicy: AlwaysAllow`).
"""
from __future__ import annotations

from typing import Any, Callable

from ..kinds.base import Obj, Resource
from ..kinds.meta import now_rfc3339
from ..kinds.policy import budget_selects
from ..kinds.registry import Registry
from . import errors
from .errors import APIError
from .options import RequestOptions
from .resources import ResourceAPI, decode

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MAX_DISRUPTED_PODS = 2000


def _pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _too_many_requests(message: str, cause: str | None = None) -> APIError:
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]} if cause else {}
    return APIError(429, message, "TooManyRequests", details or None)


def _check_body(body: Any, name: str) -> dict[str, Any]:
    """The Eviction's deleteOptions; its name, if given, must be the pod's."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body must be an Eviction object")
    meta = body.get("metadata")
    given = meta.get("name") if isinstance(meta, dict) else None
    if given and given != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise errors.bad_request("Eviction.deleteOptions must be an object")
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.bad_request(f"DeleteOptions.gracePeriodSeconds must be an integer, not {grace!r}")
    return options


def _decrement(pod_name: str) -> Callable[[Obj], Obj]:
    """The change to the budget's status that spends one disruption on this pod."""
    def change(pdb: Obj) -> Obj:
        meta, status = pdb["metadata"], pdb.setdefault("status", {})
        if status.get("observedGeneration", 0) < meta.get("generation", 1):
            raise _too_many_requests(VIOLATION, f"The disruption budget {meta['name']} is still being processed "
                                                "by the server.")
        allowed = status.get("disruptionsAllowed", 0)
        if allowed < 0:
            raise APIError(403, "pdb disruptions allowed is negative", "Forbidden")
        disrupted = status.setdefault("disruptedPods", {})
        if len(disrupted) > MAX_DISRUPTED_PODS:
            raise APIError(403, "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                           "Forbidden")
        if allowed == 0:
            raise _too_many_requests(VIOLATION, f"The disruption budget {meta['name']} needs "
                                                f"{status.get('desiredHealthy', 0)} healthy pods and has "
                                                f"{status.get('currentHealthy', 0)} currently")
        status["disruptionsAllowed"] = allowed - 1
        disrupted[pod_name] = now_rfc3339()
        if allowed == 1:
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
            conds.append({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                          "message": "", "observedGeneration": meta.get("generation", 1),
                          "lastTransitionTime": now_rfc3339()})
            status["conditions"] = conds
        return pdb
    return change


async def evict(api: ResourceAPI, registry: Registry, pods: Resource, ns: str, name: str, body: Any,
                opts: RequestOptions) -> dict[str, Any]:
    """Evict the pod or raise the APIError that says why not; returns the success Status."""
    options = _check_body(body, name)
    pod = await api.get(pods, ns, name)
    phase = (pod.get("status") or {}).get("phase")
    if not (pod["metadata"].get("deletionTimestamp") or phase in ("Pending", "Succeeded", "Failed")):
        await _spend_budget(api, registry, ns, pod, opts)
    await api.delete(pods, ns, name, options, opts)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


async def _spend_budget(api: ResourceAPI, registry: Registry, ns: str, pod: Obj, opts: RequestOptions) -> None:
    pdbs = registry.get("policy", "v1", "poddisruptionbudgets")
    assert pdbs is not None
    kvs, _ = await api.list_kvs(pdbs, ns)
    matching = [pdb for pdb in (decode(kv.value) for kv in kvs) if budget_selects(pdb, pod)]
    if not matching:
        return
    if len(matching) > 1:
        raise APIError(500, "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                            "does not support.", "InternalError")
    pdb = matching[0]
    status = pdb.get("status") or {}
    if not _pod_ready(pod):
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if policy == "AlwaysAllow" or status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0:
            return  # an unready pod does not count toward the budget: it may go
    await api.modify(pdbs, ns, pdb["metadata"]["name"], _decrement(pod["metadata"]["name"]), "status",
                     dry_run=opts.dry_run, manager="eviction")
