"""ServiceAccount controller: every active namespace has a `default` ServiceAccount.

Pods that name no ServiceAccount run as `default` (the API sets
`spec.serviceAccountName` when a pod is created), so it must exist in every namespace:
this loop creates it in each new namespace and again if it is deleted. A namespace
that is being deleted is left alone (the API would refuse new content anyway).
"""
from __future__ import annotations

import logging

from ..client import ApiError, kind
from .base import Controller

log = logging.getLogger(__name__)
DEFAULT = "default"


class ServiceAccountsController(Controller):
    name = "serviceaccount-controller"

    def setup(self) -> None:
        self.ns_kind = kind("namespaces")
        self.sa_kind = kind("serviceaccounts")
        self.namespaces = self.informers.get(self.ns_kind)
        # only the accounts this loop keeps: a small cache even with many accounts
        self.accounts = self.informers.get(self.sa_kind, field_selector=f"metadata.name={DEFAULT}")
        self.namespaces.add_handler(lambda t, o, old: self.enqueue(o) if t != "DELETED" else None)
        self.accounts.add_handler(
            lambda t, o, old: self.queue.add(o["metadata"]["namespace"]) if t == "DELETED" else None)

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") \
                or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return None
        if self.accounts.get(f"{key}/{DEFAULT}") is not None:
            return None
        try:
            await self.client.create(self.sa_kind, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                    "metadata": {"name": DEFAULT, "namespace": key}})
            log.info("created serviceaccount %s/%s", key, DEFAULT)
        except ApiError as e:
            # 409: it exists (the cache was behind); 403: the namespace began terminating;
            # 404: the namespace is gone
            if e.status not in (409, 403, 404):
                raise
        return None
