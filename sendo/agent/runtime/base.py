"""What the agent needs from a container runtime, independent of how containers run.

The shape is CRI's (the kubelet's container runtime interface), cut to what sendo uses:
first a pod sandbox — the pod's network identity, whose IP becomes `status.podIP` —
then containers started in it from a `ContainerSpec`, each handed back as a
`ContainerHandle` and reported with an `ExitInfo` when it ends. Exit codes and reasons
follow what the kubelet reports, so the agent copies them into
`ContainerStateTerminated` unchanged. The agent's pod workers only see this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
class PortMapping:
    """A declared container port; `host_port` publishes it on the node."""

    container_port: int
    protocol: str = "TCP"
    name: str = ""
    host_port: int | None = None
    host_ip: str = ""


@dataclass
class Mount:
    """A host directory or file seen by the container at `container_path`."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass
class Resources:
    """Kubernetes quantities as written (`{"cpu": "500m", "memory": "64Mi"}`)."""

    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)


@dataclass
class SecurityContext:
    """The container's securityContext merged over the pod's (the container's wins)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool = False
    privileged: bool = False
    allow_privilege_escalation: bool | None = None
    capabilities_add: list[str] = field(default_factory=list)
    capabilities_drop: list[str] = field(default_factory=list)
    supplemental_groups: list[int] = field(default_factory=list)  # pod-level only
    fs_group: int | None = None  # pod-level only; added to the supplementary groups


@dataclass
class SandboxConfig:
    """What a runtime needs to create a pod's sandbox."""

    pod_uid: str
    namespace: str
    pod_name: str
    hostname: str
    pod_dir: str  # the pod's directory on the node (token, files); created before the sandbox
    ip_hint: str | None = None  # the IP the pod had before an agent restart: kept if still free
    ports: list[PortMapping] = field(default_factory=list)  # every container's, for hostPort
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Sandbox:
    """A pod's network identity in one runtime. `id` is what containers name to join it."""

    id: str
    pod_uid: str
    namespace: str
    pod_name: str
    ip: str
    pod_dir: str


