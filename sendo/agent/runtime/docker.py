"""The `docker` runtime: containers from images, run by a Docker Engine API (Docker, or
Podman's `podman system service`) over a unix socket, through aiodocker.

How a pod maps onto the engine, and why:

* The engine is found lazily (`engine.py`): an agent that never runs a container pod
  never needs one, yet its `docker` RuntimeClass exists.
* Pod network: before the first sandbox, an `unreachable` route covers the whole pod
  CIDR, so a packet to an address of it that no pod holds can never leave the
  machine; then sendo creates an *internal* bridge network (no default route, no NAT,
  no engine DNS) on the node's /24 of that CIDR (node IPAM, `use_node_block`). The host
  holds the bridge's gateway address, so the node reaches every pod IP. Each pod routes
  the service twins and the whole pod CIDR to the node, which forwards to the other
  nodes' blocks over host-gateway routes (`agent/noderoutes.py`); pods reach nothing
  else.
* A pod's sandbox is an infra container (`engine.PAUSE_IMAGE`, built locally) on that
  network: it holds the pod's network namespace and IP. Every app container joins it
  (`NetworkMode: container:<infra>`), so the pod's containers share localhost, and
  two pods may both listen on 0.0.0.0:8080.
* Every container carries labels: the agent that owns it (its state directory), its
  role (sandbox or container), pod uid, namespace, name, container and attempt, and
  the resolved ContainerSpec. A restarted agent lists its containers by label and
  adopts the running ones: no duplicate, no orphan.
* Logs: the engine keeps them; one task per container follows the engine's log stream
  into the container's log file, where the agent's log endpoint (logs, -f,
  --previous) reads it. An adopted container's file is written again from the start.
* securityContext: user, groups, read-only root, capabilities, privileged and
  no-new-privileges go to the engine (security.py); runAsNonRoot is checked against
  the image's USER before the container is created.
* Resources: limits.memory → Memory (and MemorySwap, so the limit is not dodged into
  swap), limits.cpu → CFS quota over a 100 ms period, requests.cpu → CPU shares. An
  OOM kill is reported as OOMKilled, exit code 137.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import logging
import math
import os
import re
import signal
import subprocess
import time
from typing import Any, Callable

import aiodocker
import aiohttp
import orjson

from ... import __version__
from ...network import mirror
from . import engine, security
from .hostports import HostPorts
from .base import (
    REASON_COMPLETED,
    REASON_ERROR,
    REASON_OOM_KILLED,
    REASON_STATUS_UNKNOWN,
    UNKNOWN_EXIT_CODE,
    UNKNOWN_EXIT_MESSAGE,
    ContainerHandle,
    ContainerSpec,
    ExecSession,
    ExitInfo,
    ImagePullError,
    PortMapping,
    Sandbox,
    SandboxConfig,
    SandboxError,
    StartError,
)

log = logging.getLogger(__name__)

DEFAULT_POD_CIDR = "10.244.0.0/16"
LABEL = "io.sendo."
L_OWNER, L_ROLE = LABEL + "owner", LABEL + "role"
L_UID, L_NS, L_POD = LABEL + "pod-uid", LABEL + "pod-namespace", LABEL + "pod-name"
L_CONTAINER, L_ATTEMPT, L_SPEC = LABEL + "container", LABEL + "attempt", LABEL + "spec"
L_HOST_PORTS = LABEL + "host-ports"  # on a sandbox: its hostPort mappings, published again after an agent restart
ROLE_SANDBOX, ROLE_CONTAINER = "sandbox", "container"
CPU_PERIOD = 100_000  # microseconds, as the kubelet sets it
LOG_DRAIN_DEADLINE = 5.0  # after an exit, how long the log copy may take to catch up
# variables the agent gives every process-runtime container from its own environment;
# an image brings its own
_HOST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


@dataclasses.dataclass
class _Entry:
    handle: ContainerHandle
    exit: asyncio.Future  # resolves to ExitInfo
    tasks: list[asyncio.Task] = dataclasses.field(default_factory=list)  # waiter, log copy
    oom: "OomWatch | None" = None
    # it died before its memory cgroup could be watched (a limit hit within milliseconds)
    died_unwatched: bool = False
    killed: bool = False  # we sent it SIGKILL (stop)


PODMAN_WAIT_INTERVAL = "250ms"  # how often Podman looks at a waited-for container's state


class CgroupGone(OSError):
    """The container's process or memory cgroup is gone already: it has exited."""


class OomWatch:
    """Counts OOM kills in a container's memory cgroup (cgroups v1), through an eventfd
    registered on `memory.oom_control`. Podman on cgroups v1 does not report
    `State.OOMKilled`, and the cgroup is gone by the time the exit is known, so the kill
    is noticed while it happens."""

    def __init__(self, pid: int):
        self.killed = False
        self.lost = False  # the cgroup went away before its counter could be read
        self.ctl = self.efd = None
        path = _memory_cgroup(pid)
        if path is None:
            raise OSError("no cgroup v1 memory controller")
        try:
            self.ctl = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise CgroupGone(str(e)) from e
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        with open(os.path.join(path, "cgroup.event_control"), "w") as f:
            f.write(f"{self.efd} {self.ctl}")
        asyncio.get_running_loop().add_reader(self.efd, self._fired)
        self.check()

    def _fired(self) -> None:
        try:
            os.eventfd_read(self.efd)
        except OSError:
            pass
        self.check()

    def check(self) -> bool:
        if self.ctl is not None and not self.killed:
            try:
                data = os.pread(self.ctl, 4096, 0).decode()
            except OSError:  # the cgroup was removed
                self.lost = True
                return self.killed
            for line in data.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    self.killed = True
        return self.killed

    def close(self) -> None:
        if self.efd is not None:
            asyncio.get_running_loop().remove_reader(self.efd)
            os.close(self.efd)
            self.efd = None
        if self.ctl is not None:
            os.close(self.ctl)
            self.ctl = None


