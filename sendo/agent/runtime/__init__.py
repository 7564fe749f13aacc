"""Container runtimes: how the agent turns a pod's container into something running.

`base` holds the interface the agent codes against; `process` runs each container as
a host process (the default runtime).
"""
from .base import (
    ContainerHandle,
    ContainerSpec,
    ExitInfo,
    Runtime,
    StartError,
    container_id,
)
from .process import ProcessRuntime

__all__ = [
    "ContainerHandle",
    "ContainerSpec",
    "ExitInfo",
    "ProcessRuntime",
    "Runtime",
    "StartError",
    "container_id",
]
