"""What the container declares, copied into its ContainerSpec in the runtime's terms:
image and pull policy, ports, resources, security context (the container's over the
pod's), stdin and tty."""
from __future__ import annotations

from typing import Any

from ..runtime import ContainerSpec, PortMapping, Resources, SecurityContext
from .base import PodView

Obj = dict[str, Any]


async def declared_settings(pod: PodView, container: Obj, spec: ContainerSpec) -> None:
    spec.image = container.get("image") or ""
    spec.image_pull_policy = container.get("imagePullPolicy") or default_pull_policy(spec.image)
    spec.ports = port_mappings(container)
    res = container.get("resources") or {}
    spec.resources = Resources({k: str(v) for k, v in (res.get("requests") or {}).items()},
                               {k: str(v) for k, v in (res.get("limits") or {}).items()})
    spec.security_context = security_context((pod.pod.get("spec") or {}).get("securityContext") or {},
                                             container.get("securityContext") or {})
    spec.stdin, spec.stdin_once, spec.tty = (bool(container.get(k)) for k in ("stdin", "stdinOnce", "tty"))


def port_mappings(container: Obj) -> list[PortMapping]:
    return [PortMapping(p["containerPort"], p.get("protocol", "TCP"), p.get("name", ""), p.get("hostPort"),
                        p.get("hostIP", ""))
            for p in container.get("ports") or [] if isinstance(p, dict) and "containerPort" in p]


def default_pull_policy(image: str) -> str:
    """Kubernetes' default: Always for `:latest` or no tag, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    tail = image.rsplit("/", 1)[-1]
    tag = tail.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def security_context(pod_sc: Obj, c_sc: Obj) -> SecurityContext:
    def pick(key: str) -> Any:
        return c_sc[key] if c_sc.get(key) is not None else pod_sc.get(key)
    caps = c_sc.get("capabilities") or {}
    return SecurityContext(run_as_user=pick("runAsUser"), run_as_group=pick("runAsGroup"),
                           run_as_non_root=pick("runAsNonRoot"),
                           read_only_root_filesystem=bool(c_sc.get("readOnlyRootFilesystem")),
                           privileged=bool(c_sc.get("privileged")),
                           allow_privilege_escalation=c_sc.get("allowPrivilegeEscalation"),
                           capabilities_add=list(caps.get("add") or []),
                           capabilities_drop=list(caps.get("drop") or []),
                           supplemental_groups=[int(g) for g in pod_sc.get("supplementalGroups") or []],
                           fs_group=pod_sc.get("fsGroup"))
