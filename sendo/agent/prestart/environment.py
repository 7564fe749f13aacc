"""The container's environment and command line: the node's base variables, envFrom,
env (ConfigMaps, Secrets, downward API) and `$(VAR)` expansion in command and args."""
from __future__ import annotations

from typing import Any

from ...client import ApiError, kind
from ..env import ConfigError, build_env, command_line
from ..runtime import ContainerSpec
from .base import HookError, PodView

Obj = dict[str, Any]


async def resolve_environment(pod: PodView, container: Obj, spec: ContainerSpec) -> None:
    async def lookup(plural: str, ns: str, name: str) -> Obj | None:
        return await pod.host.client.get_or_none(kind(plural), ns, name)
    try:
        spec.env = await build_env(pod.downward_view(), container, pod.host.base_env(pod.pod, pod.pod_ip), lookup)
    except ConfigError as e:
        raise HookError("CreateContainerConfigError", str(e)) from e
    except ApiError as e:
        raise HookError("CreateContainerConfigError", e.body.get("message", str(e))) from e
    spec.argv = command_line(container, spec.env)
    spec.working_dir = container.get("workingDir") or None
