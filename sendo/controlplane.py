"""The control loops that run beside the API server: scheduler and controllers.

They share one REST client and one set of informers, and reach the API over HTTPS.
`ControlPlaneProcess` runs them in a child process supervised by the server.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .client import Client
from .controllers.base import InformerFactory

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, url: str, token: str, ca_pem: bytes | None, node_grace_seconds: float = 40.0):
        from .controllers.deployment import DeploymentController
        from .controllers.endpoints import EndpointsController
        from .controllers.gc import GarbageCollector
        from .controllers.namespace import NamespaceController
        from .controllers.nodelifecycle import NodeLifecycleController
        from .controllers.replicaset import ReplicaSetController
        from .controllers.replicationcontroller import ReplicationManager
        from .controllers.serviceaccounts import ServiceAccountsController
        from .scheduler.scheduler import Scheduler

        self.client = Client(url, token, ca_pem, user_agent="sendo-controller-manager")
        self.informers = InformerFactory(self.client)
        self.loops = [
            Scheduler(self.client, self.informers),
            DeploymentController(self.client, self.informers),
            ReplicaSetController(self.client, self.informers),
            ReplicationManager(self.client, self.informers),
            GarbageCollector(self.client, self.informers),
            NamespaceController(self.client, self.informers),
            NodeLifecycleController(self.client, self.informers, grace_seconds=node_grace_seconds),
            EndpointsController(self.client, self.informers),
            ServiceAccountsController(self.client, self.informers),
        ]

    async def start(self) -> None:
        await self.informers.start()
        for loop in self.loops:
            await loop.start()

    async def stop(self) -> None:
        for loop in self.loops:
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

    def __init__(self, url: str, token_file: str, ca_file: str, log_path: str):
        self.args = [sys.executable, "-m", "sendo.cli.main", "controllers", "--server", url,
                     "--token-file", token_file, "--ca-cert", ca_file]
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


async def run_controllers(url: str, token: str, ca_pem: bytes | None) -> None:
    """The body of `sendo controllers`: run until SIGTERM/SIGINT."""
    from .client.rest import wait_ready
    await wait_ready(url, ca_pem)
    cp = ControlPlane(url, token, ca_pem)
    await cp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await cp.stop()

