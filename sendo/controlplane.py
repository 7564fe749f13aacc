"""The control loops that run beside the API server: scheduler and controllers.

They share one REST client and one set of informers, and reach the API over HTTP.
"""
from __future__ import annotations

import logging

from .client import Client
from .controllers.base import InformerFactory

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, url: str, token: str, ca_pem: bytes | None, node_grace_seconds: float = 40.0):
        from .controllers.deployment import DeploymentController
        from .controllers.gc import GarbageCollector
        from .controllers.namespace import NamespaceController
        from .controllers.nodelifecycle import NodeLifecycleController
        from .controllers.replicaset import ReplicaSetController
        from .scheduler.scheduler import Scheduler

        self.client = Client(url, token, ca_pem, user_agent="sendo-controller-manager")
        self.informers = InformerFactory(self.client)
        self.loops = [
            Scheduler(self.client, self.informers),
            DeploymentController(self.client, self.informers),
            ReplicaSetController(self.client, self.informers),
            GarbageCollector(self.client, self.informers),
            NamespaceController(self.client, self.informers),
            NodeLifecycleController(self.client, self.informers, grace_seconds=node_grace_seconds),
        ]

    async def start(self) -> None:
        await self.informers.start()
        for loop in self.loops:
            await loop.start()

    async def stop(self) -> None:
        for loop in self.loops:
            await loop.stop()
        await self.informers.stop()
        await self.client.close()
