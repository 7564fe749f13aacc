"""Prestart steps: what happens before a pod's containers can start, one small hook per
file, run in order (the shape of Nomad's task runner hooks).

Pod hooks run once per pod (again after a failure, with back-off) before any container
starts; container hooks run before every start of a container and fill in its
`ContainerSpec`. A hook that cannot complete raises `HookError`: the containers wait
with its reason and message, and the step is tried again later.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from ..host import PodHost
from ..runtime import ContainerSpec, Runtime, Sandbox

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

from . import declared, environment, pod_dir, sandbox, token  # noqa: E402  (hooks import HookError)

POD_HOOKS: list[PodHook] = [pod_dir.make_pod_dir, sandbox.run_sandbox, token.wait_for_token]
CONTAINER_HOOKS: list[ContainerHook] = [declared.declared_settings, environment.resolve_environment]
