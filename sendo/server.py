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
import ssl
from dataclasses import dataclass, field

import uvicorn

from .api.app import APIServer, User
from .api.audit import AuditConfig
from .api.inflight import InflightLimit
from .api.crds import CRDRegistrar
from .api.bootstrap_policy import bootstrap_rbac
from .api.errors import APIError
from .api.admission import CONTAINER_NETWORK, NODE_BLOCK_PREFIX, POD_NETWORK, AdmissionOptions, kubernetes_service_objects
from .api.tokens import TokenSigner
from .client.leaderelection import Timings
from .kinds.registry import builtin_registry
from .pki import ensure_client_cert, ensure_tls
from .private import private_dir, write_private
from .serving import (APIServer as HTTPServer, default_connection_limit, free_port, guarded_protocol, listen_socket,
                      remembered_port)
from .store import default_url, encryption, open_store

__all__ = ["Server", "ServerConfig", "free_port", "kubeconfig", "read_or_create_secret", "share_identity"]

log = logging.getLogger(__name__)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class ServerConfig:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 6443
    port_fallback: bool = False  # the port was not chosen by the user: take the next free one if it is taken
    advertise_port: int | None = None  # where pods reach the API (the `kubernetes` Service): a balancer's port
    datastore: str | None = None  # a store URL (sendo.store.registry); None: SQLite under the server dir
    controllers: bool = True
    controller_names: str = "*"  # which loops run, as `--controllers` says (controlplane.select_controllers)
    controllers_in_process: bool = False  # run the loops in this process (tests, debugging)
    # seconds a connection may wait for its next request: Kubernetes' 90 s, longer than clients keep
    # idle pooled connections (aiohttp 15 s, httpx 5 s), so a client never reuses one the server is closing
    idle_timeout: float = 90.0
    first_request_timeout: float = 30.0  # seconds from the end of the TLS handshake to the first request
    handshake_timeout: float = 30.0  # seconds a client has to finish its TLS handshake
    max_connections: int = 0  # open client connections at most; 0: what the fd limit leaves room for
    max_requests_inflight: int = 400  # short read-only requests served at once per priority level (api/inflight.py)
    max_mutating_requests_inflight: int = 200  # … and short writes
    audit: AuditConfig = field(default_factory=AuditConfig)  # the audit log (api/audit.py); off by default
    # the control loops run in one server only, chosen by a Lease (client/leaderelection.py):
    # None: when the store can be shared (not SQLite); the timings are sendo's fast defaults
    leader_elect: bool | None = None
    election: Timings = field(default_factory=Timings)

    @property
    def elects(self) -> bool:
        if self.leader_elect is not None:
            return self.leader_elect
        return bool(self.datastore) and not self.datastore.startswith("sqlite:")
    hpa_sync_period: float | None = None  # seconds between HPA syncs (None: Kubernetes' 15 s)
    # node loss (kube-controller-manager's and kube-apiserver's flags of the same names)
    node_monitor_grace_period: float = 40.0  # seconds without a Lease renewal or status before a node is Unknown
    default_not_ready_toleration_seconds: int = 300  # pods' default toleration of not-ready:NoExecute
    default_unreachable_toleration_seconds: int = 300  # pods' default toleration of unreachable:NoExecute

    # the address other machines reach this server at (the join command, the `kubernetes`
    # Service's endpoints); default: the listen address, or this machine's hostname if that is a wildcard
    advertise_address: str | None = None
    tls_sans: list[str] = field(default_factory=list)  # more names/addresses for the serving certificate
    # snapshots on a cron schedule ("": none), the newest `snapshot_retention` scheduled ones kept (store/schedule.py)
    snapshot_schedule: str = ""
    snapshot_retention: int = 5
    cluster_cidr: str = str(POD_NETWORK)  # node IPAM: nodes' podCIDRs, a /node_cidr_mask_size block each
    node_cidr_mask_size: int = NODE_BLOCK_PREFIX
    container_cidr: str = str(CONTAINER_NETWORK)  # node IPAM for container pods: a /24 of it per node

    @property
    def url(self) -> str:
        """Where clients on this machine reach the API (kubeconfig, controllers, `sendo up`'s agent)."""
        return f"https://{_url_host('127.0.0.1' if self.host in WILDCARD_HOSTS else self.host)}:{self.port}"

    @property
    def advertised_host(self) -> str:
        if self.advertise_address:
            return self.advertise_address
        return socket.gethostname() if self.host in WILDCARD_HOSTS else self.host

    @property
    def advertise_url(self) -> str:
        """Where agents on other machines reach the API: the URL of the join command."""
        return f"https://{_url_host(self.advertised_host)}:{self.port}"

    @property
    def server_dir(self) -> str:
        return os.path.join(self.data_dir, "server")


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _url_host(h: str) -> str:
    return f"[{h}]" if ":" in h else h


