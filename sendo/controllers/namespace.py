"""Namespace controller: empties a terminating namespace, then releases it.

A deleted namespace stays (phase Terminating) while its "kubernetes" finalizer is
there. This controller deletes everything inside — every namespaced kind the API
serves, found through discovery so custom resources count too — and once nothing is
left removes the finalizer through the `finalize` subresource; the API then deletes
the namespace.
"""
from __future__ import annotations

import logging
from typing import Any

from ..client import ApiError, kind
from .base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]
FINALIZER = "kubernetes"


class NamespaceController(Controller):
    name = "namespace-controller"

    def setup(self) -> None:
        self.ns_kind = kind("namespaces")
        self.inf = self.informers.get(self.ns_kind)
        self.inf.add_handler(lambda t, o, old: self.enqueue(o) if t != "DELETED" else None)

    async def _namespaced_collections(self) -> list[str]:
        """URL paths of every namespaced, deletable collection (from discovery)."""
        out = []
        gvs = ["/api/v1"]
        groups = await self.client.request("GET", "/apis")
        for g in groups.get("groups", []):
            gvs.append(f"/apis/{g['preferredVersion']['groupVersion']}")
        for gv in gvs:
            try:
                doc = await self.client.request("GET", gv)
            except ApiError:
                continue
            for r in doc.get("resources", []):
                if r.get("namespaced") and "/" not in r["name"] and "delete" in r.get("verbs", []):
                    out.append(f"{gv}/namespaces/{{ns}}/{r['name']}")
        return out

    async def reconcile(self, key: str) -> float | None:
        ns = self.inf.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return None
        remaining = 0
        for coll in await self._namespaced_collections():
            url = coll.format(ns=key)
            items = (await self.client.request("GET", url)).get("items", [])
            for item in items:
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.client.request("DELETE", f"{url}/{item['metadata']['name']}",
                                              body={"propagationPolicy": "Background"})
                except ApiError as e:
                    if e.status != 404:
                        raise
        if remaining:
            return 0.5  # contents are going (pods stop gracefully): look again soon
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": key},
                "spec": {"finalizers": [f for f in ns["spec"]["finalizers"] if f != FINALIZER]}}
        try:
            await self.client.request("PUT", f"/api/v1/namespaces/{key}/finalize", body=body)
        except ApiError as e:
            if e.status != 404:
                raise
        return None
