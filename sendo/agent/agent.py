"""`sendo agent`: one per node. Registers the Node, keeps its Lease fresh, runs the pods
bound to it through a runtime, and serves their logs to the API server.

It talks to the API only through the REST API, with the node token.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiohttp import web

from .. import __version__
from ..network.endpointroute import pod_cidrs
from ..network.mirror import DNS_CLUSTER_IP, ServiceMirror
from ..client import ApiError, Client, Informer, kind
from ..client.events import EventRecorder
from ..client.factory import InformerFactory
from ..client.informer import obj_key
from ..client.local import LocalTransport
from ..kinds.cluster import CONTAINER_CIDR_ANNOTATION
from ..kinds.meta import now_rfc3339
from ..kinds.storage import STORAGE_DIR_ANNOTATION
from ..observe import METRICS_CONTENT_TYPE, Health, exposition
from ..serving import remembered_port
from ..tasks import DUMP_SECTIONS, stop_tasks
from ..wire import NODE_HEADER, TUNNEL_PATH
from . import logs as logfiles
from . import podexec, portforward, tunnel
from .env import service_links
from .identity import PodIdentity
from .lease import LEASE_SECONDS, RENEW_FRACTION, renew_node_lease
from .metrics import AgentMetrics, DNSCollector, ProxyCollector
from .podworker import PodWorker
from .query import BadQuery, query_bool, query_int
from .runtime import ContainerHandle, Runtime, SandboxError, open_runtime, registry
from .volumes import VolumeManager, unmount_all
from .usage import DEFAULT_INTERVAL, RunningContainer, UsageSampler, resource_registry

log = logging.getLogger(__name__)
Obj = dict[str, Any]
STATUS_EVERY = 60.0


@dataclass
class AgentConfig:
    server: str
    token: str
    node_name: str
    data_dir: str
    ca_pem: bytes | None = None
    address: str = "127.0.0.1"  # where the API server reaches this agent; the node's InternalIP
    port: int = 0  # agent HTTP (logs); 0 = any free port
    backoff_base: float = 10.0  # crash-loop back-off, doubling up to backoff_max
    backoff_max: float = 300.0
    labels: dict[str, str] = field(default_factory=dict)
    dns: str = "127.32.0.10:53"  # cluster DNS address ("" turns it off); a free port if taken
    service_proxy: bool = True  # run the service proxy (off for extra agents sharing one machine's addresses)
    ingress: bool = True  # run the ingress controller (network/ingress.py) on the node's address
    ingress_http_port: int | None = None  # None: 80 as root, else 8080; 0: any free port
    ingress_https_port: int | None = None  # None: 443 as root, else 8443; 0: any free port
    runtime: str = registry.DEFAULT  # runs pods without a runtimeClassName; `process` is always there too
    engine: str = ""  # docker runtime: the engine's socket ("" = DOCKER_HOST, usual paths, else podman)
    container_cidr: str = ""  # docker runtime: the pod CIDR of container pods ("" = its default)
    metrics_interval: float = DEFAULT_INTERVAL  # seconds between resource usage samples (kubectl top)
    # the node Lease's duration; renewed every quarter of it (kubelet's nodeLeaseDurationSeconds)
    node_lease_duration_seconds: int = LEASE_SECONDS
    container_service_cidr: str = ""  # docker runtime: the twins of the ClusterIPs ("" = 10.96.0.0/16)
    pods_api_url: str = ""  # where pods reach the API ($KUBERNETES_SERVICE_HOST/PORT); "": the first server
    # `sendo up`: the API server runs in this process; its ASGI app, which the agent's requests then
    # go to directly (client/local.py: same auth and answers, no TLS or HTTP framing). None: HTTPS
    local_api: Any = None

    def runtime_names(self) -> list[str]:
        """The runtimes this agent opens: the default one, `process` (needs nothing) and
        `docker` (which finds its engine only when a pod first needs it)."""
        return list(dict.fromkeys([registry.check(self.runtime), "process", "docker"]))

    def runtime_options(self, name: str) -> dict[str, str]:
        if name == "docker":
            return {"engine": self.engine, "pod_cidr": self.container_cidr, "host_address": self.address,
                    "service_cidr": self.container_service_cidr}
        return {}


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.dir = os.path.join(cfg.data_dir, "agent", cfg.node_name)
        self.pods_dir = os.path.join(self.dir, "pods")
        self.logs_dir = os.path.join(self.dir, "logs")
        # the node token speaks for the node named in X-Sendo-Node: user system:node:<name>, which
        # the node authorizer limits to this node's objects and its pods' Secrets and ConfigMaps
        self.client = Client(cfg.server, cfg.token, cfg.ca_pem, user_agent=f"sendo-agent/{cfg.node_name}",
                             headers={NODE_HEADER: cfg.node_name},
                             transport=LocalTransport(cfg.local_api) if cfg.local_api is not None else None)
        self.informers = InformerFactory(self.client)  # one watch per kind for the agent and its network services
        # runtime name (= RuntimeClass handler) -> runtime; the first is the node's default
        self.runtimes: dict[str, Runtime] = {n: open_runtime(n, self.dir, **cfg.runtime_options(n))
                                             for n in cfg.runtime_names()}
        self.runtime = self.runtimes[cfg.runtime]
        # Services as pods in their own network namespace reach them (network/mirror.py)
        self.mirror = ServiceMirror()
        self.container_dns = None  # network.dns.ClusterDNS on the twin of the DNS ClusterIP
        self._container_dns_task: asyncio.Task | None = None
        for rt in self.runtimes.values():
            if hasattr(rt, "on_network_ready"):
                rt.on_network_ready = self._container_network_ready
        self.recorder = EventRecorder(self.client, "kubelet", cfg.node_name)
        self.workers: dict[str, PodWorker] = {}  # pod uid -> worker
        self.adopted: dict[str, tuple[Runtime, list[ContainerHandle]]] = {}  # pod uid -> what runs
        self.pods: Informer | None = None
        self.services: Informer | None = None
        self.runtime_classes: Informer | None = None
        self._tasks: list[asyncio.Task] = []
        self._cleanups: set[asyncio.Task] = set()  # stray clean-ups after a worker crash
        self._web: web.AppRunner | None = None
        self.node: Obj | None = None
        self.routes = None  # noderoutes.NodeRoutes: host-gateway routes to other hosts' container pods
        self.proxy = None  # network.proxy.ServiceProxy when cfg.service_proxy
        self.ingress = None  # network.ingress.IngressController when cfg.ingress
        self.dns = None  # network.dns.ClusterDNS when cfg.dns
        # ServiceAccount tokens of the pods (identity.py)
        self.metrics = AgentMetrics(self._counts)  # /metrics; pod workers record into it
        self.metrics.registry.register(DNSCollector(lambda: self.dns))  # type: ignore[arg-type]
        self.metrics.registry.register(ProxyCollector(lambda: self.proxy))  # type: ignore[arg-type]
        self.usage = UsageSampler(cfg.node_name, self._running_containers, cfg.metrics_interval)
        self.resource_metrics = resource_registry(self.usage)  # /metrics/resource
        self.health = Health()
        self.health.add("node-registered", lambda: None if self.node is not None else "the node is not registered")
        self.health.add("pods-informer", lambda: None if self.pods is not None and self.pods.synced.is_set()
                        else "the pods bound to this node are not listed yet")
        self.health.add("usage-sampler", lambda: None if self.usage.node is not None else "no usage sample yet")
        self._lease_renewed = 0.0
        self.health.add("lease", self._lease_fresh, live=True, ready=False)
        self.identity = PodIdentity(self.client, cfg.pods_api_url or self.client.servers.urls[0], cfg.ca_pem, self.pods_dir,
                                    alive=lambda uid: uid in self.workers, on_ready=self._identity_ready)
        # the pods' volumes; local-path PersistentVolumes of this node live in storage_dir
        self.storage_dir = os.path.join(cfg.data_dir, "storage")
        self.volumes = VolumeManager(self.client, self.informers, cfg.node_name, self.storage_dir,
                                     on_change=self._volume_ready, evict=self._evict, event=self.event,
                                     allocatable=self._allocatable)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        for d in (self.pods_dir, self.logs_dir):
            os.makedirs(d, exist_ok=True)
        await self._serve_http()
        await self._register()
        for rt in self.runtimes.values():
            for h in await rt.adopt():
                self.adopted.setdefault(h.spec.pod_uid, (rt, []))[1].append(h)
        await self._stop_replaced()  # before the node says Ready, before any pod starts
        await self._post_ready()
        await self._start_node_routes()  # before any pod starts: the unreachable guards come first
        await self._start_runtime_classes()
        if self.cfg.dns:  # before the pods: their environment names the DNS server and Services
            from ..network.dns import ClusterDNS
            host, _, port = self.cfg.dns.rpartition(":")
            self.dns = ClusterDNS(self.client, host, int(port), informers=self.informers)
            await self.dns.bind_anywhere()
        self.services = self.informers.get(kind("services"))  # service links; shared with DNS and proxy
        await self.informers.start(self.services)
        await self.identity.start()  # before the pods: their tokens need their ServiceAccounts
        await self.volumes.start()
        self.pods = self.informers.get(kind("pods"), field_selector=f"spec.nodeName={self.cfg.node_name}")
        self.pods.add_handler(self._on_pod)
        await self.informers.start(self.pods)
        await self._stop_strays()
        await self.usage.start()
        if self.cfg.service_proxy:
            from ..network.proxy import ServiceProxy
            self.proxy = ServiceProxy(self.client, self.cfg.node_name, self.cfg.address, informers=self.informers,
                                      mirror=self.mirror)
            await self.proxy.start()
        if self.cfg.ingress:  # ports it cannot bind (in use, privileged) are logged and retried, never fatal
            from ..network.ingress import IngressController
            self.ingress = IngressController(self.client, self.cfg.node_name, self.cfg.address,
                                             http_port=self.cfg.ingress_http_port,
                                             https_port=self.cfg.ingress_https_port, informers=self.informers)
            await self.ingress.start()
        DUMP_SECTIONS[f"pod workers of node {self.cfg.node_name}"] = self._describe_workers
        self._tasks = [asyncio.create_task(self._heartbeat(), name="lease"),
                       asyncio.create_task(self._status_loop(), name="node-status"),
                       asyncio.create_task(self._rotate_logs(), name="log-rotation")]

    async def stop(self, stop_pods: bool = False) -> None:
        """Stop the agent. Pods keep running unless stop_pods (then their processes stop too)."""
        DUMP_SECTIONS.pop(f"pod workers of node {self.cfg.node_name}", None)
        for t in [*self._tasks, *self._cleanups]:
            t.cancel()
        await self.usage.stop()
        if self.routes is not None:
            await self.routes.stop()
        if self.ingress:
            await self.ingress.stop()
        if self.proxy:
            await self.proxy.stop()
        if self.dns:
            await self.dns.stop()
        if self._container_dns_task is not None:
            self._container_dns_task.cancel()
        if self.container_dns is not None:
            await self.container_dns.stop()
        await self.informers.stop()
        workers = list(self.workers.values())
        await stop_tasks((w.task for w in workers), "pod worker")
        if stop_pods:
            await asyncio.gather(*[w.stop_containers(5.0) for w in workers], return_exceptions=True)
            for rt in self.runtimes.values():  # what holds the pods' networks stops too (infra containers)
                for sb in await rt.list_pod_sandboxes():
                    try:
                        await rt.stop_pod_sandbox(sb.id)
                    except Exception as e:  # the agent stops anyway; the next one cleans up
                        log.warning("cannot stop the sandbox of pod %s/%s: %s", sb.namespace, sb.pod_name, e)
            await unmount_all(self.pods_dir)  # memory-backed emptyDirs end with their pods, as at a reboot
        await self.identity.close()
        await self.volumes.close()
        for rt in self.runtimes.values():
            await rt.close()
        await self.recorder.close()
        if self._web:
            await self._web.cleanup()
        await self.client.close()

    # ----------------------------------------------------------------- node
    def _node_object(self) -> Obj:
        cpu = os.cpu_count() or 1
        mem_ki = psutil.virtual_memory().total // 1024
        disk_ki = psutil.disk_usage(self.cfg.data_dir).total // 1024
        resources = {"cpu": str(cpu), "memory": f"{mem_ki}Ki", "pods": "110",
                     "ephemeral-storage": f"{disk_ki}Ki"}
        labels = {"kubernetes.io/hostname": self.cfg.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                                    platform.machine()),
                  **self.cfg.labels}
        now = now_rfc3339()
        conditions = [
            {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": now,
             "lastTransitionTime": now}
            for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "sendo agent is posting ready status", "lastHeartbeatTime": now,
                           "lastTransitionTime": now})
        uname = platform.uname()
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.cfg.node_name, "labels": labels,
                             "annotations": {STORAGE_DIR_ANNOTATION: self.storage_dir}},
                "spec": {},
                "status": {"capacity": resources, "allocatable": dict(resources), "conditions": conditions,
                           "addresses": [{"type": "InternalIP", "address": self.cfg.address},
                                         {"type": "Hostname", "address": self.cfg.node_name}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                           "nodeInfo": {"kubeletVersion": f"v1.37.0-sendo.{__version__}",
                                        "kubeProxyVersion": "", "operatingSystem": "linux",
                                        "architecture": labels["kubernetes.io/arch"],
                                        "containerRuntimeVersion": self.runtime.version(),
                                        "kernelVersion": uname.release, "osImage": _os_image(),
                                        "machineID": "", "systemUUID": "", "bootID": ""}}}

    async def _register(self) -> None:
        nodes = kind("nodes")
        want = self._node_object()
        node = await self.client.get_or_none(nodes, None, self.cfg.node_name)
        if node is None:
            try:
                node = await self.client.create(nodes, {k: v for k, v in want.items() if k != "status"})
            except ApiError as e:
                if e.status != 409:
                    raise
                node = await self.client.get(nodes, None, self.cfg.node_name)
        else:
            labels = {**(node["metadata"].get("labels") or {}), **want["metadata"]["labels"]}
            annotations = {**(node["metadata"].get("annotations") or {}), **want["metadata"]["annotations"]}
            if labels != node["metadata"].get("labels") or annotations != node["metadata"].get("annotations"):
                node = await self.client.patch(nodes, None, self.cfg.node_name,
                                               {"metadata": {"labels": labels, "annotations": annotations}})
        self.node = node
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            raise RuntimeError(f"node {self.cfg.node_name} has no podCIDR")
        for rt in self.runtimes.values():
            await rt.update_runtime_config(cidr)
        block = (node["metadata"].get("annotations") or {}).get(CONTAINER_CIDR_ANNOTATION)
        for rt in self.runtimes.values():
            if block and hasattr(rt, "use_node_block"):
                try:
                    rt.use_node_block(block)
                except ValueError as e:  # its pods still run, on the runtime's first /24, reached from here only
                    log.error("%s; container pods of this node are not reachable from other nodes", e)

    async def _post_ready(self) -> None:
        """The node's status (Ready) and its Lease: from now on the node is heard from."""
        self.node = await self.client.patch(kind("nodes"), None, self.cfg.node_name,
                                            {"status": self._node_object()["status"]}, sub="status")
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        await renew_node_lease(self.client, self.cfg.node_name, self.node["metadata"]["uid"],
                               self.cfg.node_lease_duration_seconds)
        self._lease_renewed = asyncio.get_running_loop().time()

    def _lease_fresh(self) -> str | None:
        age = asyncio.get_running_loop().time() - self._lease_renewed
        stale_after = 4 * self.cfg.node_lease_duration_seconds * RENEW_FRACTION
        return None if age < stale_after else f"the node Lease was last renewed {age:.0f}s ago"

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.node_lease_duration_seconds * RENEW_FRACTION)  # lease renewal period
            try:
                await self._renew_lease()
            except Exception as e:
                log.warning("lease renewal failed: %s", e)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)  # node status period
            try:
                st = self._node_object()["status"]
                await self.client.patch(kind("nodes"), None, self.cfg.node_name, {"status": st}, sub="status")
            except Exception as e:
                log.warning("node status update failed: %s", e)

    async def _rotate_logs(self) -> None:
        while True:
            await asyncio.sleep(30)  # rotation check period
            for root, _, files in os.walk(self.logs_dir):
                for f in files:
                    if f.endswith(".log"):
                        await asyncio.to_thread(logfiles.rotate_if_needed, os.path.join(root, f))

    def _describe_workers(self) -> str:
        """For the SIGUSR1 dump: what each pod worker is waiting for."""
        return "\n".join(w.describe() for w in self.workers.values()) or "(none)"

    # ----------------------------------------------------------------- pods
    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if typ == "DELETED":
            if w is not None:
                w.removed()
            return
        if w is None:
            # a pod replaced under the same name gets a new uid: the old worker sees it gone
            for other in self.workers.values():
                if obj_key(other.pod) == obj_key(pod) and other.uid != uid:
                    other.removed()
            rt, handles = self.adopted.pop(uid, (None, []))
            w = PodWorker(self, pod, handles, rt)
            self.workers[uid] = w
            w.task.add_done_callback(lambda _t, uid=uid: self._worker_done(uid))
            self.identity.track(pod)  # its token is fetched now (and kept fresh for adopted pods)
        else:
            w.update(pod)
            self.volumes.pod_changed(pod)

    def _worker_done(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None and w.task.done():
            del self.workers[uid]
            self.volumes.forget(uid)

    def _volume_ready(self, uid: str) -> None:
        """Something a pod's volumes waited for (a ConfigMap, a bound claim) is here."""
        if (w := self.workers.get(uid)) is not None:
            w.retry_prepare()

    def _evict(self, uid: str, message: str) -> None:
        if (w := self.workers.get(uid)) is not None:
            w.evict(message)

    def _allocatable(self) -> dict[str, str]:
        """What a container without a limit may use (the downward API's resourceFieldRef)."""
        return {"cpu": str(os.cpu_count() or 1), "memory": str(psutil.virtual_memory().total),
                "ephemeral-storage": str(psutil.disk_usage(self.cfg.data_dir).total)}

    def worker_failed(self, w: PodWorker) -> None:
        """A worker that crashed is replaced by a fresh one, which adopts the containers it
        left running (never a second start of the same run)."""
        self.workers.pop(w.uid, None)
        if (running := w.running()) and w.runtime is not None:
            self.adopted[w.uid] = (w.runtime, running)
        if self.pods and (pod := self.pods.get(obj_key(w.pod))):
            asyncio.get_running_loop().call_later(1.0, self._on_pod, "MODIFIED", pod, None)
        else:  # the pod is gone too: what it left running stops
            t = asyncio.get_running_loop().create_task(self._stop_strays(), name=f"strays-{w.uid}")
            self._cleanups.add(t)
            t.add_done_callback(self._cleanups.discard)

    async def _stop_replaced(self) -> None:
        """What still runs here for pods that are no longer bound here: deleted for good, or
        replaced elsewhere (the same name with a new uid, on another node) while this agent was
        away — killed, or cut off behind a partition while the pods were evicted. Stopped from one
        fresh list of the pods bound here, before the node reports Ready and before any pod
        starts, so a replacement and its stale copy never both run once the agent is back."""
        if not self.adopted and not any([await rt.list_pod_sandboxes() for rt in self.runtimes.values()]):
            return
        bound = await self.client.list(kind("pods"), fieldSelector=f"spec.nodeName={self.cfg.node_name}")
        keep = {p["metadata"]["uid"] for p in bound.get("items") or []}
        gone = sorted(set(self.adopted) - keep)
        if gone:
            log.warning("node %s: stopping the containers of %d pod(s) deleted or replaced elsewhere while the "
                        "agent was away: %s", self.cfg.node_name, len(gone), ", ".join(gone))
        await self._stop_strays(keep)

    async def _stop_strays(self, keep: set[str] | None = None) -> None:
        """Containers and sandboxes of pods that are no longer bound here (deleted while the
        agent was down). ``keep``: the pod uids to leave alone (default: those with a worker)."""
        keep = set(self.workers) if keep is None else keep
        for uid, (rt, handles) in list(self.adopted.items()):
            if uid in keep:
                continue
            for h in handles:
                await rt.stop(h, 5.0)
                await rt.forget(h)
            del self.adopted[uid]
        for rt in self.runtimes.values():
            for sb in await rt.list_pod_sandboxes():
                if sb.pod_uid not in keep:
                    await rt.remove_pod_sandbox(sb.id)

    # ----------------------------------------------------------------- runtimes
    async def _start_node_routes(self) -> None:
        """Host-gateway routes to the container pods of nodes on other hosts (noderoutes.py):
        only for an agent that other hosts can reach (an address that is not loopback)."""
        from .noderoutes import NodeRoutes
        from .runtime.docker import DockerRuntime
        rt = self.runtimes.get("docker")
        try:
            on_loopback = ipaddress.ip_address(self.cfg.address).is_loopback
        except ValueError:
            on_loopback = False  # a host name: reachable from elsewhere
        if isinstance(rt, DockerRuntime) and not on_loopback:
            routes = NodeRoutes(self.informers, self.cfg.node_name, rt)
            if await routes.start():
                self.routes = routes

    def _container_network_ready(self, service_cidr: str) -> None:
        """A runtime made the ClusterIPs' twins reachable from its pods: the proxy listens
        on them too, and a cluster DNS answers those pods on the twin of its address; the
        routes to other nodes' pods leave from its bridge's address from now on."""
        if self.routes is not None:
            self.routes.kick()
        self.mirror.enable(service_cidr)
        if self.cfg.dns and self._container_dns_task is None:
            self._container_dns_task = asyncio.get_running_loop().create_task(self._start_container_dns(),
                                                                           name="container-dns")

    async def _start_container_dns(self) -> None:
        from ..network.dns import ClusterDNS
        host = self.mirror.twin(DNS_CLUSTER_IP)
        assert host is not None
        dns = ClusterDNS(self.client, host, 53, upstreams=[], informers=self.informers, translate=self.mirror.twin)
        try:
            await dns.start()
        except OSError as e:
            log.error("cluster DNS for container pods cannot listen on %s:53: %s", host, e)
            return
        self.container_dns = dns

    @property
    def node_address(self) -> str:
        return self.cfg.address

    @property
    def backoff(self) -> tuple[float, float]:
        return self.cfg.backoff_base, self.cfg.backoff_max

    async def _start_runtime_classes(self) -> None:
        """Watch RuntimeClasses, and create one per runtime of this agent if missing
        (handler = the runtime's name), as the ingress controller creates its class."""
        self.runtime_classes = self.informers.get(kind("runtimeclasses", "node.k8s.io"))
        self.runtime_classes.add_handler(self._runtime_class_changed)
        await self.informers.start(self.runtime_classes)
        for name in self.runtimes:
            if self.runtime_classes.get(name) is not None:
                continue
            body = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "handler": name,
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sendo"}}}
            try:
                created = await self.client.create(self.runtime_classes.r, body)
                self.runtime_classes.cache.setdefault(name, created)  # the watch brings it too
            except ApiError as e:
                if e.status != 409:  # another agent made it first
                    log.warning("cannot create RuntimeClass %s: %s", name, e)

    def _runtime_class_changed(self, typ: str, rc: Obj, old: Obj | None) -> None:
        """Pods waiting for their sandbox try again at once: their class may exist now."""
        for w in self.workers.values():
            w.retry_prepare()

    def runtime_for(self, pod: Obj) -> Runtime:
        """The runtime of the pod's RuntimeClass, or this node's default without one."""
        cls = (pod.get("spec") or {}).get("runtimeClassName")
        if not cls:
            return self.runtime
        rc = self.runtime_classes.get(cls) if self.runtime_classes else None
        if rc is None:
            raise SandboxError(f'RuntimeClass "{cls}" not found')
        handler = rc.get("handler") or ""
        if handler not in self.runtimes:
            raise SandboxError(f'no runtime for handler "{handler}" (RuntimeClass "{cls}") is configured on node '
                               f'{self.cfg.node_name}; it runs: {", ".join(self.runtimes)}')
        return self.runtimes[handler]

    def base_env(self, pod: Obj, pod_ip: str | None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOSTNAME": pod["metadata"]["name"]}
        for k in ("HOME", "LANG", "LC_ALL", "TZ"):
            if k in os.environ:
                env[k] = os.environ[k]
        if self.dns:
            env["SENDO_DNS"] = self.dns.address
        if (pod.get("spec") or {}).get("enableServiceLinks", True):
            env.update(service_links(pod["metadata"]["namespace"], self.services.list()))
        # the API server's own address (over the `kubernetes` service link) and the pod's
        # token directory; ConfigError while the token is not written yet
        env.update(self.identity.env(pod))
        return env

    async def prepare_pod(self, pod: Obj) -> None:
        """For the pod worker to await before it builds a container's environment: waits
        (bounded) until the pod's ServiceAccount token is on disk, so `base_env` finds it
        at once. Never raises; `base_env` reports a missing token as a ConfigError."""
        await self.identity.ready(pod)

    def _identity_ready(self, uid: str) -> None:
        """A pod's token is there: its worker starts what waited for it at once."""
        if (w := self.workers.get(uid)) is not None:
            w.token_ready()

    def event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        self.recorder.emit(pod, type_, reason, message)

    # ----------------------------------------------------------------- HTTP (logs)
    async def _serve_http(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        app.router.add_get("/portForward/{ns}/{pod}", portforward.handler(self.cfg.token, self.pod_address))
        app.router.add_get("/exec/{ns}/{pod}/{container}", podexec.handler(self.cfg.token, self.running_container))
        app.router.add_get("/attach/{ns}/{pod}/{container}",
                           podexec.handler(self.cfg.token, self.running_container, attach=True))
        app.router.add_get(TUNNEL_PATH, tunnel.handler(self.cfg.token, self.pod_cidrs))
        for path in ("/healthz", "/livez", "/readyz", "/healthz/{check}", "/livez/{check}", "/readyz/{check}"):
            app.router.add_get(path, self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/metrics/resource", self._metrics)
        app.router.add_get("/stats/summary", self._summary)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        # no --port: the port of last time while it is free, so a Prometheus job keeps finding it
        port = self.cfg.port or remembered_port(os.path.join(self.dir, "port"), self.cfg.address)
        site = web.TCPSite(self._web, self.cfg.address, port)
        await site.start()
        self.port = port

    def find_worker(self, ns: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.ns == ns and w.name == name:
                return w
        return None

    def pod_address(self, ns: str, name: str) -> str:
        """The IP of a pod running here, for port-forward; LookupError says why there is none."""
        w = self.find_worker(ns, name)
        if w is None or w.task.done():
            raise LookupError(f'pod "{name}" is not running on node {self.cfg.node_name}')
        if not w.pod_ip:
            raise LookupError(f'pod "{name}" has no IP yet')
        return w.pod_ip

    def pod_cidrs(self) -> list[ipaddress.IPv4Network]:
        """This node's podCIDRs (its process pods' loopback block), for the pod tunnel."""
        return pod_cidrs(self.node or {})

    # ----------------------------------------------------------------- HTTP (health, metrics)
    async def _health(self, request: web.Request) -> web.Response:
        status, text = await self.health.answer(request.path, request.query)
        return web.Response(status=status, text=text)

    async def _metrics(self, request: web.Request) -> web.Response:
        """/metrics (the agent's own) and /metrics/resource (usage); the node token, as
        the kubelet asks for a token."""
        if not _authorized(request, self.cfg.token):
            return web.Response(status=401, text="Unauthorized")
        reg = self.resource_metrics if request.path == "/metrics/resource" else self.metrics.registry
        return web.Response(body=exposition(reg), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _summary(self, request: web.Request) -> web.Response:
        """The kubelet's Summary API (CPU and memory), which metrics.k8s.io is served from."""
        if not _authorized(request, self.cfg.token):
            return web.Response(status=401, text="Unauthorized")
        return web.json_response(self.usage.summary())

    def _running_containers(self) -> list[RunningContainer]:
        out = []
        for w in self.workers.values():
            source = getattr(w.runtime, "usage_source", "proctree")
            for c in w.containers.values():
                h = c.handle
                if h is not None and h.pid and not c.init:
                    out.append(RunningContainer(w.ns, w.name, w.uid, c.name, h.id, h.pid, source, h.started_at))
        return out

    def _counts(self) -> tuple[int, dict[str, int]]:
        pods = sum(1 for w in self.workers.values() if w.sandbox is not None and not w.task.done())
        states = {"running": 0, "exited": 0, "created": 0}
        for w in self.workers.values():
            for c in w.containers.values():
                if c.handle is not None:
                    states["running"] += 1
                elif c.exit is not None:
                    states["exited"] += 1
                else:
                    states["created"] += 1
        return pods, states

    def running_container(self, ns: str, name: str, container: str) -> tuple[Runtime, ContainerHandle]:
        """The runtime and the running container, for exec and attach; LookupError says why not."""
        w = self.find_worker(ns, name)
        if w is None or w.task.done() or w.runtime is None:
            raise LookupError(f'pod "{name}" is not running on node {self.cfg.node_name}')
        c = w.containers.get(container)
        if c is None:
            raise LookupError(f'container "{container}" not found in pod "{name}"')
        if c.handle is None:
            raise LookupError(f'container "{container}" in pod "{name}" is not running')
        return w.runtime, c.handle

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        if not _authorized(request, self.cfg.token):
            return web.Response(status=401, text="Unauthorized")
        ns, name, cname = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        try:
            follow, previous = query_bool(q, "follow"), query_bool(q, "previous")
            query_bool(q, "timestamps")  # checked; the log files carry no timestamps yet
            tail = query_int(q, "tailLines")
            limit = query_int(q, "limitBytes", minimum=1)
            since_seconds = query_int(q, "sinceSeconds", minimum=1)
        except BadQuery as e:
            return web.Response(status=400, text=str(e))
        w = self.find_worker(ns, name)
        if w is None or cname not in w.containers:
            return web.Response(status=404, text=f'pod "{name}" or container "{cname}" not found on this node')
        c = w.containers[cname]
        attempt = c.attempts - 1
        if previous:
            attempt -= 1
            if attempt < 0:
                return web.Response(status=400, text=f'previous terminated container "{cname}" in pod '
                                                      f'"{name}" not found')
        path = logfiles.container_log_path(self.logs_dir, ns, name, w.uid, cname, max(attempt, 0))
        since = dt.datetime.now().timestamp() - since_seconds if since_seconds else None
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        if follow and not previous:
            handle = c.handle

            def running() -> bool:
                return c.handle is not None and c.handle is handle and not w.task.done()
            async for chunk in logfiles.follow_log(path, tail_lines=tail, is_running=running):
                await resp.write(chunk)
        else:
            await resp.write(await logfiles.read_log(path, tail_lines=tail, limit_bytes=limit, since_time=since))
        await resp.write_eof()
        return resp


def _authorized(request: web.Request, token: str) -> bool:
    return request.headers.get("Authorization", "") == f"Bearer {token}"


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()
