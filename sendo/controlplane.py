"""The control loops that run beside the API server: scheduler and controllers.

They share one REST client and one set of informers, and reach the API over HTTPS.
`ControlPlaneProcess` runs them in a child process supervised by the server.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .client import Client
from .client.leaderelection import LeaderElector, Timings
from .controllers.addons import AddonController
from .controllers.base import Controller, InformerFactory
from .controllers.clusterroleaggregation import ClusterRoleAggregationController
from .controllers.daemonset import DaemonSetController
from .controllers.cronjob import CronJobController
from .controllers.csrsigning import CSRSigningController
from .controllers.deployment import DeploymentController
from .controllers.function import FunctionController
from .controllers.disruption import DisruptionController
from .controllers.endpoints import EndpointsController
from .controllers.gc import GarbageCollector
from .controllers.hpa import HPAController
from .controllers.job import JobController
from .controllers.namespace import NamespaceController
from .controllers.nodelifecycle import DEFAULT_GRACE_SECONDS, NodeLifecycleController
from .controllers.podgc import PodGCController
from .controllers.replicaset import ReplicaSetController
from .controllers.replicationcontroller import ReplicationManager
from .controllers.persistentvolume import PersistentVolumeController
from .controllers.resourcequota import ResourceQuotaController
from .controllers.serviceaccounts import ServiceAccountsController
from .controllers.statefulset import StatefulSetController
from .controllers.tainteviction import TaintEvictionController
from .observe import METRICS_CONTENT_TYPE, Health, exposition
from .scheduler.scheduler import Scheduler
from .tasks import die_with_parent

log = logging.getLogger(__name__)

# Every control loop by name, in start order. A loop is a class taking (client,
# informers, **options); adding one means one module and one line here. The names
# follow kube-controller-manager's --controllers where a counterpart exists.
CONTROLLERS: dict[str, Callable[..., Controller]] = {
    "scheduler": Scheduler,
    "deployment": DeploymentController,
    "replicaset": ReplicaSetController,
    "replicationcontroller": ReplicationManager,
    "garbagecollector": GarbageCollector,
    "namespace": NamespaceController,
    "nodelifecycle": NodeLifecycleController,
    "tainteviction": TaintEvictionController,
    "podgc": PodGCController,
    "endpoints": EndpointsController,
    "serviceaccount": ServiceAccountsController,
    "daemonset": DaemonSetController,
    "statefulset": StatefulSetController,
    "disruption": DisruptionController,
    "job": JobController,
    "cronjob": CronJobController,
    "persistentvolume": PersistentVolumeController,
    "horizontalpodautoscaling": HPAController,
    "resourcequota": ResourceQuotaController,
    "clusterrole-aggregation": ClusterRoleAggregationController,
    "addons": AddonController,
    "function": FunctionController,
    "csrsigning": CSRSigningController,
}
# Who each loop acts as: the scheduler as the user system:kube-scheduler, every controller
# as a ServiceAccount of kube-system named as kube-controller-manager's
# --use-service-account-credentials names it (the default ClusterRole
# system:controller:<name> is bound to it: api/component_policy.py); the shared informers
# and the leader election as system:kube-controller-manager. Each identity is a client
# certificate the server writes at start (Credentials).
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
CONTROLLER_NAMESPACE = "kube-system"
SERVICE_ACCOUNTS: dict[str, str] = {
    "deployment": "deployment-controller",
    "replicaset": "replicaset-controller",
    "replicationcontroller": "replication-controller",
    "garbagecollector": "generic-garbage-collector",
    "namespace": "namespace-controller",
    "nodelifecycle": "node-controller",
    "tainteviction": "taint-eviction-controller",
    "podgc": "pod-garbage-collector",
    "endpoints": "endpoint-controller",
    "serviceaccount": "service-account-controller",
    "daemonset": "daemon-set-controller",
    "statefulset": "statefulset-controller",
    "disruption": "disruption-controller",
    "job": "job-controller",
    "cronjob": "cronjob-controller",
    "persistentvolume": "persistent-volume-binder",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
    "resourcequota": "resourcequota-controller",
    "clusterrole-aggregation": "clusterrole-aggregation",  # Kubernetes: …-controller, too long for a CN
    "addons": "addon-manager",
    "function": "function-controller",
    "csrsigning": "certificate-controller",
}
SHARED = "kube-controller-manager"  # the credentials' file name of the informers' identity


def identity_file(loop: str) -> str:
    """The name of the credentials (DIR/<name>.crt and .key) a loop acts with."""
    return "kube-scheduler" if loop == "scheduler" else SERVICE_ACCOUNTS.get(loop, SHARED)


def component_identities() -> dict[str, tuple[str, list[str]]]:
    """Credentials' file name -> (user, groups) of every identity the control loops use."""
    sa_groups = ["system:serviceaccounts", f"system:serviceaccounts:{CONTROLLER_NAMESPACE}"]
    return {SHARED: (CONTROLLER_MANAGER_USER, []), "kube-scheduler": (SCHEDULER_USER, []),
            **{sa: (f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{sa}", sa_groups)
               for sa in SERVICE_ACCOUNTS.values()}}


@dataclass(frozen=True)
class Credentials:
    """How the control loops authenticate: one bearer ``token`` for every loop (an admin
    token, when `sendo controllers` is run by hand), or a ``directory`` of client
    certificates, one per identity (``<name>.crt`` and ``<name>.key``, see
    ``component_identities``), which the server writes at every start."""
    token: str = ""
    directory: str = ""

    def cert(self, name: str) -> tuple[str, str] | None:
        if not self.directory:
            return None
        return os.path.join(self.directory, f"{name}.crt"), os.path.join(self.directory, f"{name}.key")

    def missing(self, loops: list[str]) -> list[str]:
        """The credentials files the given loops need that are not there."""
        names = {SHARED, *(identity_file(n) for n in loops)}
        return sorted(p for n in names for p in (self.cert(n) or ()) if not os.path.exists(p))


DEFAULT_METRICS_PORT = 10257  # kube-controller-manager's secure port; sendo serves plain HTTP on loopback
# Loops that `*` leaves out (kube-controller-manager has such opt-in ones); name them to run them.
OFF_BY_DEFAULT: frozenset[str] = frozenset()


class UnknownControllerError(ValueError):
    """A --controllers entry that names no loop."""


def select_controllers(spec: str = "*") -> list[str]:
    """The loops a --controllers value turns on, in start order.

    As kube-controller-manager reads it: a comma-separated list where `*` means every
    loop that is on by default, `name` turns a loop on and `-name` turns it off (which
    wins over `*`). Unknown names are refused with the list of known ones.
    """
    on: set[str] = set()
    off: set[str] = set()
    star = False
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            star = True
            continue
        name = item[1:] if item.startswith("-") else item
        if name not in CONTROLLERS:
            raise UnknownControllerError(
                f"unknown controller {name!r} in --controllers {spec!r}; known controllers: "
                + ", ".join(CONTROLLERS))
        (off if item.startswith("-") else on).add(name)
    return [n for n in CONTROLLERS
            if n not in off and (n in on or (star and n not in OFF_BY_DEFAULT))]


def controller_options(node_monitor_grace_period: float = DEFAULT_GRACE_SECONDS,
                       hpa_sync_period: float | None = None, signing_cert_file: str | None = None,
                       signing_key_file: str | None = None) -> dict[str, dict[str, Any]]:
    """Loop name -> its keyword options, from the flags of `sendo controllers`/`server`/`up`."""
    options: dict[str, dict[str, Any]] = {"nodelifecycle": {"grace_seconds": node_monitor_grace_period}}
    if hpa_sync_period:
        options["horizontalpodautoscaling"] = {"sync_period": hpa_sync_period}
    if signing_cert_file and signing_key_file:
        options["csrsigning"] = {"ca_cert_file": signing_cert_file, "ca_key_file": signing_key_file}
    return options


LEADER_LEASE = "sendo-controller-manager"  # kube-system/<this>: who runs the loops when several servers serve


class ControlPlane:
    """The selected loops sharing one REST client and one set of informers.

    With ``election`` (several servers on one store), every server's control plane lists and
    watches, but the loops run only in the one that holds the ``LEADER_LEASE`` Lease: a
    follower's caches are warm, so a new leader acts as soon as it takes over."""

    def __init__(self, url: str, credentials: "Credentials | str", ca_pem: bytes | None, controllers: str = "*",
                 options: dict[str, dict[str, Any]] | None = None, election: Timings | None = None,
                 identity: str = ""):
        names = select_controllers(controllers)
        creds = Credentials(token=credentials) if isinstance(credentials, str) else credentials
        if missing := creds.missing(names):
            raise FileNotFoundError(f"no credentials for the control loops: {', '.join(missing)}")
        self.url, self.ca_pem, self.credentials = url, ca_pem, creds
        self._clients: dict[str, Client] = {}
        self.client = self.client_for(SHARED)  # informers and leader election
        self.informers = InformerFactory(self.client)
        options = options or {}
        if "addons" in names:  # the add-on manager lists this process's /metrics among the components
            options = {**options, "addons": {"controllers_url": lambda: self.metrics_url, **options.get("addons", {})}}
        self.loops = {n: CONTROLLERS[n](self.client_for(identity_file(n)), self.informers, **options.get(n, {}))
                      for n in names}
        self.elector = (LeaderElector(self.client, LEADER_LEASE, identity or _identity(), timings=election)
                        if election else None)
        # /metrics: every loop's work queue, plus what a loop adds (the scheduler's attempts)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_QueueCollector(self.loops))  # type: ignore[arg-type]
        for loop in self.loops.values():
            for c in loop.collectors():
                self.registry.register(c)
        self.health = Health()
        self.health.add("informer-sync", self._informers_synced)
        for n, loop in self.loops.items():
            self.health.add(f"controller/{n}", lambda loop=loop: self._loop_health(loop), live=True)
        self._web: web.AppRunner | None = None
        self.metrics_url = ""

    def client_for(self, name: str) -> Client:
        """The REST client acting as the identity ``name`` (with a token: the one shared client)."""
        if not self.credentials.directory:
            name = SHARED
        if name not in self._clients:
            self._clients[name] = Client(self.url, self.credentials.token, self.ca_pem,
                                         user_agent=f"sendo-controller-manager/{name}",
                                         cert=self.credentials.cert(name))
        return self._clients[name]

    def _loop_health(self, loop: Controller) -> str | None:
        """A loop's workers run once this control plane leads (a follower's do not yet)."""
        if loop.running() or (self.elector is not None and not self.elector.is_leader):
            return None
        return "its workers stopped"

    def _informers_synced(self) -> str | None:
        waiting = [i.r.plural for i in self.informers._informers.values() if not i.synced.is_set()]
        return f"not synced yet: {', '.join(sorted(set(waiting)))}" if waiting else None


    async def start(self) -> None:
        await self.informers.start()
        if self.elector is not None:
            await self.elector.acquire()
        for loop in self.loops.values():
            await loop.start()

    async def run(self) -> None:
        """Start, then lead until leadership is lost (return) or forever without an election."""
        await self.start()
        if self.elector is None:
            await asyncio.Event().wait()
        else:
            await self.elector.hold()

    async def serve_http(self, host: str = "127.0.0.1", port: int = 0, fallback: bool = False) -> str:
        """/metrics, /healthz, /livez, /readyz of the control loops (kube-controller-manager's
        port 10257 serves the same); returns the base URL. With ``fallback``, a port another
        process holds is replaced by a free one (logged)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        for path in ("/healthz", "/livez", "/readyz", "/healthz/{check}", "/livez/{check}", "/readyz/{check}"):
            app.router.add_get(path, self._health)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        site = web.TCPSite(self._web, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            if not fallback:
                raise
            log.warning("controllers: cannot listen on %s:%d (%s); using a free port", host, port, e)
            site = web.TCPSite(self._web, host, 0)
            await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.metrics_url = f"http://{host}:{bound}"
        return self.metrics_url

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=exposition(self.registry), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        status, text = await self.health.answer(request.path, request.query)
        return web.Response(status=status, text=text)

    async def stop(self) -> None:
        if self._web is not None:
            await self._web.cleanup()
        for loop in self.loops.values():
            await loop.stop()
        if self.elector is not None:
            await self.elector.release()
        await self.informers.stop()
        for client in self._clients.values():
            await client.close()


def _identity() -> str:
    import os
    import socket
    import uuid
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class _QueueCollector:
    """client-go's workqueue metrics, labelled by the loop's name."""

    def __init__(self, loops: dict[str, Controller]):
        self.loops = loops

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("workqueue_depth", "Current depth of workqueue", labels=["name"])
        adds = CounterMetricFamily("workqueue_adds", "Total number of adds handled by workqueue", labels=["name"])
        retries = CounterMetricFamily("workqueue_retries", "Total number of retries handled by workqueue",
                                      labels=["name"])
        for name, loop in self.loops.items():
            depth.add_metric([name], len(loop.queue))
            adds.add_metric([name], loop.queue.adds)
            retries.add_metric([name], loop.queue.retries)
        yield from (depth, adds, retries)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ControlPlaneProcess:
    """`sendo controllers` as a child process: started with the server, restarted if it
    exits, stopped (by its PID) with the server."""

    def __init__(self, url: str, token_file: str, ca_file: str, log_path: str, controllers: str = "*",
                 election: Timings | None = None, identity: str = "", metrics_port: int = 0,
                 hpa_sync_period: float | None = None, node_monitor_grace_period: float = DEFAULT_GRACE_SECONDS,
                 signing: tuple[str, str] | None = None, credentials_dir: str = ""):
        """``credentials_dir`` (the components' client certificates) replaces ``token_file``."""
        # the port of /metrics and the health checks is chosen once, so it stays across restarts
        self.metrics_port = metrics_port or free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        auth = ["--credentials-dir", credentials_dir] if credentials_dir else ["--token-file", token_file]
        self.args = [sys.executable, "-m", "sendo.cli.main", "controllers", "--server", url,
                     *auth, "--ca-cert", ca_file, "--controllers", controllers,
                     "--metrics-port", str(self.metrics_port),
                     "--node-monitor-grace-period", f"{node_monitor_grace_period:.6f}"]
        if hpa_sync_period:
            self.args += ["--hpa-sync-period", str(hpa_sync_period)]
        if signing is not None:  # the CA that signs approved CSRs (csrsigning)
            self.args += ["--cluster-signing-cert-file", signing[0], "--cluster-signing-key-file", signing[1]]
        if election is not None:
            self.args += ["--leader-elect", "--leader-elect-lease-duration", str(election.lease_duration),
                          "--leader-elect-renew-deadline", str(election.renew_deadline),
                          "--leader-elect-retry-period", str(election.retry_period)]
            if identity:
                self.args += ["--leader-elect-identity", identity]
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="controllers-supervisor")

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the child's /readyz (informers synced, loops running) answered 200 within
        ``timeout`` seconds: `sendo up` says it is up only once pods would be scheduled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                try:
                    async with session.get(self.metrics_url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return True
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.05)  # poll interval of a deadline-bounded start-up wait
        return False

    async def _spawn(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=asyncio.subprocess.DEVNULL,
                                                             stdout=logf, stderr=logf, preexec_fn=die_with_parent)

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping:
            code = await self.proc.wait()
            if self._stopping:
                return
            log.warning("controllers exited with %s; restarting (log: %s)", code, self.log_path)
            await asyncio.sleep(backoff)  # back-off before restarting a crashing child
            backoff = min(backoff * 2, 30)
            await self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _exit_at_once(reason: str) -> None:
    """Leadership lost (called from the lease watchdog's thread): end the process now, whatever
    its event loop is doing, so no loop acts once another candidate may lead; the server
    starts a fresh candidate."""
    log.critical("leadership lost (%s): exiting at once", reason)
    for h in logging.getLogger().handlers:
        h.flush()
    os._exit(1)


async def run_controllers(url: str, token: "Credentials | str", ca_pem: bytes | None, controllers: str = "*",
                          election: Timings | None = None, identity: str = "",
                          metrics_port: int | None = None, options: dict[str, dict[str, Any]] | None = None) -> None:
    """The body of `sendo controllers`: run until SIGTERM/SIGINT, or until leadership is lost
    (exit status 1: the server starts a fresh candidate, so no loop acts on a stale view)."""
    from .client.rest import wait_ready
    await wait_ready(url, ca_pem)
    cp = ControlPlane(url, token, ca_pem, controllers, options, election=election, identity=identity)
    if cp.elector is not None:
        cp.elector.on_lost = _exit_at_once
    if metrics_port is not None:
        await cp.serve_http("127.0.0.1", metrics_port, fallback=metrics_port == DEFAULT_METRICS_PORT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(cp.run(), name="control-plane")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (running, stopping):
            t.cancel()
        await asyncio.gather(running, stopping, return_exceptions=True)
        await cp.stop()
    if running.done() and not running.cancelled() and running.exception() is None:
        log.warning("leadership lost: exiting")
        raise SystemExit(1)
    if running.done() and not running.cancelled() and running.exception() is not None:
        raise running.exception()