def _memory_cgroup(pid: int) -> str | None:
    """The process's cgroup v1 memory directory; None without that controller (cgroups
    v2); CgroupGone if the process or its cgroup has gone already."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    if path == "/":  # an exited (zombie) container process shows the root cgroup
                        raise CgroupGone(f"process {pid} has left its cgroup")
                    full = "/sys/fs/cgroup/memory" + path
                    if not os.path.exists(os.path.join(full, "memory.oom_control")):
                        raise CgroupGone(f"memory cgroup {full} is gone")
                    return full
    except (FileNotFoundError, ProcessLookupError) as e:
        raise CgroupGone(f"process {pid} is gone") from e
    except (OSError, ValueError):
        return None
    return None


class DockerRuntime:
    """One instance per agent; `state_dir` names this agent's containers (label) and
    holds the socket of a Podman service the runtime starts."""

    name = "docker"
    mounts_volumes = True  # volumes are bind mounts of the engine
    usage_source = "cgroup"  # a container's usage is its cgroup's (agent/usage.py)

    def __init__(self, state_dir: str, engine: str = "", pod_cidr: str = "", host_address: str = "127.0.0.1",
                 service_cidr: str = ""):
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.engine_url = engine
        try:
            self.pod_cidr = ipaddress.ip_network(pod_cidr or DEFAULT_POD_CIDR)
        except ValueError as e:
            raise ValueError(f"docker runtime: bad pod CIDR {pod_cidr!r}: {e}") from None
        if self.pod_cidr.version != 4 or self.pod_cidr.prefixlen > 23:
            raise ValueError(f"docker runtime: the pod CIDR must be IPv4 and at most /23, not {self.pod_cidr}")
        try:
            self.service_cidr = mirror.parse_cidr(service_cidr)  # the ClusterIPs' twins (network/mirror.py)
        except ValueError as e:
            raise ValueError(f"docker runtime: {e}") from None
        if self.service_cidr.overlaps(self.pod_cidr):
            raise ValueError(f"docker runtime: the service CIDR {self.service_cidr} overlaps the pod CIDR "
                             f"{self.pod_cidr}")
        # set by the agent: called once the twin service range is reachable from the pods
        self.on_network_ready: Callable[[str], None] | None = None
        # this node's pods: the /24 the server gave the node (use_node_block), else the first
        self.subnet = next(self.pod_cidr.subnets(new_prefix=24))
        self.gateway = str(next(self.subnet.hosts()))  # held by the host on the bridge
        self.owner = self.state_dir
        self.network = "sendo-" + hashlib.sha1(self.owner.encode()).hexdigest()[:10]
        self._marker = os.path.join(self.state_dir, "engine-used")
        self._docker: aiodocker.Docker | None = None
        self._service: engine.PodmanService | None = None
        self._podman = False
        self._lock = asyncio.Lock()  # connecting to the engine
        self._network_lock = asyncio.Lock()  # route, network and sandbox image, once
        self._network_ready = False
        self._entries: dict[str, _Entry] = {}
        self.sandboxes: dict[str, Sandbox] = {}  # infra container id -> sandbox
        self.host_ports = HostPorts(host_address)  # hostPort listeners (on the node's address by default)
        self.engine_version = ""

    def version(self) -> str:
        """The engine's version once connected (the node status re-posts it), e.g.
        "podman://4.3.1"; sendo's own until then."""
        if not self.engine_version:
            return f"docker://{__version__}"
        return f"{'podman' if self._podman else 'docker'}://{self.engine_version}"

    # ---- engine ----------------------------------------------------------------

    async def _engine(self) -> aiodocker.Docker:
        async with self._lock:
            if self._docker is None:
                try:
                    url, self._service = await engine.connect(self.engine_url, self.state_dir)
                except engine.EngineError as e:
                    raise SandboxError(f"container engine: {e}") from e
                self._docker = engine_client(url)
                try:
                    ver = await self._docker.version()
                except aiodocker.DockerError as e:
                    await self._close_engine()
                    raise SandboxError(f"container engine at {url}: {e.message}") from e
                names = [c.get("Name", "") for c in ver.get("Components") or []]
                self._podman = any("Podman" in n for n in names)
                self.engine_version = str(ver.get("Version", ""))
                with open(self._marker, "w") as f:
                    f.write(url)
                log.info("docker runtime: engine %s at %s", self.engine_version, url)
            return self._docker

    async def _close_engine(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            await self._docker.connector.close()  # engine_client's own (closing twice is harmless)
            self._docker = None
        if self._service is not None:
            await asyncio.to_thread(self._service.stop)
            self._service = None

    async def _query_json(self, path: str, method: str = "GET", *, params: dict | None = None,
                          data: Any = None, versioned: bool = True) -> Any:
        d = await self._engine()
        async with d._query(path, method, params=params, data=data, versioned_api=versioned) as r:
            body = await r.read()
        return orjson.loads(body) if body.strip() else None

    # ---- network -------------------------------------------------------------------

    @property
    def dns_address(self) -> str:
        """Where container pods ask the cluster DNS: the twin of its ClusterIP, port 53."""
        return str(self.service_cidr.network_address + (int(ipaddress.ip_address(mirror.DNS_CLUSTER_IP))
                                                        - int(mirror.CLUSTER_IPS.network_address)))

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """The node's podCIDR is the process runtime's (loopback); container pods use
        this runtime's own CIDR."""

    def use_node_block(self, block: str) -> None:
        """The /24 of the pod CIDR that node IPAM gave this node (its Node's
        sendo.dev/container-pod-cidr annotation): its pods' addresses, which the other
        nodes route to it. Called before the first sandbox; ValueError if it does not fit."""
        try:
            net = ipaddress.ip_network(block)
        except ValueError as e:
            raise ValueError(f"docker runtime: the node's container pod block {block!r} is not a CIDR: {e}") from None
        if net.prefixlen != 24 or not net.subnet_of(self.pod_cidr):  # type: ignore[arg-type]
            raise ValueError(f"docker runtime: the node's container pod block {net} is not a /24 of this agent's "
                             f"--container-cidr {self.pod_cidr}: give the agent the server's --container-cidr")
        if self._network_ready and net != self.subnet:
            raise ValueError(f"docker runtime: the pod network is up on {self.subnet} already")
        self.subnet = net  # type: ignore[assignment]
        self.gateway = str(next(self.subnet.hosts()))

    @property
    def network_ready(self) -> bool:
        """The pod bridge is up: the node holds `gateway`, the routes and guards are in place."""
        return self._network_ready

    async def _ensure_network(self) -> None:
        async with self._network_lock:
            if not self._network_ready:
                await self._make_network()
                await self._ensure_pause_image()
                self._network_ready = True
                if self.on_network_ready is not None:
                    self.on_network_ready(str(self.service_cidr))

    async def _make_network(self) -> None:
        await asyncio.to_thread(ensure_unreachable_route, str(self.pod_cidr))
        # the service twins: unreachable first, then held by the node as local addresses
        await asyncio.to_thread(ensure_unreachable_route, str(self.service_cidr))
        await asyncio.to_thread(ensure_local_route, str(self.service_cidr))
        d = await self._engine()
        try:
            net = await (await d.networks.get(self.network)).show()
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise SandboxError(f"container engine: inspecting network {self.network}: {e.message}") from e
            net = None
        if net is not None and not any(str(c.get("Subnet")) == str(self.subnet)
                                       for c in (net.get("IPAM") or {}).get("Config") or []):
            # made by an earlier agent for another block of the node: only an unused network can change
            try:
                await (await d.networks.get(self.network)).delete()
            except aiodocker.DockerError as e:
                raise SandboxError(f"container engine: the pod network {self.network} is not on this node's block "
                                   f"{self.subnet} and cannot be removed: {e.message}") from e
            net = None
        if net is None:
            labels = {L_OWNER: self.owner}
            try:
                if self._podman:
                    # the libpod API, to turn the network's DNS server off: it would
                    # forward names it does not know to the host's resolvers
                    body = {"name": self.network, "driver": "bridge", "internal": True, "dns_enabled": False,
                            "subnets": [{"subnet": str(self.subnet), "gateway": self.gateway}], "labels": labels}
                    await self._query_json("v4.0.0/libpod/networks/create", "POST", data=orjson.dumps(body),
                                           versioned=False)
                else:
                    await d.networks.create({"Name": self.network, "Driver": "bridge", "Internal": True,
                                             "IPAM": {"Config": [{"Subnet": str(self.subnet),
                                                                  "Gateway": self.gateway}]},
                                             "Labels": labels})
            except aiodocker.DockerError as e:
                raise SandboxError(f"container engine: cannot create the pod network {self.network} "
                                   f"({self.subnet}): {e.message}") from e

    async def _ensure_pause_image(self) -> None:
        d = await self._engine()
        try:
            await d.images.inspect(engine.PAUSE_IMAGE)
            return
        except aiodocker.DockerError as e:
            if e.status != 404:
                raise SandboxError(f"container engine: {e.message}") from e
        try:
            async with d._query("build", "POST", params={"t": engine.PAUSE_IMAGE, "rm": "1"},
                                data=engine.pause_context(),
                                headers={"Content-Type": "application/x-tar"}) as r:
                out = await r.read()
        except aiodocker.DockerError as e:
            raise SandboxError(f"container engine: cannot build the sandbox image: {e.message}") from e
        if err := _stream_error(out):
            raise SandboxError(f"container engine: cannot build the sandbox image: {err}")

    # ---- sandboxes -------------------------------------------------------------------

    async def run_pod_sandbox(self, config: SandboxConfig) -> Sandbox:
        for sb in self.sandboxes.values():
            if sb.pod_uid == config.pod_uid:
                return sb
        await self._ensure_network()
        d = await self._engine()
        name = _name(config.namespace, config.pod_name, config.pod_uid, "sandbox")
        await self._remove_by_name(name)  # left by an agent that died half-way
        labels = {L_OWNER: self.owner, L_ROLE: ROLE_SANDBOX, L_UID: config.pod_uid, L_NS: config.namespace,
                  L_POD: config.pod_name,
                  L_HOST_PORTS: orjson.dumps([dataclasses.asdict(p) for p in config.ports]).decode()}
        # the pod's resolv.conf (shared by its containers): the cluster DNS that answers with twins
        dns = {"Dns": [self.dns_address], "DnsOptions": ["ndots:5"],
               "DnsSearch": [f"{config.namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]}
        body = {"Image": engine.PAUSE_IMAGE, "Hostname": config.hostname[:63], "Labels": labels,
                "HostConfig": {"NetworkMode": self.network, **dns}}
        try:
            c = await d.containers.create(body, name=name)
            await c.start()
            info = await c.show()
        except aiodocker.DockerError as e:
            await self._remove_by_name(name)
            raise SandboxError(f"container engine: {e.message}") from e
        sb = self._sandbox_from(info)
        if sb is None:
            await self._remove_by_name(name)
            raise SandboxError(f"container engine gave the sandbox no address on network {self.network}")
        sb.pod_dir = config.pod_dir
        try:
            pid = int(info["State"].get("Pid") or 0)
            # Services (their twins) and the pods of other nodes are behind the node; nothing else is
            for cidr in (self.service_cidr, self.pod_cidr):
                await asyncio.to_thread(route_in_netns, pid, str(cidr), self.gateway)
            await self.host_ports.open(sb.id, sb.ip, config.ports)
        except SandboxError:
            await self._remove_by_name(name)
            raise
        self.sandboxes[sb.id] = sb
        return sb

    def _sandbox_from(self, info: dict) -> Sandbox | None:
        labels = info["Config"].get("Labels") or {}
        ip = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(self.network, {}).get("IPAddress")
        if not ip:
            return None
        return Sandbox(id=info["Id"], pod_uid=labels.get(L_UID, ""), namespace=labels.get(L_NS, ""),
                       pod_name=labels.get(L_POD, ""), ip=ip, pod_dir="")

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        for entry in [e for e in self._entries.values() if e.handle.spec.sandbox_id == sandbox_id]:
            await self.stop(entry.handle, 0)
        self.host_ports.close(sandbox_id)
        await self._kill(sandbox_id, signal.SIGKILL)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self.sandboxes.get(sandbox_id)
        await self.stop_pod_sandbox(sandbox_id)
        for entry in [e for e in self._entries.values() if e.handle.spec.sandbox_id == sandbox_id]:
            await self.forget(entry.handle)
        if sb is not None and self._docker is not None:  # exited containers of the pod, if any are left
            for c in await self._owned({L_UID: sb.pod_uid}):
                await self._remove(c["Id"])
        await self._remove(sandbox_id)
        self.sandboxes.pop(sandbox_id, None)

    async def list_pod_sandboxes(self) -> list[Sandbox]:
        return list(self.sandboxes.values())

    # ---- images -----------------------------------------------------------------------

    async def pull_image(self, image: str, policy: str, auth: dict | None = None) -> tuple[bool, str]:
        """Make `image` present per the pull policy, with the registry credentials `auth`
        ({"username", "password", "serveraddress"}) if given. Returns (pulled now, image
        id); raises ImagePullError with the registry's error, or SandboxError if there is
        no engine."""
        d = await self._engine()
        present = await self._image_id(image)
        if policy == "Never":
            if present is None:
                raise ImagePullError(f'Container image "{image}" is not present with pull policy of Never',
                                     reason="ErrImageNeverPull")
            return False, present
        if policy != "Always" and present is not None:
            return False, present
        ref = image if _has_tag_or_digest(image) else image + ":latest"
        headers = {"X-Registry-Auth": base64.urlsafe_b64encode(orjson.dumps(auth)).decode()} if auth else None
        try:
            if self._podman:
                # Podman's Docker-compatible pull has no way to reach a plain-HTTP
                # registry; Docker treats registries on loopback as insecure, and so do we
                params = {"reference": ref, "policy": "always"}
                if _on_loopback(ref):
                    params["tlsVerify"] = "false"
                async with d._query("v4.0.0/libpod/images/pull", "POST", params=params, versioned_api=False,
                                    headers=headers, timeout=None) as r:
                    out = await r.read()
            else:
                async with d._query("images/create", "POST", params={"fromImage": ref}, headers=headers,
                                    timeout=None) as r:
                    out = await r.read()
        except aiodocker.DockerError as e:
            raise ImagePullError(f'Failed to pull image "{image}": {e.message}') from e
        if err := _stream_error(out):
            raise ImagePullError(f'Failed to pull image "{image}": {err}')
        pulled = await self._image_id(ref)
        if pulled is None:
            raise ImagePullError(f'Failed to pull image "{image}": the engine did not store it')
        return True, pulled

    async def _image_id(self, image: str) -> str | None:
        """The image's digest reference (imageID), or None if it is not present."""
        d = await self._engine()
        try:
            info = await d.images.inspect(image)
        except aiodocker.DockerError as e:
            if e.status == 404:
                return None
            raise ImagePullError(f'Failed to inspect image "{image}": {e.message}') from e
        repo = image.split("@")[0]
        repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
        for digest in info.get("RepoDigests") or []:
            if digest.split("@")[0] == repo:
                return digest
        return (info.get("RepoDigests") or [info["Id"]])[0]

    # ---- start ---------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> ContainerHandle:
        sb = self.sandboxes.get(spec.sandbox_id)
        if sb is None:
            raise StartError(f"pod sandbox {spec.sandbox_id[:12]} is gone")
        if not spec.image:
            raise StartError("the docker runtime needs an image")
        d = await self._engine()
        name = _name(spec.namespace, spec.pod_name, spec.pod_uid, f"{spec.container_name}-{spec.attempt}")
        await self._remove_by_name(name)
        try:
            body = self._container_body(spec, sb, await self._image_user(spec.image))
        except (ValueError, SandboxError) as e:
            raise StartError(str(e)) from e
        try:
            c = await d.containers.create(body, name=name)
        except aiodocker.DockerError as e:
            raise StartError(e.message) from e
        entry_exit = asyncio.get_running_loop().create_future()
        try:
            await c.start()
            info = await c.show()
        except aiodocker.DockerError as e:
            await self._remove(c.id)
            raise StartError(_start_message(e.message)) from e
        handle = await self._handle(info, spec)
        entry = _Entry(handle, entry_exit)
        self._entries[handle.id] = entry
        self._watch(entry, fresh=True)
        return handle

    async def verify_security(self, spec: ContainerSpec) -> None:
        """runAsNonRoot against runAsUser or the image's user, as the kubelet checks it;
        the engine applies the rest of the securityContext (security.py)."""
        if spec.security_context.run_as_non_root:
            security.verify_run_as_non_root(spec.security_context, await self._image_user(spec.image))

    async def _image_user(self, image: str) -> str:
        """The image's USER ("" when it sets none)."""
        d = await self._engine()
        try:
            info = await d.images.inspect(image)
        except aiodocker.DockerError as e:
            raise SandboxError(f'cannot inspect image "{image}": {e.message}') from e
        return str((info.get("Config") or {}).get("User") or "")

    def _container_body(self, spec: ContainerSpec, sb: Sandbox, image_user: str = "") -> dict:
        env = {k: v for k, v in spec.env.items() if not (k in _HOST_ENV and os.environ.get(k) == v)}
        labels = {L_OWNER: self.owner, L_ROLE: ROLE_CONTAINER, L_UID: spec.pod_uid, L_NS: spec.namespace,
                  L_POD: spec.pod_name, L_CONTAINER: spec.container_name, L_ATTEMPT: str(spec.attempt),
                  L_SPEC: orjson.dumps(dataclasses.asdict(spec)).decode()}
        # the pod's network namespace, and its hostname (UTS namespace), are the sandbox's
        host: dict[str, Any] = {"NetworkMode": f"container:{sb.id}", "UTSMode": f"container:{sb.id}"}
        limits, requests = spec.resources.limits, spec.resources.requests
        if "memory" in limits:
            host["Memory"] = host["MemorySwap"] = parse_bytes(limits["memory"])
        if "cpu" in limits:
            host["CpuPeriod"] = CPU_PERIOD
            host["CpuQuota"] = max(1000, parse_millicores(limits["cpu"]) * CPU_PERIOD // 1000)
        if "cpu" in requests:
            host["CpuShares"] = max(2, parse_millicores(requests["cpu"]) * 1024 // 1000)
        body: dict[str, Any] = {"Image": spec.image, "Env": [f"{k}={v}" for k, v in env.items()],
                                "Labels": labels, "Tty": spec.tty, "OpenStdin": spec.stdin,
                                "StdinOnce": spec.stdin_once, "HostConfig": host}
        if spec.command is not None:  # command replaces ENTRYPOINT, and the image's CMD goes too
            body["Entrypoint"] = spec.command
            body["Cmd"] = spec.args or []
        elif spec.args is not None:  # args alone replace CMD only
            body["Cmd"] = spec.args
        if spec.working_dir:
            body["WorkingDir"] = spec.working_dir
        user, secure = security.engine_settings(spec.security_context, image_user)
        host.update(secure)
        if user is not None:
            body["User"] = user
        if spec.mounts:  # the pod's volumes, bind-mounted from the node
            host["Binds"] = [f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
                             for m in spec.mounts]
        return body

    async def _handle(self, info: dict, spec: ContainerSpec) -> ContainerHandle:
        state = info.get("State") or {}
        try:
            image_id = await self._image_id(spec.image) or info.get("Image", "")
        except ImagePullError:
            image_id = info.get("Image", "")
        return ContainerHandle(id=info["Id"], spec=spec, pid=int(state.get("Pid") or 0),
                               started_at=_parse_time(state.get("StartedAt")) or time.time(),
                               image_id=image_id)

    def _watch(self, entry: _Entry, fresh: bool) -> None:
        cid = entry.handle.id
        if entry.handle.pid:
            try:
                entry.oom = OomWatch(entry.handle.pid)
            except CgroupGone as e:
                entry.died_unwatched = True
                log.debug("container %s: exited before its OOM watch: %s", cid[:12], e)
            except OSError as e:  # cgroups v2: the engine reports OOM kills itself
                log.debug("container %s: no OOM watch: %s", cid[:12], e)
        else:  # it had exited by the time the engine was asked
            entry.died_unwatched = fresh
        pump = asyncio.create_task(self._copy_logs(entry.handle, fresh), name=f"logs {cid[:12]}")
        waiter = asyncio.create_task(self._wait_exit(entry, pump), name=f"wait {cid[:12]}")
        entry.tasks = [waiter, pump]

    async def _copy_logs(self, handle: ContainerHandle, fresh: bool) -> None:
        """Follow the engine's log stream of the container into its log file (written
        from the start: an adopted container's log is fetched again whole)."""
        path = handle.spec.log_path
        d = await self._engine()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        params = {"follow": "1", "stdout": "1", "stderr": "1"}
        try:
            with open(path, "wb") as f:
                async with d._query(f"containers/{handle.id}/logs", params=params, timeout=None) as r:
                    if handle.spec.tty:
                        async for chunk in r.content.iter_any():
                            f.write(chunk)
                            f.flush()
                        return
                    buf = b""
                    async for chunk in r.content.iter_any():
                        buf += chunk
                        while len(buf) >= 8:
                            size = int.from_bytes(buf[4:8], "big")
                            if len(buf) < 8 + size:
                                break
                            f.write(buf[8:8 + size])
                            buf = buf[8 + size:]
                        f.flush()
        except (aiodocker.DockerError, OSError) as e:
            log.warning("logs of container %s: %s", handle.id[:12], e)

    async def _wait_exit(self, entry: _Entry, pump: asyncio.Task) -> None:
        cid = entry.handle.id
        d = await self._engine()
        info = None
        try:
            path, params = self._wait_query(cid)
            async with d._query(path, "POST", params=params, timeout=None) as r:
                await r.read()
            info = await d.containers.container(cid).show()
        except aiodocker.DockerError as e:
            log.warning("waiting for container %s: %s", cid[:12], e.message)
        await asyncio.wait([pump], timeout=LOG_DRAIN_DEADLINE)
        # A container whose cgroup went away before its OOM counter could be read (it died
        # within milliseconds, or the engine removed the cgroup before the OOM event was
        # handled) and that died by a SIGKILL we did not send, with a memory limit, was
        # killed by the kernel for memory: the engine (Podman on cgroups v1) does not say so.
        suspect = not entry.killed and "memory" in entry.handle.spec.resources.limits
        oom = entry.died_unwatched and suspect
        if entry.oom is not None:
            oom = entry.oom.check() or (entry.oom.lost and suspect)
            entry.oom.close()
        if not entry.exit.done():
            entry.exit.set_result(_exit_info(info, oom))

    def _wait_query(self, cid: str) -> tuple[str, dict | None]:
        """The engine's wait for the container's exit. Podman's Docker-compatible wait polls
        the container's state in a loop without pause (a 1 ns interval in Podman 4): with
        100 idle containers the engine used ~90 % of a core. Its own wait endpoint takes
        an interval, the time an exit may go unnoticed."""
        if self._podman:  # a condition repeated: in the path (aiodocker's params are a dict)
            return (f"libpod/containers/{cid}/wait?condition=stopped&condition=exited"
                    f"&interval={PODMAN_WAIT_INTERVAL}"), None
        return f"containers/{cid}/wait", None

    # ---- wait / stop -----------------------------------------------------------

    async def wait(self, handle: ContainerHandle) -> ExitInfo:
        return await asyncio.shield(self._entry(handle).exit)

    async def stop(self, handle: ContainerHandle, grace_seconds: float) -> ExitInfo:
        entry = self._entry(handle)
        if not entry.exit.done():
            if grace_seconds > 0:
                await self._kill(handle.id, signal.SIGTERM)
                await asyncio.wait([entry.exit], timeout=grace_seconds)
            if not entry.exit.done():
                entry.killed = True
                await self._kill(handle.id, signal.SIGKILL)
        return await asyncio.shield(entry.exit)

    async def _kill(self, cid: str, sig: int) -> None:
        try:
            await (await self._engine()).containers.container(cid).kill(signal=signal.Signals(sig).name)
        except aiodocker.DockerError as e:
            if e.status not in (404, 409) and "not running" not in e.message and "state" not in e.message:
                log.warning("cannot signal container %s: %s", cid[:12], e.message)

    # ---- exec / attach ---------------------------------------------------------------

    async def exec(self, handle: ContainerHandle, argv: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        """The engine's exec: the command runs in the container's namespaces with its
        environment and working directory, over a hijacked connection."""
        entry = self._entry(handle)
        if entry.exit.done():
            raise StartError(f"container {handle.spec.container_name} is not running")
        d = await self._engine()
        try:
            ex = await d.containers.container(handle.id).exec(argv, stdout=True, stderr=True, stdin=stdin, tty=tty)
            stream = ex.start(detach=False)
            await stream._init()
        except aiodocker.DockerError as e:
            raise StartError(_start_message(e.message)) from e
        return EngineStream(stream, tty, exited=lambda: _exec_exit(ex),
                            resize=lambda w, h: ex.resize(w=w, h=h), exit_after_output=True)

    async def attach(self, handle: ContainerHandle, *, stdin: bool, tty: bool) -> ExecSession:
        """The engine's attach to the container's own stdin and output (from now on)."""
        entry = self._entry(handle)
        if entry.exit.done():
            raise StartError(f"container {handle.spec.container_name} is not running")
        d = await self._engine()
        c = d.containers.container(handle.id)
        try:
            stream = c.attach(stdout=True, stderr=True, stdin=stdin and handle.spec.stdin)
            await stream._init()
        except aiodocker.DockerError as e:
            raise StartError(e.message) from e

        async def exited() -> int:
            return (await asyncio.shield(entry.exit)).exit_code

        async def resize(w: int, h: int) -> None:
            async with d._query(f"containers/{handle.id}/resize", "POST", params={"h": h, "w": w}):
                pass
        return EngineStream(stream, handle.spec.tty, exited=exited, resize=resize)

    # ---- adopt / forget ----------------------------------------------------------

    async def adopt(self) -> list[ContainerHandle]:
        """After an agent restart: take back the sandboxes and the running containers
        labelled as this agent's. Containers that exited meanwhile are removed (their
        pods report them as ContainerStatusUnknown); so are sandboxes that died."""
        if self._docker is None and not os.path.exists(self._marker):
            return []  # this agent never ran a container pod: no engine needed
        try:
            found = await self._owned({})
        except SandboxError as e:
            log.error("docker runtime: cannot adopt containers: %s", e)
            return []
        handles = []
        for c in found:
            labels = c.get("Labels") or {}
            if labels.get(L_ROLE) != ROLE_SANDBOX:
                continue
            info = await self._inspect(c["Id"])
            sb = self._sandbox_from(info) if info and info["State"].get("Running") else None
            if sb is None:
                await self._remove(c["Id"])
                continue
            self.sandboxes[sb.id] = sb
            try:
                ports = [PortMapping(**p) for p in orjson.loads(labels.get(L_HOST_PORTS) or "[]")]
                await self.host_ports.open(sb.id, sb.ip, ports)
            except (ValueError, TypeError, SandboxError) as e:
                log.warning("pod %s/%s: hostPort not published again: %s", sb.namespace, sb.pod_name, e)
        if self.sandboxes:  # their pods reach Services again (routes, twins, DNS)
            try:
                await self._ensure_network()
            except SandboxError as e:
                log.error("docker runtime: pod network: %s", e)
        for c in found:
            labels = c.get("Labels") or {}
            if labels.get(L_ROLE) != ROLE_CONTAINER or c["Id"] in self._entries:
                continue
            info = await self._inspect(c["Id"])
            try:
                spec = ContainerSpec.from_dict(orjson.loads(labels.get(L_SPEC, "{}")))
            except (ValueError, TypeError, KeyError) as e:
                log.warning("container %s: unreadable spec label: %s", c["Id"][:12], e)
                spec = None
            if info is None or spec is None or not info["State"].get("Running") or spec.sandbox_id not in self.sandboxes:
                await self._remove(c["Id"])
                continue
            sb = self.sandboxes[spec.sandbox_id]
            sb.pod_dir = sb.pod_dir or os.path.dirname(spec.log_path)
            entry = _Entry(await self._handle(info, spec), asyncio.get_running_loop().create_future())
            self._entries[entry.handle.id] = entry
            self._watch(entry, fresh=False)
            handles.append(entry.handle)
        return handles

    async def forget(self, handle: ContainerHandle) -> None:
        """Drop the container: it has exited (its log is in its file)."""
        entry = self._entries.pop(handle.id, None)
        if entry is not None:
            for t in entry.tasks:
                t.cancel()
            if entry.oom is not None:
                entry.oom.close()
        if self._docker is not None:
            await self._remove(handle.id)

    async def close(self) -> None:
        """Stop watching; containers and sandboxes keep running for the next agent."""
        for entry in self._entries.values():
            for t in entry.tasks:
                t.cancel()
            if entry.oom is not None:
                entry.oom.close()
            if not entry.exit.done():
                entry.exit.cancel()
        self._entries.clear()
        self.host_ports.close_all()
        await self._close_engine()

    # ---- engine helpers ---------------------------------------------------------------

    def _entry(self, handle: ContainerHandle) -> _Entry:
        try:
            return self._entries[handle.id]
        except KeyError:
            raise KeyError(f"unknown container {handle.id}: not started or adopted by this runtime") from None

    async def _owned(self, more: dict[str, str]) -> list[dict]:
        labels = [f"{L_OWNER}={self.owner}"] + [f"{k}={v}" for k, v in more.items()]
        try:
            return await self._query_json("containers/json", params={
                "all": "1", "filters": orjson.dumps({"label": labels}).decode()}) or []
        except aiodocker.DockerError as e:
            raise SandboxError(f"container engine: {e.message}") from e

    async def _inspect(self, cid: str) -> dict | None:
        try:
            return await (await self._engine()).containers.container(cid).show()
        except aiodocker.DockerError:
            return None

    async def _remove(self, cid: str) -> None:
        try:
            await (await self._engine()).containers.container(cid).delete(force=True)
        except aiodocker.DockerError as e:
            if e.status != 404:
                log.warning("cannot remove container %s: %s", cid[:12], e.message)

    async def _remove_by_name(self, name: str) -> None:
        info = await self._inspect(name)
        if info is not None and (info["Config"].get("Labels") or {}).get(L_OWNER) == self.owner:
            await self._remove(info["Id"])


# ---- helpers ----------------------------------------------------------------------------


class EngineStream:
    """An exec or attach session over the engine's hijacked connection (aiodocker's
    Stream): output frames in, stdin bytes out, a half-close for the end of stdin."""

    def __init__(self, stream: Any, tty: bool, exited: Any, resize: Any, exit_after_output: bool = False):
        self._stream, self._tty, self._exited, self._resize = stream, tty, exited, resize
        self._stdin_closed = False
        # an exec's exit code is asked for once its output has ended (the engine has no
        # wait for execs); an attach ends with the container
        self._exit_after_output = exit_after_output
        self._output_ended = asyncio.Event()

    async def read(self) -> tuple[int, bytes] | None:
        try:
            msg = await self._stream.read_out()
        except (aiodocker.DockerError, OSError, asyncio.IncompleteReadError):
            msg = None
        if msg is None:
            self._output_ended.set()
            return None
        return (1 if self._tty else msg.stream), msg.data

    async def write(self, data: bytes) -> None:
        if data and not self._stdin_closed:
            try:
                await self._stream.write_in(data)
            except (RuntimeError, OSError, aiodocker.DockerError):
                pass

    async def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        conn = self._stream._resp.connection if self._stream._resp is not None else None
        if conn is not None and conn.transport is not None and conn.transport.can_write_eof():
            conn.transport.write_eof()

    async def resize(self, width: int, height: int) -> None:
        if self._tty and width > 0 and height > 0:
            try:
                await self._resize(width, height)
            except aiodocker.DockerError as e:
                log.debug("resize: %s", e.message)

    async def wait(self) -> int:
        if self._exit_after_output:
            await self._output_ended.wait()
        return await self._exited()

    async def close(self) -> None:
        try:
            await self._stream.close()
        except (OSError, aiodocker.DockerError):
            pass


async def _exec_exit(ex: Any) -> int:
    """The exit code of an exec whose output has ended: the engine may report it a
    moment later, so ask until it is not running (bounded)."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            info = await ex.inspect()
        except aiodocker.DockerError as e:
            log.warning("exec %s: %s", ex.id[:12], e.message)
            return UNKNOWN_EXIT_CODE
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() > deadline:
            return UNKNOWN_EXIT_CODE
        await asyncio.sleep(0.05)  # poll interval of a deadline-bounded wait for the engine's record


def engine_client(url: str) -> aiodocker.Docker:
    """An engine client whose connection pool has no limit. Every container holds two
    requests open for its life (its log stream and its wait): with aiohttp's default of
    100 connections, 50 containers took them all, and every later request (a kill, a new
    sandbox) queued for ever behind them."""
    if url.startswith("unix://"):
        d = aiodocker.Docker(url=url, connector=aiohttp.UnixConnector(url.removeprefix("unix://"), limit=0))
        d.docker_host = "unix://localhost"  # what aiodocker names a socket it connects itself
        return d
    return aiodocker.Docker(url=url)


def ensure_unreachable_route(cidr: str) -> None:
    """`ip route replace unreachable <cidr>`, checked. Blocking (runs `ip`)."""
    def show() -> str:
        return subprocess.run(["ip", "route", "show", "type", "unreachable", cidr], capture_output=True,
                              text=True, timeout=10).stdout
    try:
        if cidr in show():
            return
        r = subprocess.run(["ip", "route", "replace", "unreachable", cidr], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"cannot install the unreachable route for the pod CIDR {cidr}: {e}") from e
    if r.returncode != 0 or cidr not in show():
        raise SandboxError(f"cannot install the unreachable route for the pod CIDR {cidr} (needs root): "
                           f"{r.stderr.strip()}")


def ensure_local_route(cidr: str) -> None:
    """`ip route replace local <cidr> dev lo table local`: the node accepts (and its
    sockets may bind) every address of the range, as it does 127.0.0.0/8. Blocking."""
    argv = ["ip", "route", "replace", "local", cidr, "dev", "lo", "table", "local"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"cannot hold the service CIDR {cidr} on the node: {e}") from e
    if r.returncode != 0:
        raise SandboxError(f"cannot hold the service CIDR {cidr} on the node (needs root): {r.stderr.strip()}")


def route_in_netns(pid: int, cidr: str, gateway: str) -> None:
    """In the network namespace of process `pid` (a pod's infra container): send `cidr`
    to the node over the pod bridge. Blocking (runs nsenter and ip)."""
    if pid <= 0:
        raise SandboxError("the sandbox has no process to find its network namespace by")
    argv = ["nsenter", "-t", str(pid), "-n", "ip", "route", "replace", cidr, "via", gateway]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"cannot route the service CIDR {cidr} in the pod's network namespace: {e}") from e
    if r.returncode != 0:
        raise SandboxError(f"cannot route the service CIDR {cidr} in the pod's network namespace: "
                           f"{r.stderr.strip()}")


def _stream_error(out: bytes) -> str | None:
    """The first error in an engine's JSON progress stream (build, pull)."""
    for line in out.splitlines():
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(msg, dict) and msg.get("error"):
            return str(msg["error"])
    return None


def _name(ns: str, pod: str, uid: str, what: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"sendo_{ns}_{pod}_{uid[:8]}_{what}")


def _has_tag_or_digest(image: str) -> bool:
    return "@" in image or ":" in image.rsplit("/", 1)[-1]


def _on_loopback(ref: str) -> bool:
    host = ref.split("/", 1)[0] if "/" in ref else ""
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _parse_time(s: str | None) -> float | None:
    """Engine timestamps have nanoseconds; Python parses microseconds."""
    m = _TIME.match(s or "")
    if not m or m.group(1).startswith("0001"):
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


def _exit_info(info: dict | None, oom: bool = False) -> ExitInfo:
    if info is None:
        return ExitInfo(UNKNOWN_EXIT_CODE, None, time.time(), REASON_STATUS_UNKNOWN, UNKNOWN_EXIT_MESSAGE)
    state = info.get("State") or {}
    code = int(state.get("ExitCode") or 0)
    finished = _parse_time(state.get("FinishedAt")) or time.time()
    if state.get("OOMKilled") or (oom and code == 137):
        return ExitInfo(137 if code in (0, 137) else code, None, finished, REASON_OOM_KILLED)
    sig = code - 128 if 128 < code < 160 else None
    return ExitInfo(code, sig, finished, REASON_COMPLETED if code == 0 else REASON_ERROR,
                    state.get("Error") or "")


def _start_message(msg: str) -> str:
    """The OCI runtime's error, without the engine's wrapping."""
    m = re.search(r'exec: "[^"]*": [^:"]+', msg)
    return m.group(0) if m else msg


_BYTES = re.compile(r"^([0-9.]+)([EPTGMK]i?|[eE][0-9]+|m)?$")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_bytes(q: str) -> int:
    """A Kubernetes memory quantity ("64Mi", "1G", "128974848", "129e6") in bytes."""
    m = _BYTES.match(str(q).strip())
    if not m:
        raise ValueError(f'invalid memory quantity "{q}"')
    num, unit = float(m.group(1)), m.group(2) or ""
    if unit == "m":
        return math.ceil(num / 1000)
    if unit[:1] in "eE" and unit:
        return math.ceil(num * 10 ** int(unit[1:]))
    return math.ceil(num * _UNITS[unit])


def parse_millicores(q: str) -> int:
    """A CPU quantity ("500m", "1", "0.25") in millicores."""
    s = str(q).strip()
    try:
        return math.ceil(float(s[:-1])) if s.endswith("m") else math.ceil(float(s) * 1000)
    except ValueError:
        raise ValueError(f'invalid cpu quantity "{q}"') from None
