"""`sendo server`: the store, the API server, and the control loops that run beside it.

The scheduler and controllers run in a child process (`sendo controllers`), as
kube-controller-manager and kube-scheduler do, so the API server and the control
loops each get a core; they talk to the API over HTTPS like any other client (rule
1 of the design: no back doors). The server restarts the child if it dies.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import socket
from dataclasses import dataclass

import uvicorn

from .api.app import APIServer, User
from .api.crds import CRDRegistrar
from .api.admission import kubernetes_service_objects
from .api.tokens import TokenSigner
from .kinds.registry import builtin_registry
from .pki import ensure_tls
from .store.sqlite import SQLiteStore

log = logging.getLogger(__name__)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerConfig:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 6443
    controllers: bool = True
    controller_names: str = "*"  # which loops run, as `--controllers` says (controlplane.select_controllers)
    controllers_in_process: bool = False  # run the loops in this process (tests, debugging)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def server_dir(self) -> str:
        return os.path.join(self.data_dir, "server")


def read_or_create_secret(path: str) -> str:
    """A token kept in a 0600 file, created on first start."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """preferred if it can be bound, else the next free one after it, else any."""
    for port in ([*range(preferred, preferred + 100)] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise OSError("no free port")


class Server:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        os.makedirs(cfg.server_dir, exist_ok=True)
        self.admin_token = read_or_create_secret(os.path.join(cfg.server_dir, "admin-token"))
        self.node_token = read_or_create_secret(os.path.join(cfg.server_dir, "node-token"))
        self.tls = ensure_tls(os.path.join(cfg.server_dir, "tls"), [cfg.host])
        # signs ServiceAccount tokens; servers sharing one store must share this file
        self.sa_signer = TokenSigner.load_or_create(os.path.join(cfg.server_dir, "sa.key"))
        self.ca_pem = self.tls.ca_pem()
        self.store = SQLiteStore(os.path.join(cfg.server_dir, "state.db"))
        self.registry = builtin_registry()
        tokens = {self.admin_token: User("admin", ["system:masters"]),
                  self.node_token: User("system:node", ["system:nodes"])}
        self.api = APIServer(self.store, self.registry, tokens, self.node_token, self.sa_signer)
        self.crds = CRDRegistrar(self.store, self.registry, self.api.api)
        self._uvicorn: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self.control = None

    async def start(self) -> None:
        await self.store.start()
        await self._bootstrap()
        await self.crds.start()  # stored CRDs are served before the first request
        config = uvicorn.Config(self.api.app, host=self.cfg.host, port=self.cfg.port, log_level="warning",
                                lifespan="off", access_log=False, timeout_graceful_shutdown=1, interface="asgi3",
                                ws="wsproto",  # the WebSocket implementation port-forward is built on
                                ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key)
        self._uvicorn = uvicorn.Server(config)
        self._uvicorn.install_signal_handlers = lambda: None  # the CLI owns signals
        self._tasks.append(asyncio.create_task(self._uvicorn.serve(), name="uvicorn"))
        while not self._uvicorn.started:
            if self._tasks[0].done():
                self._tasks[0].result()
                raise RuntimeError("API server stopped during start-up")
            await asyncio.sleep(0.01)  # poll uvicorn's start-up flag
        if self.cfg.controllers and self.cfg.controllers_in_process:
            from .controlplane import ControlPlane
            self.control = ControlPlane(self.cfg.url, self.admin_token, self.ca_pem, self.cfg.controller_names)
            await self.control.start()
        elif self.cfg.controllers:
            from .controlplane import ControlPlaneProcess
            self.control = ControlPlaneProcess(self.cfg.url, os.path.join(self.cfg.server_dir, "admin-token"),
                                               self.tls.ca_cert, os.path.join(self.cfg.server_dir,
                                                                              "controllers.log"),
                                               self.cfg.controller_names)
            await self.control.start()

    async def _bootstrap(self) -> None:
        """What every cluster has: the system namespaces, and the `kubernetes` Service in
        `default` with endpoints that point at this server (updated if its port moved)."""
        api = self.api.api
        ns = self.registry.get("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            if await self.store.get(ns.key(None, name)) is None:
                await api.create(ns, None, {"metadata": {"name": name}})
        for plural, obj in kubernetes_service_objects(self.cfg.host, self.cfg.port).items():
            group = "discovery.k8s.io" if plural == "endpointslices" else ""
            r = self.registry.get(group, "v1", plural)
            kv = await self.store.get(r.key("default", "kubernetes"))
            if kv is None:
                await api.create(r, "default", obj)
            elif plural != "services":
                await api.update(r, "default", "kubernetes", obj)

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            self._uvicorn.force_exit = True
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                t.cancel()
        await self.crds.stop()
        await self.store.close()


def kubeconfig(url: str, token: str, ca_pem: bytes, name: str = "sendo") -> dict:
    ca = base64.b64encode(ca_pem).decode()
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": url, "certificate-authority-data": ca}}],
            "users": [{"name": f"{name}-admin", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                     "namespace": "default"}}],
            "preferences": {}}
