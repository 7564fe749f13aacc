"""Container runtimes: how the agent turns a pod's containers into something running.

`base` holds the CRI-shaped interface the agent codes against (sandbox, then
containers); `registry` opens a runtime by name; `process` runs each container as a
host process in a loopback-IP sandbox (the default runtime).
"""
from .base import (
    ContainerHandle,
    ContainerSpec,
    ExitInfo,
    Mount,
    PortMapping,
    Resources,
    Runtime,
    Sandbox,
    SandboxConfig,
    SandboxError,
    SecurityContext,
    StartError,
    container_id,
)
from .process import ProcessRuntime
from .registry import UnknownRuntime, known, open_runtime

__all__ = [
    "ContainerHandle",
    "ContainerSpec",
    "ExitInfo",
    "Mount",
    "PortMapping",
    "ProcessRuntime",
    "Resources",
    "Runtime",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SecurityContext",
    "StartError",
    "UnknownRuntime",
    "container_id",
    "known",
    "open_runtime",
]
