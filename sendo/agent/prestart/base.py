"""The types every prestart hook shares: the pod as hooks see it, and the error a step
raises when it cannot complete now."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from ..host import PodHost
from ..runtime import ContainerSpec, Runtime, Sandbox
from ..volumes import Volume

Obj = dict[str, Any]


class PodView(Protocol):
    """The pod as the hooks see it (a PodWorker)."""

    host: PodHost
    pod: Obj
    uid: str
    ns: str
    name: str
    runtime: Runtime | None
    sandbox: Sandbox | None
    volumes: dict[str, Volume]  # the pod's volumes on the node, by name (the volumes hook sets it)

    @property
    def pod_dir(self) -> str: ...

    @property
    def pod_ip(self) -> str | None: ...

    def downward_view(self) -> Obj: ...


class HookError(Exception):
    """A step that cannot complete now. `reason` is the container's waiting reason; an
    `event` reason, when given, is a Warning Event on the pod with the message."""

    def __init__(self, reason: str, message: str, event: str | None = None):
        super().__init__(message)
        self.reason, self.message, self.event = reason, message, event


PodHook = Callable[[PodView], Awaitable[None]]
ContainerHook = Callable[[PodView, Obj, ContainerSpec], Awaitable[None]]
