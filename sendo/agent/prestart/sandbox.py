"""The pod's sandbox: pick its runtime (RuntimeClass, else the node's default) and create
the pod's network identity there. Its IP becomes `status.podIP`."""
from __future__ import annotations

from ..runtime import SandboxConfig, SandboxError
from .base import HookError, PodView
from .declared import port_mappings


async def run_sandbox(pod: PodView) -> None:
    try:
        runtime = pod.runtime or pod.host.runtime_for(pod.pod)
        pod.sandbox = await runtime.run_pod_sandbox(sandbox_config(pod))
    except SandboxError as e:
        raise HookError("ContainerCreating", f"Failed to create pod sandbox: {e}",
                        event="FailedCreatePodSandBox") from e
    pod.runtime = runtime


def sandbox_config(pod: PodView) -> SandboxConfig:
    spec = pod.pod.get("spec") or {}
    ports = [p for c in spec.get("containers") or [] for p in port_mappings(c) if p.host_port]
    meta = pod.pod["metadata"]
    return SandboxConfig(pod_uid=pod.uid, namespace=pod.ns, pod_name=pod.name,
                         hostname=spec.get("hostname") or pod.name, pod_dir=pod.pod_dir,
                         ip_hint=(pod.pod.get("status") or {}).get("podIP"), ports=ports,
                         labels=dict(meta.get("labels") or {}))
