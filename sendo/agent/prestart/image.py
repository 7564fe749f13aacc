"""The container's image: pulled per its pull policy by a runtime that has images (the
process runtime has none), with the kubelet's Events — Pulling, Pulled (or already
present), Failed — and its waiting reasons: ErrImagePull, then ImagePullBackOff while
the worker backs off (podworker.py). Credentials come from the pod's imagePullSecrets
(`kubernetes.io/dockerconfigjson` Secrets), matched by the image's registry host."""
from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from ...client import ApiError, kind
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
        auth = await registry_auth(pod, image)
        pulled, image_id = await pull(image, policy, auth=auth) if auth else await pull(image, policy)
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


def registry_host(image: str) -> str:
    """The registry an image reference names, as Docker reads it: the first path part
    if it looks like a host (a dot, a port, or localhost), else Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _key_host(key: str) -> str:
    """A `.dockerconfigjson` auths key ("https://host:5000/v1/", "host:5000") as a host."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


async def registry_auth(pod: PodView, image: str) -> dict | None:
    """Credentials for the image's registry from the pod's imagePullSecrets; None if none match
    (the pull is then tried without, as the kubelet does)."""
    want = registry_host(image)
    for ref in (pod.pod.get("spec") or {}).get("imagePullSecrets") or []:
        name = ref.get("name") if isinstance(ref, dict) else None
        if not name:
            continue
        try:
            secret = await pod.host.client.get_or_none(kind("secrets"), pod.ns, name)
        except ApiError:
            secret = None
        if not secret or secret.get("type") != "kubernetes.io/dockerconfigjson":
            continue
        try:
            config = orjson.loads(base64.b64decode((secret.get("data") or {}).get(".dockerconfigjson", "")))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            continue
        for key, entry in ((config or {}).get("auths") or {}).items():
            if _key_host(key) != want or not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if not user and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, binascii.Error, UnicodeDecodeError):
                    continue
            if user:
                return {"username": user, "password": password or "", "serveraddress": want}
    return None
