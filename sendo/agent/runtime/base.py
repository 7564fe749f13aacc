"""What the agent needs from a container runtime, independent of how containers run.

The agent's pod workers only see this module: a runtime starts a container from a
`ContainerSpec`, hands back a `ContainerHandle`, and reports an `ExitInfo` when the
container ends. Exit codes and reasons follow what the kubelet reports, so the
agent can copy them into `ContainerStateTerminated` unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Reasons for a terminated container, as the kubelet spells them.
REASON_COMPLETED = "Completed"  # exit code 0
REASON_ERROR = "Error"  # non-zero exit code or killed by a signal
REASON_OOM_KILLED = "OOMKilled"  # not produced by the process runtime
REASON_STATUS_UNKNOWN = "ContainerStatusUnknown"  # we could not observe how it ended

# What the kubelet reports when a container's state was lost: 128 + SIGKILL.
UNKNOWN_EXIT_CODE = 137
UNKNOWN_EXIT_MESSAGE = (
    "The container could not be located when the pod was terminated"
)


@dataclass
class ContainerSpec:
    """One run (attempt) of one container of a pod, fully resolved by the agent."""

    pod_uid: str
    namespace: str
    pod_name: str
    container_name: str
    attempt: int  # restart count; 0 for the first run
    argv: list[str]  # command + args, exec'd directly (no shell)
    env: dict[str, str]  # the process environment, exactly
    working_dir: str | None  # None: the agent's own working directory
    log_path: str  # stdout+stderr go here; the runtime creates parent dirs


@dataclass
class ContainerHandle:
    """A started container. `create_time` (epoch seconds, from the kernel's process
    start time) tells this process apart from a later one that reuses the pid."""

    id: str  # f"{pod_uid}-{container_name}-{attempt}"
    spec: ContainerSpec
    pid: int
    started_at: float  # epoch seconds
    create_time: float | None = None


@dataclass
class ExitInfo:
    """How a container ended. A signal death is reported as 128+signal, like Kubernetes."""

    exit_code: int
    signal: int | None
    finished_at: float  # epoch seconds
    reason: str  # REASON_*
    message: str = ""


class StartError(Exception):
    """The container could not be started (executable not found, permission denied,
    bad working directory...). The message is meant for a person: the agent shows it
    as the container's waiting message with reason "RunContainerError"."""


def container_id(spec: ContainerSpec) -> str:
    """A handle id that is unique per pod, container and attempt."""
    return f"{spec.pod_uid}-{spec.container_name}-{spec.attempt}"


@runtime_checkable
class Runtime(Protocol):
    async def start(self, spec: ContainerSpec) -> ContainerHandle:
        """Start the container; raise StartError if it cannot be started."""
        ...

    async def wait(self, handle: ContainerHandle) -> ExitInfo:
        """Return when the container has exited; several tasks may await it."""
        ...

    async def stop(self, handle: ContainerHandle, grace_seconds: float) -> ExitInfo:
        """SIGTERM, up to `grace_seconds` to exit, then SIGKILL. Idempotent."""
        ...

    async def adopt(self) -> list[ContainerHandle]:
        """After an agent restart: the containers still running from before."""
        ...

    async def forget(self, handle: ContainerHandle) -> None:
        """Drop what the runtime remembers about a container that is gone."""
        ...
