"""What a pod worker needs from its node, and nothing more.

`Agent` implements `PodHost`; the pod worker and the prestart hooks only see this
interface, so they do not import the agent (no import cycle) and a test can run a real
worker on a small stand-in.
"""
from __future__ import annotations

from typing import Any, Protocol

from ..client import Client
from .runtime import Runtime
from .volumes import VolumeManager

Obj = dict[str, Any]


class PodHost(Protocol):
    client: Client  # the node's API client
    pods_dir: str  # each pod's directory is <pods_dir>/<uid>
    logs_dir: str
    volumes: VolumeManager  # the pods' volumes on this node

    @property
    def node_address(self) -> str:
        """The node's InternalIP: the pods' hostIP."""
        ...

    @property
    def backoff(self) -> tuple[float, float]:
        """Crash-loop back-off: the first delay and the cap."""
        ...

    def runtime_for(self, pod: Obj) -> Runtime:
        """The runtime the pod's RuntimeClass (or the node's default) names; SandboxError if none."""
        ...

    async def prepare_pod(self, pod: Obj) -> None:
        """Wait (bounded) until the pod's ServiceAccount token is on disk; never raises."""
        ...

    def base_env(self, pod: Obj, pod_ip: str | None) -> dict[str, str]:
        """What every container of the pod starts with (PATH, DNS, service links, API server)."""
        ...

    def event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        ...

    def worker_failed(self, worker: Any) -> None:
        """The worker (a PodWorker: not imported here, so no cycle) crashed: the node replaces it."""
        ...
