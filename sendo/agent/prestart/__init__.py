"""Prestart steps: what happens before a pod's containers can start, one small hook per
file, run in order (the shape of Nomad's task runner hooks).

Pod hooks run once per pod (again after a failure, with back-off) before any container
starts; container hooks run before every start of a container and fill in its
`ContainerSpec`. A hook that cannot complete raises `HookError`: the containers wait
with its reason and message, and the step is tried again later.
"""
from __future__ import annotations

from . import declared, environment, image, pod_dir, sandbox, security, token, volumes
from .base import ContainerHook, HookError, PodHook, PodView

__all__ = ["CONTAINER_HOOKS", "POD_HOOKS", "ContainerHook", "HookError", "PodHook", "PodView"]

# volumes before the sandbox: once a sandbox exists the pod hooks count as done
POD_HOOKS: list[PodHook] = [pod_dir.make_pod_dir, volumes.setup_volumes, sandbox.run_sandbox, token.wait_for_token]
CONTAINER_HOOKS: list[ContainerHook] = [declared.declared_settings, environment.resolve_environment,
                                        volumes.mount_volumes, image.pull_image, security.check_security]
