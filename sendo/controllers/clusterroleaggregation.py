"""ClusterRole aggregation: a ClusterRole with an ``aggregationRule`` holds the rules of
every ClusterRole its ``clusterRoleSelectors`` match (Kubernetes' clusterrole-aggregation
controller). Any ClusterRole change re-checks every aggregating role, so a role labelled
``rbac.authorization.k8s.io/aggregate-to-edit: "true"`` reaches ``edit`` and, through
``edit``'s own label, ``admin``."""
from __future__ import annotations

import logging

from ..client import ApiError, kind
from ..kinds.rbac import GROUP, aggregated_rules
from .base import Controller

log = logging.getLogger(__name__)


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"

    def setup(self) -> None:
        self.roles_kind = kind("clusterroles", GROUP)
        self.roles = self.informers.get(self.roles_kind)
        self.roles.add_handler(lambda t, o, old: self._changed())

    def _changed(self) -> None:
        for role in self.roles.list():
            if role.get("aggregationRule") is not None:
                self.enqueue(role)

    async def reconcile(self, key: str) -> float | None:
        role = self.roles.get(key)
        if role is None or role.get("aggregationRule") is None:
            return None
        rules = aggregated_rules(role, self.roles.list())
        if rules == (role.get("rules") or []):
            return None
        try:
            await self.client.patch(self.roles_kind, None, key, {"rules": rules})
            log.info("aggregated %d rules into clusterrole %s", len(rules), key)
        except ApiError as e:
            if e.status != 404:
                raise
        return None
