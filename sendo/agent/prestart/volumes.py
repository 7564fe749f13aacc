"""The pod's volumes: made ready on the node before the sandbox (pod hook), then shown to
each container at its `volumeMounts` (container hook).

A runtime that can mount (`mounts_volumes`: the docker runtime always, the process
runtime when the agent is root) gets one `Mount` per volumeMount: mountPath, the
volume's directory (or the file or directory `subPath` names in it) and readOnly.
Otherwise the container finds each volume's directory in `$SENDO_VOLUME_<NAME>` and the
pod gets a `VolumePathsMapped` Event saying so: a volume is never silently missing.
"""
from __future__ import annotations

import os
import re
from typing import Any

from ..runtime import ContainerSpec, Mount
from ..volumes import VolumeError
from .base import HookError, PodView

Obj = dict[str, Any]


async def setup_volumes(pod: PodView) -> None:
    if not (pod.pod.get("spec") or {}).get("volumes"):
        pod.volumes = {}
        return
    try:
        pod.volumes = await pod.host.volumes.setup(pod.pod, pod.pod_dir)
    except VolumeError as e:
        raise HookError("ContainerCreating", str(e), event="FailedMount") from e


def env_name(volume: str) -> str:
    return "SENDO_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", volume.upper())


async def mount_volumes(pod: PodView, container: Obj, spec: ContainerSpec) -> None:
    mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, dict)]
    if not mounts:
        return
    spec.mounts = []
    can_mount = bool(getattr(pod.runtime, "mounts_volumes", False))
    mapped = []
    for m in mounts:
        vol = pod.volumes.get(m.get("name", ""))
        if vol is None:
            raise HookError("CreateContainerConfigError", f'volume "{m.get("name")}" is not set up')
        host = vol.path
        sub = m.get("subPath") or ""
        if sub:
            host = _sub_path(vol.path, sub, create=not vol.content)
        if can_mount:
            spec.mounts.append(Mount(m["mountPath"], host, read_only=bool(m.get("readOnly")) or vol.read_only))
        else:
            spec.env[env_name(vol.name)] = vol.path
            mapped.append(f'{m["mountPath"]} (volume {vol.name}) is ${env_name(vol.name)}={vol.path}')
    if mapped:
        pod.host.event(pod.pod, "Warning", "VolumePathsMapped",
                       f"container {container.get('name')}: runtime {getattr(pod.runtime, 'name', '?')} cannot "
                       "mount volumes here (the process runtime mounts them only when sendo runs as root); "
                       + "; ".join(mapped))


def _sub_path(root: str, sub: str, create: bool) -> str:
    """The file or directory `sub` names inside the volume, resolved (links followed: a
    ConfigMap key's file, which a subPath mount keeps even when the key changes), and
    refused if it leads out of the volume."""
    path = os.path.join(root, sub)
    if create and not os.path.lexists(path):
        try:
            os.makedirs(path, mode=0o777, exist_ok=True)
        except OSError as e:
            raise HookError("CreateContainerConfigError", f'subPath "{sub}": {e.strerror or e}') from e
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise HookError("CreateContainerConfigError", f'subPath "{sub}" leads outside of volume {root}')
    if not os.path.exists(real):
        raise HookError("CreateContainerConfigError", f'subPath "{sub}" does not exist in the volume')
    return real
