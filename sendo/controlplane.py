"""The control loops that run beside the API server: scheduler and controllers.

They share one REST client and one set of informers, and reach the API over HTTPS.
`ControlPlaneProcess` runs them in a child process supervised by the server.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any, Callable

from .client import Client
from .controllers.base import Controller, InformerFactory
from .controllers.daemonset import DaemonSetController
from .controllers.cronjob import CronJobController
from .controllers.deployment import DeploymentController
from .controllers.disruption import DisruptionController
from .controllers.endpoints import EndpointsController
from .controllers.gc import GarbageCollector
from .controllers.job import JobController
from .controllers.namespace import NamespaceController
from .controllers.nodelifecycle import NodeLifecycleController
from .controllers.replicaset import ReplicaSetController
from .controllers.replicationcontroller import ReplicationManager
from .controllers.persistentvolume import PersistentVolumeController
from .controllers.resourcequota import ResourceQuotaController
from .controllers.serviceaccounts import ServiceAccountsController
from .controllers.statefulset import StatefulSetController
from .scheduler.scheduler import Scheduler

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
    "endpoints": EndpointsController,
    "serviceaccount": ServiceAccountsController,
    "daemonset": DaemonSetController,
    "statefulset": StatefulSetController,
    "disruption": DisruptionController,
    "job": JobController,
    "cronjob": CronJobController,
    "persistentvolume": PersistentVolumeController,
    "resourcequota": ResourceQuotaController,
}
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


class ControlPlane:
    """The selected loops sharing one REST client and one set of informers."""

    def __init__(self, url: str, token: str, ca_pem: bytes | None, controllers: str = "*",
                 options: dict[str, dict[str, Any]] | None = None):
        names = select_controllers(controllers)
        self.client = Client(url, token, ca_pem, user_agent="sendo-controller-manager")
        self.informers = InformerFactory(self.client)
        options = options or {}
        self.loops = {n: CONTROLLERS[n](self.client, self.informers, **options.get(n, {})) for n in names}

    async def start(self) -> None:
        await self.informers.start()
        for loop in self.loops.values():
            await loop.start()

    async def stop(self) -> None:
        for loop in self.loops.values():
            await loop.stop()
        await self.informers.stop()
        await self.client.close()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the server dies, even by kill -9, so a restarted
    server never finds a second set of controllers still running."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ControlPlaneProcess:
    """`sendo controllers` as a child process: started with the server, restarted if it
    exits, stopped (by its PID) with the server."""

    def __init__(self, url: str, token_file: str, ca_file: str, log_path: str, controllers: str = "*"):
        self.args = [sys.executable, "-m", "sendo.cli.main", "controllers", "--server", url,
                     "--token-file", token_file, "--ca-cert", ca_file, "--controllers", controllers]
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="controllers-supervisor")

    async def _spawn(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=asyncio.subprocess.DEVNULL,
                                                             stdout=logf, stderr=logf, preexec_fn=_die_with_parent)

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


async def run_controllers(url: str, token: str, ca_pem: bytes | None, controllers: str = "*") -> None:
    """The body of `sendo controllers`: run until SIGTERM/SIGINT."""
    from .client.rest import wait_ready
    await wait_ready(url, ca_pem)
    cp = ControlPlane(url, token, ca_pem, controllers)
    await cp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await cp.stop()