def read_or_create_secret(path: str) -> str:
    """A token kept in a 0600 file (in a 0700 directory), created on first start."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        private_dir(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


# What makes servers one cluster: the same tokens, CA and serving certificate, ServiceAccount
# signing key and encryption keys for Secrets at rest (paths under a server dir; certs are public)
IDENTITY_FILES = {"admin-token": 0o600, "node-token": 0o600, "sa.key": 0o600, encryption.CONFIG_NAME: 0o600,
                  "tls/ca.key": 0o600, "tls/server.key": 0o600, "tls/ca.crt": 0o644, "tls/server.crt": 0o644}


def share_identity(source_server_dir: str, server_dirs: list[str], host: str = "127.0.0.1") -> None:
    """Make the cluster's identity once in `source_server_dir` (what a first server start would
    make) and give every one of `server_dirs` the same files, so several servers on one store
    accept each other's tokens and ServiceAccount tokens, serve one certificate the clients'
    CA trusts, and open each other's sealed Secrets."""
    private_dir(source_server_dir, own=True)
    for name in ("admin-token", "node-token"):
        read_or_create_secret(os.path.join(source_server_dir, name))
    ensure_tls(os.path.join(source_server_dir, "tls"), [host])
    TokenSigner.load_or_create(os.path.join(source_server_dir, "sa.key"))
    encryption.load_or_create(source_server_dir)
    for d in server_dirs:
        if os.path.abspath(d) == os.path.abspath(source_server_dir):
            continue
        private_dir(os.path.dirname(d))
        private_dir(d, own=True)
        private_dir(os.path.join(d, "tls"), own=True)
        for rel, mode in IDENTITY_FILES.items():
            with open(os.path.join(source_server_dir, rel), "rb") as f:
                write_private(os.path.join(d, rel), f.read(), mode)