@dataclass
class ContainerSpec:
    """One run (attempt) of one container of a pod, fully resolved by the agent. The
    fields after `log_path` have defaults, so a spec recorded by an older agent still
    loads."""

    pod_uid: str
    namespace: str
    pod_name: str
    container_name: str
    attempt: int  # restart count; 0 for the first run
    argv: list[str]  # command + args, $(VAR) expanded; the process runtime execs it directly
    env: dict[str, str]  # the process environment, exactly
    working_dir: str | None  # None: the sandbox's pod directory (or, outside a sandbox, the agent's)
    log_path: str  # stdout+stderr go here; the runtime creates parent dirs
    sandbox_id: str = ""  # the sandbox it runs in ("" only for a runtime used on its own)
    image: str = ""
    image_pull_policy: str = "IfNotPresent"  # Always | IfNotPresent | Never
    ports: list[PortMapping] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    security_context: SecurityContext = field(default_factory=SecurityContext)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    # command and args as declared, $(VAR) expanded; None when not declared. A runtime
    # with images needs them apart: command replaces the image's ENTRYPOINT (and drops
    # its CMD), args alone replace only its CMD.
    command: list[str] | None = None
    args: list[str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ContainerSpec":
        """Back from `dataclasses.asdict` (a runtime's state record); unknown keys are dropped."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["ports"] = [PortMapping(**p) for p in known.get("ports") or []]
        known["mounts"] = [Mount(**m) for m in known.get("mounts") or []]
        known["resources"] = Resources(**(known.get("resources") or {}))
        known["security_context"] = SecurityContext(**(known.get("security_context") or {}))
        return cls(**known)


@dataclass
class ContainerHandle:
    """A started container. `create_time` (epoch seconds, from the kernel's process
    start time) tells this process apart from a later one that reuses the pid."""

    id: str  # f"{pod_uid}-{container_name}-{attempt}"
    spec: ContainerSpec
    pid: int
    started_at: float  # epoch seconds
    create_time: float | None = None
    image_id: str = ""  # containerStatuses[].imageID: the image's digest, when the runtime has images


@dataclass
class ExitInfo:
    """How a container ended. A signal death is reported as 128+signal, like Kubernetes."""

    exit_code: int
    signal: int | None
    finished_at: float  # epoch seconds
    reason: str  # REASON_*
    message: str = ""


class SandboxError(Exception):
    """The pod's sandbox cannot be created (unknown RuntimeClass, no free pod IP...). The
    message is meant for a person: the agent reports it in a FailedCreatePodSandBox Event
    and the containers wait in ContainerCreating until it can be created."""


class ImagePullError(Exception):
    """The image cannot be pulled (unknown tag, registry unreachable, refused). The
    message names the image and carries the registry's own error; the agent shows it
    as the container's waiting message (ErrImagePull, then ImagePullBackOff)."""

    def __init__(self, message: str, reason: str = "ErrImagePull"):
        super().__init__(message)
        self.reason = reason


class StartError(Exception):
    """The container could not be started (executable not found, permission denied,
    bad working directory...). The message is meant for a person: the agent shows it
    as the container's waiting message with reason "RunContainerError"."""


class ExecSession(Protocol):
    """A command run in a running container (`kubectl exec`), or a connection to the
    container's own stdin (`kubectl attach`). Output is read in order as it comes:
    (1, bytes) for stdout, (2, bytes) for stderr; with a TTY everything is stdout."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output, or None once the output has ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Bytes for the command's stdin (ignored when it has none)."""
        ...

    async def close_stdin(self) -> None:
        """The client has no more input: the command reads end of file."""
        ...

    async def resize(self, width: int, height: int) -> None:
        """The client's terminal changed size (TTY sessions only)."""
        ...

    async def wait(self) -> int:
        """The command's exit code, once it has ended (128+signal for a signal death)."""
        ...

    async def close(self) -> None:
        """Kill the command if it still runs (the client went away) and release it."""
        ...


def container_id(spec: ContainerSpec) -> str:
    """A handle id that is unique per pod, container and attempt."""
    return f"{spec.pod_uid}-{spec.container_name}-{spec.attempt}"


@runtime_checkable
class Runtime(Protocol):
    """A container runtime, as the agent drives it (see `registry.py` for how one is added).

    Sandboxes and containers are recorded by the runtime so that a restarted agent finds
    them again (`adopt`): pods keep running while the agent is down."""

    name: str  # the registry name, also the RuntimeClass handler that selects it

    def version(self) -> str:
        """For Node.status.nodeInfo.containerRuntimeVersion, e.g. "process://0.1.0"."""
        ...

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """The node's podCIDR, known once the node is registered, before any sandbox."""
        ...

    async def run_pod_sandbox(self, config: SandboxConfig) -> Sandbox:
        """Create the pod's sandbox, or return the one it already has; raise SandboxError."""
        ...

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop whatever still runs in the sandbox. Idempotent."""
        ...

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Release the sandbox (its IP) and forget it. Idempotent."""
        ...

    async def list_pod_sandboxes(self) -> list[Sandbox]:
        """Every sandbox this runtime holds, adopted ones included."""
        ...

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
        """After an agent restart: the containers still running from before (their
        sandboxes are taken back too)."""
        ...

    async def exec(self, handle: ContainerHandle, argv: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        """Run `argv` in the running container as `kubectl exec` does: with the
        container's environment, working directory and (where the runtime has them) its
        namespaces. Raise StartError when the command cannot be started."""
        ...

    async def attach(self, handle: ContainerHandle, *, stdin: bool, tty: bool) -> ExecSession:
        """Connect to the running container's own stdin and output (`kubectl attach`):
        output from now on; `wait` returns when the container ends. Raise StartError
        when the container cannot be attached to."""
        ...

    async def forget(self, handle: ContainerHandle) -> None:
        """Drop what the runtime remembers about a container that is gone."""
        ...

    async def close(self) -> None:
        """Stop watching; leave containers and sandboxes running for the next agent."""
        ...
