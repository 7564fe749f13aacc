"""The pod's directory on the node: its ServiceAccount token and files live there, and it
is the process runtime's default working directory."""
from __future__ import annotations

import os

from .base import HookError, PodView


async def make_pod_dir(pod: PodView) -> None:
    try:
        os.makedirs(pod.pod_dir, exist_ok=True)
    except OSError as e:
        raise HookError("ContainerCreating", f"cannot create the pod directory {pod.pod_dir}: {e.strerror or e}",
                        event="FailedCreatePodSandBox") from e