class Server:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        private_dir(cfg.data_dir)
        private_dir(cfg.server_dir, own=True)
        self.admin_token = read_or_create_secret(os.path.join(cfg.server_dir, "admin-token"))
        self.node_token = read_or_create_secret(os.path.join(cfg.server_dir, "node-token"))
        self.tls = ensure_tls(os.path.join(cfg.server_dir, "tls"),
                              [cfg.host, cfg.advertised_host, *cfg.tls_sans])
        # signs ServiceAccount tokens; servers sharing one store must share this file
        self.sa_signer = TokenSigner.load_or_create(os.path.join(cfg.server_dir, "sa.key"))
        self.ca_pem = self.tls.ca_pem()
        self.credentials = self._component_credentials()
        self.store = open_store(cfg.datastore or default_url(os.path.join(cfg.server_dir, "state.db")))
        self._record_datastore()
        # Secrets sealed at rest, on by default: the key is in server/encryption-config.yaml (0600)
        transformer, self.encryption_config = encryption.load_or_create(cfg.server_dir)
        if hasattr(self.store, "transformer"):
            self.store.transformer = transformer
        else:
            log.warning("the %s store does not seal Secrets at rest yet", type(self.store).__name__)
        self.registry = builtin_registry()
        # the admin is in system:masters; the node token names its node in a header (api/app.py)
        tokens = {self.admin_token: User("admin", ["system:masters", "system:authenticated"])}
        self.api = APIServer(self.store, self.registry, tokens, self.node_token, self.sa_signer,
                             auditor=cfg.audit.open(),
                             admission_options=AdmissionOptions(cfg.default_not_ready_toleration_seconds,
                                                                cfg.default_unreachable_toleration_seconds,
                                                                cfg.cluster_cidr, cfg.node_cidr_mask_size,
                                                                cfg.container_cidr or str(CONTAINER_NETWORK)))
        self.api.inflight = InflightLimit(cfg.max_requests_inflight, cfg.max_mutating_requests_inflight)
        self.api.encryption_config = self.encryption_config if hasattr(self.store, "reseal") else None
        self.crds = CRDRegistrar(self.store, self.registry, self.api.api)
        self._started: set[str] = set()  # start-up steps done, each a /readyz check
        for step in ("poststarthook/bootstrap-system-namespaces", "crd-informer-synced"):
            self.api.health.add(step, lambda step=step: None if step in self._started else "not finished")
        self.shutting_down = False  # set on SIGTERM with a shutdown delay: not ready, still serving
        self.api.health.add("shutdown", lambda: "shutting down" if self.shutting_down else None)
        self._uvicorn: HTTPServer | None = None
        self._tasks: list[asyncio.Task] = []
        self.control = None
        from .store.schedule import SnapshotSchedule
        self._snapshot_requests: asyncio.Task | None = None  # sendo.dev Snapshots asked for through the API
        self.snapshots = SnapshotSchedule(cfg.snapshot_schedule, cfg.snapshot_retention, cfg.data_dir,
                                          cfg.datastore, self._snapshot_event)

    def _component_credentials(self):
        """The scheduler's and controllers' own identities (controlplane.component_identities):
        a client certificate each, from the cluster CA, in server/components/ — written unless
        valid ones are there. Each server of a cluster writes its own (they share the CA)."""
        from .controlplane import Credentials, component_identities
        ca_dir = os.path.dirname(self.tls.ca_cert)
        if not os.path.exists(os.path.join(ca_dir, "ca.key")):
            log.warning("no cluster CA key in %s: the control loops use the admin token", ca_dir)
            return Credentials(token=self.admin_token)
        directory = private_dir(os.path.join(self.cfg.server_dir, "components"), own=True)
        for name, (user, groups) in component_identities().items():
            ensure_client_cert(ca_dir, os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key"),
                               user, groups)
        return Credentials(directory=directory)

    def _record_datastore(self) -> None:
        """Which store this data dir's server uses, for the commands that work on it (`sendo snapshot`)."""
        path = os.path.join(self.cfg.server_dir, "datastore")
        if self.cfg.datastore:
            write_private(path, self.cfg.datastore.encode() + b"\n")
        elif os.path.exists(path):
            os.unlink(path)

    async def start(self) -> None:
        cfg = self.cfg
        sock = listen_socket(cfg.host, cfg.port, cfg.port_fallback)  # first: a taken port fails before any work
        cfg.port = sock.getsockname()[1]
        try:
            if cfg.controllers and not cfg.controllers_in_process:
                # the child imports its code and dials the API while this process opens the
                # store: the control loops are ready about as soon as the API is
                await self._spawn_controllers()
            await self.store.start()
            try:
                await self._prepare_schema()
            except BaseException:
                await self.store.close()
                raise
            await self._bootstrap()
            await bootstrap_rbac(self.api.api, self.registry)
            await self.api.start()
            self._started.add("poststarthook/bootstrap-system-namespaces")
            await self.crds.start()  # stored CRDs are served before the first request
            self._started.add("crd-informer-synced")
        except BaseException:
            sock.close()
            if self.control is not None:
                await self.control.stop()
            raise
        limit = cfg.max_connections or default_connection_limit()
        config = uvicorn.Config(self.api.app, host=cfg.host, port=cfg.port, log_level="warning",
                                lifespan="off", access_log=False, timeout_graceful_shutdown=1, interface="asgi3",
                                ws="wsproto",  # the WebSocket implementation port-forward is built on
                                http=guarded_protocol(limit, cfg.first_request_timeout),
                                timeout_keep_alive=cfg.idle_timeout,
                                ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key,
                                # client certificates the cluster CA signed identify users (sendo user add)
                                ssl_cert_reqs=ssl.CERT_OPTIONAL, ssl_ca_certs=self.tls.ca_cert)
        self._uvicorn = HTTPServer(config, [sock], cfg.handshake_timeout)
        self._tasks.append(asyncio.create_task(self._uvicorn.serve(), name="uvicorn"))
        while not self._uvicorn.started:
            if self._tasks[0].done():
                self._tasks[0].result()
                raise RuntimeError("API server stopped during start-up")
            await asyncio.sleep(0.01)  # poll uvicorn's start-up flag
        if self.cfg.controllers and self.cfg.controllers_in_process:
            from .controlplane import ControlPlane, controller_options
            self.control = ControlPlane(self.cfg.url, self.credentials, self.ca_pem, self.cfg.controller_names,
                                        controller_options(self.cfg.node_monitor_grace_period,
                                                           self.cfg.hpa_sync_period, *self.signing_files),
                                        election=self.cfg.election if self.cfg.elects else None)
            await self.control.serve_http()
            await self.control.start()
        self.snapshots.start()
        self._snapshot_requests = asyncio.create_task(self._serve_snapshot_requests(), name="snapshot-requests")
        self._write_components()

    async def _spawn_controllers(self) -> None:
        from .controlplane import ControlPlaneProcess
        self.control = ControlPlaneProcess(self.cfg.url, os.path.join(self.cfg.server_dir, "admin-token"),
                                           self.tls.ca_cert, os.path.join(self.cfg.server_dir, "controllers.log"),
                                           self.cfg.controller_names,
                                           election=self.cfg.election if self.cfg.elects else None,
                                           metrics_port=remembered_port(os.path.join(self.cfg.server_dir,
                                                                                     "controllers-port")),
                                           hpa_sync_period=self.cfg.hpa_sync_period,
                                           node_monitor_grace_period=self.cfg.node_monitor_grace_period,
                                           signing=self.signing_files,
                                           credentials_dir=self.credentials.directory)
        await self.control.start()

    async def _serve_snapshot_requests(self) -> None:
        """sendo.dev Snapshots (kinds/snapshot.py): each new one is taken by the first server to claim it."""
        import orjson
        r = self.registry.get("sendo.dev", "v1alpha1", "snapshots")
        while True:
            try:
                kvs, rev = await self.store.list(r.prefix())
                for kv in kvs:
                    await self._take_requested(r, orjson.loads(kv.value))
                watch = self.store.watch(r.prefix(), rev)
                try:
                    async for ev in watch:
                        if ev.type == "create":
                            await self._take_requested(r, orjson.loads(ev.kv.value))
                finally:
                    watch.close()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a compacted watch, a store hiccup: list again
                log.warning("snapshot requests: %s; listing again", e)
            await asyncio.sleep(1.0)  # before listing again

    async def _take_requested(self, r, obj: dict) -> None:
        import datetime as dt
        from .store import snapshot
        if (obj.get("status") or {}).get("phase"):
            return
        api, name, me = self.api.api, obj["metadata"]["name"], self.cfg.url

        def claim(o: dict) -> dict | None:
            if (o.get("status") or {}).get("phase"):
                return None  # another server has it
            o["status"] = {"phase": "Running", "server": me}
            return o
        try:
            await api.modify(r, None, name, claim, subresource="status")
            if (await api.get(r, None, name)).get("status", {}).get("server") != me:
                return
        except APIError:  # deleted meanwhile
            return
        try:
            info = await asyncio.to_thread(snapshot.save, self.cfg.data_dir, self.cfg.datastore)
            status = {"phase": "Completed", "server": me, "path": info.path, "revision": info.revision,
                      "keys": info.keys, "size": info.size,
                      "completionTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            log.warning("snapshot %s requested through the API: %s", name, info.path)
        except Exception as e:
            status = {"phase": "Failed", "server": me, "message": str(e)}
        try:
            await api.modify(r, None, name, lambda o: {**o, "status": status}, subresource="status")
        except APIError:
            pass  # deleted meanwhile: the file stays

    async def _snapshot_event(self, taken) -> None:
        """An Event in kube-system for each scheduled snapshot: `kubectl get events -n kube-system`."""
        import datetime as dt
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if taken.info is not None:
            kind, reason = "Normal", "SnapshotSaved"
            message = (f"scheduled snapshot {taken.info.path} at revision {taken.info.revision} "
                       f"({taken.info.keys} keys, {taken.info.size} bytes); pruned: "
                       f"{', '.join(taken.pruned) or 'none'}")
        else:
            kind, reason, message = "Warning", "SnapshotFailed", f"scheduled snapshot failed: {taken.error}"
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": f"sendo-snapshot.{secrets.token_hex(8)}", "namespace": "kube-system"},
                 "involvedObject": {"apiVersion": "v1", "kind": "Namespace", "name": "kube-system"},
                 "reason": reason, "message": message, "type": kind, "count": 1,
                 "firstTimestamp": now, "lastTimestamp": now,
                 "source": {"component": "sendo-server", "host": self.cfg.advertised_host},
                 "reportingComponent": "sendo-server", "reportingInstance": self.cfg.url}
        await self.api.api.create(self.registry.get("", "v1", "events"), "kube-system", event)

    def join_command(self, node_name: str = "NAME") -> str:
        """What another machine runs to join this cluster as a node: the node token
        authenticates its agent (system:node); the CA file must be copied there first."""
        # agents need the cluster's container pod range: their pods' blocks come from it
        extra = f" --container-cidr {self.cfg.container_cidr}" \
            if self.cfg.container_cidr and self.cfg.container_cidr != str(CONTAINER_NETWORK) else ""
        return (f"sendo agent --server {self.cfg.advertise_url} --token {self.node_token} "
                f"--ca-cert {self.tls.ca_cert} --node-name {node_name}{extra}")

    @property
    def signing_files(self) -> tuple[str, str]:
        """The cluster CA's certificate and key: what the csrsigning loop issues certificates with."""
        return self.tls.ca_cert, os.path.join(os.path.dirname(self.tls.ca_cert), "ca.key")

    @property
    def components_file(self) -> str:
        return os.path.join(self.cfg.server_dir, "components.json")

    def _write_components(self) -> None:
        """Where this server's components answer (/metrics, /readyz), for `sendo status`."""
        import json
        comps = {"apiserver": self.cfg.url}
        if self.control is not None:
            comps["controllers"] = self.control.metrics_url
        tmp = self.components_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(comps, f)
        os.replace(tmp, self.components_file)

    async def _prepare_schema(self) -> None:
        """The store at this sendo's schema version (store/schema.py): an older one is migrated
        after a snapshot is written; a newer one stops the start before anything is written."""
        from .store import schema, snapshot
        cfg = self.cfg

        async def pre_migration_snapshot(found: int, target: int) -> str:
            info = await asyncio.to_thread(snapshot.save, cfg.data_dir, cfg.datastore, None,
                                           f"{snapshot.PRE_UPGRADE}v{found}-v{target}-")
            schema.write_record(cfg.server_dir, info.path, found, target, cfg.datastore or "")
            return info.path
        await schema.prepare(self.store, pre_migration_snapshot)

    async def _bootstrap(self) -> None:
        """What every cluster has: the system namespaces, and the `kubernetes` Service in
        `default` with endpoints that point at this server (updated if its port moved).
        Several servers may start at once on one store: what another created first is kept."""
        api = self.api.api
        ns = self.registry.get("", "v1", "namespaces")

        async def create(r, namespace, obj) -> None:
            try:
                await api.create(r, namespace, obj)
            except APIError as e:
                if e.code != 409:  # AlreadyExists: another server made it a moment ago
                    raise
        for name in SYSTEM_NAMESPACES:
            if await self.store.get(ns.key(None, name)) is None:
                await create(ns, None, {"metadata": {"name": name}})
        for plural, obj in kubernetes_service_objects(self.cfg.advertise_address or self.cfg.host,
                                                      self.cfg.advertise_port or self.cfg.port).items():
            group = "discovery.k8s.io" if plural == "endpointslices" else ""
            r = self.registry.get(group, "v1", plural)
            kv = await self.store.get(r.key("default", "kubernetes"))
            if kv is None:
                await create(r, "default", obj)
            elif plural != "services":
                await api.update(r, "default", "kubernetes", obj)

    async def stop(self) -> None:
        await self.snapshots.stop()
        if self._snapshot_requests is not None:
            self._snapshot_requests.cancel()
            await asyncio.gather(self._snapshot_requests, return_exceptions=True)
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
        await self.api.api.webhooks.close()
        await self.api.stop()
        await self.store.close()
        if self.api.auditor is not None:
            self.api.auditor.log.close()


def kubeconfig(url: str, token: str, ca_pem: bytes, name: str = "sendo") -> dict:
    ca = base64.b64encode(ca_pem).decode()
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": url, "certificate-authority-data": ca}}],
            "users": [{"name": f"{name}-admin", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                     "namespace": "default"}}],
            "preferences": {}}
