"""The container's securityContext, checked by its runtime before every start: a
runtime refuses what it cannot honour (the process runtime: a read-only root
filesystem, added capabilities, privileged mode...) and what breaks runAsNonRoot. The
container then waits in CreateContainerConfigError with the reason, and the pod gets a
Failed Event, as the kubelet does: a securityContext is never silently ignored."""
from __future__ import annotations

from typing import Any

from ..runtime import ContainerSpec, SandboxError
from ..runtime.security import SecurityRefused
from .base import HookError, PodView

Obj = dict[str, Any]


async def check_security(pod: PodView, container: Obj, spec: ContainerSpec) -> None:
    verify = getattr(pod.runtime, "verify_security", None)
    if verify is None:
        return
    try:
        await verify(spec)
    except SecurityRefused as e:
        message = f'{e} (pod: "{pod.name}_{pod.ns}({pod.uid})", container: {spec.container_name})'
        raise HookError("CreateContainerConfigError", message, event="Failed") from e
    except SandboxError as e:
        raise HookError("CreateContainerConfigError", str(e)) from e
