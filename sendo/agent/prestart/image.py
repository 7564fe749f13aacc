"""The container's image: pulled per its pull policy by a runtime that has images (the
process runtime has none), with the kubelet's Events — Pulling, Pulled (or already
present), Failed — and its waiting reasons: ErrImagePull, then ImagePullBackOff while
the worker backs off (podworker.py)."""
from __future__ import annotations

import time
from typing import Any

from ..runtime import ContainerSpec, ImagePullError, SandboxError
from .base import HookError, PodView

Obj = dict[str, Any]


async def pull_image(pod: PodView, container: Obj, spec: ContainerSpec) -> None:
    pull = getattr(pod.runtime, "pull_image", None)
    if pull is None or not spec.image:
        return
    image, policy = spec.image, spec.image_pull_policy
    began = time.monotonic()
    if policy == "Always":
        pod.host.event(pod.pod, "Normal", "Pulling", f'Pulling image "{image}"')
    try:
        pulled, image_id = await pull(image, policy)
    except ImagePullError as e:
        pod.host.event(pod.pod, "Warning", "Failed", str(e))
        raise HookError(e.reason, str(e)) from e
    except SandboxError as e:
        raise HookError("ErrImagePull", str(e)) from e
    if pulled:
        if policy != "Always":
            pod.host.event(pod.pod, "Normal", "Pulling", f'Pulling image "{image}"')
        pod.host.event(pod.pod, "Normal", "Pulled",
                       f'Successfully pulled image "{image}" in {time.monotonic() - began:.3f}s')
    else:
        pod.host.event(pod.pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
