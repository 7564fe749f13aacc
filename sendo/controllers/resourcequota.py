"""ResourceQuota controller: every quota's status.hard and status.used stay true.

Admission (in the API server) charges a quota when an object is created; nothing there
gives the charge back. This loop recounts a quota's namespace and writes
``status.hard`` (= spec.hard) and ``status.used`` when they differ from what it counted,
so a deleted or finished pod (Succeeded/Failed pods use nothing), a deleted Service,
ConfigMap, Secret, claim… frees its share, and a create that failed after being
charged is forgotten.

Triggers: a quota's own changes, and pod deletes and pods finishing in its namespace
(pods come from the shared pod informer); adds are not triggers, as in Kubernetes'
replenishment: admission charged them, and a recount between a charge and the write
of the object it was for could only undercount. Other kinds are recounted on those
triggers and every ``RECHECK_SECONDS`` for quotas that track them; every quota is
recounted every ``RESYNC_SECONDS`` (a create refused after its charge, e.g. a name
taken, leaves no event to react to), as Kubernetes' controller also resyncs. The count is read with LISTs from the API after the quota is
read, and the status is written with the quota's resourceVersion: if admission charged
the quota meanwhile, the write conflicts and the count is redone.
"""
from __future__ import annotations

import logging
from typing import Any

from ..client import ApiError, kind
from ..kinds import quota as q
from .base import Controller, split_key

log = logging.getLogger(__name__)
Obj = dict[str, Any]
RECHECK_SECONDS = 10.0  # quotas that count kinds other than pods (no informer for those)
RESYNC_SECONDS = 60.0  # every quota: forgets charges whose object was never written


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def setup(self) -> None:
        self.quota_kind = kind("resourcequotas")
        self.quotas = self.informers.get(self.quota_kind)
        self.pods = self.informers.get(kind("pods"))
        self.quotas.add_handler(lambda t, o, old: self.enqueue(o) if t != "DELETED" else None)
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, event: str, pod: Obj, old: Obj | None) -> None:
        """Usage goes down when a pod is deleted or finishes; an added pod was charged by admission,
        so adds trigger nothing (a recount racing a charge could only undercount)."""
        finished = event == "MODIFIED" and old is not None and q.pod_is_terminal(pod) and not q.pod_is_terminal(old)
        if event == "DELETED" or finished:
            self.enqueue_namespace(pod["metadata"].get("namespace") or "")

    def enqueue_namespace(self, ns: str) -> None:
        for quota in self.quotas.list():
            if quota["metadata"].get("namespace") == ns:
                self.enqueue(quota)

    async def count(self, quota: Obj) -> q.Usage:
        ns = quota["metadata"]["namespace"]
        objects: dict[tuple[str, str], list[Obj]] = {}
        counts: dict[tuple[str, str], int] = {}
        for group, plural in q.tracked_kinds(quota):
            try:
                r = kind(plural, group)
            except KeyError:
                continue  # a custom resource: counted by admission only
            items = (await self.client.list(r, ns)).get("items") or []
            if q.needs_content(group, plural, quota):
                objects[(group, plural)] = items
            else:
                counts[(group, plural)] = len(items)
        return q.total_usage(quota, objects, counts)

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        if self.quotas.get(key) is None:
            return None
        quota = await self.client.get_or_none(self.quota_kind, ns, name)  # fresh: its revision guards the write
        if quota is None:
            return None
        used = await self.count(quota)
        status = quota.get("status") or {}
        new = {**status, "hard": dict(q.hard_of(quota)), "used": q.add_usage(quota, used, {})}
        if new != status:
            quota["status"] = new
            try:
                await self.client.update_status(self.quota_kind, quota)
            except ApiError as e:
                if e.status == 404:
                    return None
                raise
            log.info("resourcequota %s: used %s", key, new["used"])
        return RECHECK_SECONDS if q.tracked_kinds(quota) - {("", "pods")} else RESYNC_SECONDS
