"""Each pod's identity: a ServiceAccount token bound to the pod, kept fresh on disk.

What the kubelet does with the projected `kube-api-access` volume, for the process
runtime: for every pod on the node the agent asks the API for a token of the pod's
ServiceAccount (`spec.serviceAccountName`) bound to the pod (TokenRequest with a
`boundObjectRef`, so the token dies with the pod), and writes

    <pod dir>/var/run/secrets/kubernetes.io/serviceaccount/token      (0600)
                                                           ca.crt     the cluster CA
                                                           namespace

Each file is replaced atomically. The token is renewed once 80% of its lifetime has
passed (and retried with back-off if that fails). A pod with
`automountServiceAccountToken: false` (or whose ServiceAccount says so, unless the pod
says true) gets no token.

Containers find the directory in `$SENDO_SERVICEACCOUNT_DIR`, and the API server in
`$KUBERNETES_SERVICE_HOST` / `$KUBERNETES_SERVICE_PORT` — the server's real address
taken from the agent's own server URL, which always works (the `kubernetes`
Service's ClusterIP only works where the service proxy could bind it). The official
clients' in-cluster config then works with the directory's file names, e.g.
`InClusterConfigLoader(token_filename=d + "/token", cert_filename=d + "/ca.crt")`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from ..client import ApiError, Client, Informer, kind
from ..tasks import stop_tasks
from .env import ConfigError

log = logging.getLogger(__name__)
Obj = dict[str, Any]

TOKEN_DIR = os.path.join("var", "run", "secrets", "kubernetes.io", "serviceaccount")
EXPIRATION_SECONDS = 3600
REFRESH_AT = 0.8  # of the token's lifetime
SWEEP_EVERY = 1.0  # seconds between looks at what needs renewing or retrying
RETRY_MIN, RETRY_MAX = 1.0, 60.0
WAITING = "waiting for the service account token"


@dataclass
class _Entry:
    uid: str
    namespace: str
    name: str  # the pod's
    account: str  # the ServiceAccount's
    pod_dir: str
    automount: bool | None  # the pod's own say, None when it has none
    first: asyncio.Event = field(default_factory=asyncio.Event)  # set once the first attempt ended
    mounted: bool | None = None  # None: not decided yet; False: no token for this pod
    refresh_at: float = 0.0
    expires: float = 0.0
    error: str | None = None
    failures: int = 0
    fetching: asyncio.Task | None = None

    @property
    def dir(self) -> str:
        return os.path.join(self.pod_dir, TOKEN_DIR)


def _write(path: str, data: bytes, mode: int) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def _expiry(ts: Any, default: float) -> float:
    import datetime as dt
    try:
        return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return default


class PodIdentity:
    """The tokens of the pods on one node.

    ``track(pod)`` starts getting a pod's token (idempotent); ``await ready(pod)``
    waits until the first attempt has ended; ``env(pod)`` is the variables for the
    pod's containers (ConfigError while its token is not there). ``alive(uid)`` tells
    when a pod has left the node; ``on_ready(uid)`` is called once it is decided
    whether a pod gets a token, and the token (if any) is written.
    """

    def __init__(self, client: Client, server: str, ca_pem: bytes | None, pods_dir: str,
                 alive: Callable[[str], bool], on_ready: Callable[[str], None] | None = None,
                 expiration_seconds: int = EXPIRATION_SECONDS):
        self.client = client
        self.ca_pem = ca_pem
        self.pods_dir = pods_dir
        self.alive = alive
        self.on_ready = on_ready
        self.expiration_seconds = expiration_seconds
        self.entries: dict[str, _Entry] = {}
        # ServiceAccounts from a watch, so a pod's start does not wait for a GET of its account
        self.accounts = Informer(client, kind("serviceaccounts"))
        self._sweeper: asyncio.Task | None = None
        url = urlsplit(server)
        self.service_env = {"KUBERNETES_SERVICE_HOST": url.hostname or "127.0.0.1",
                            "KUBERNETES_SERVICE_PORT": str(url.port or (443 if url.scheme == "https" else 80))}
        self.service_env["KUBERNETES_SERVICE_PORT_HTTPS"] = self.service_env["KUBERNETES_SERVICE_PORT"]

    # ----------------------------------------------------------------- for the pod worker
    def track(self, pod: Obj) -> _Entry:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        e = self.entries.get(meta["uid"])
        if e is not None:
            return e
        automount = spec.get("automountServiceAccountToken")
        e = _Entry(meta["uid"], meta["namespace"], meta["name"],
                   spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
                   os.path.join(self.pods_dir, meta["uid"]), automount if isinstance(automount, bool) else None)
        self.entries[e.uid] = e
        if e.automount is False:
            e.mounted = False
            e.first.set()
        else:
            os.makedirs(e.pod_dir, exist_ok=True)
            self._fetch_soon(e)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="serviceaccount-tokens")
        return e

    async def ready(self, pod: Obj, timeout: float = 30.0) -> None:
        e = self.track(pod)
        try:
            await asyncio.wait_for(e.first.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def env(self, pod: Obj) -> dict[str, str]:
        e = self.track(pod)
        if e.mounted is False:
            return dict(self.service_env)
        if e.mounted and e.expires > time.time():
            return {**self.service_env, "SENDO_SERVICEACCOUNT_DIR": e.dir}
        raise ConfigError(e.error or f"{WAITING} of {e.namespace}/{e.account}")

    def forget(self, uid: str) -> None:
        e = self.entries.pop(uid, None)
        if e is not None and e.fetching is not None:
            e.fetching.cancel()

    async def start(self) -> None:
        self.accounts.start()
        try:
            await asyncio.wait_for(self.accounts.synced.wait(), 30)
        except asyncio.TimeoutError:
            log.warning("service accounts not listed yet; tokens will look them up one by one")

    async def _account(self, namespace: str, name: str) -> Obj:
        sa = self.accounts.get(f"{namespace}/{name}") if self.accounts.synced.is_set() else None
        return sa if sa is not None else await self.client.get(kind("serviceaccounts"), namespace, name)

    async def close(self) -> None:
        await self.accounts.stop()
        tasks = [t for t in [self._sweeper, *(e.fetching for e in self.entries.values())] if t is not None]
        await stop_tasks(tasks, "token task")
        self.entries.clear()

    # ----------------------------------------------------------------- getting tokens
    def _fetch_soon(self, e: _Entry) -> None:
        if e.fetching is None or e.fetching.done():
            e.fetching = asyncio.create_task(self._fetch(e), name=f"sa-token-{e.namespace}/{e.name}")

    async def _fetch(self, e: _Entry) -> None:
        first = e.mounted is None
        try:
            if e.mounted is None and e.automount is None:
                sa = await self._account(e.namespace, e.account)
                if sa.get("automountServiceAccountToken") is False:
                    e.mounted, e.error = False, None
            if e.mounted is not False:
                await self._renew(e)
                e.mounted, e.error, e.failures = True, None, 0
            if first and self.on_ready is not None:
                self.on_ready(e.uid)
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            self._failed(e, f"cannot get a token of serviceaccount {e.namespace}/{e.account}: "
                            f"{err.body.get('message', err)}")
            if err.status == 404 and not self.alive(e.uid):
                self.forget(e.uid)
        except Exception as err:  # an unreachable server, a full disk: try again later
            self._failed(e, f"cannot get a token of serviceaccount {e.namespace}/{e.account}: {err}")
        finally:
            e.first.set()

    async def _renew(self, e: _Entry) -> None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": self.expiration_seconds,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": e.name, "uid": e.uid}}}
        url = f"/api/v1/namespaces/{e.namespace}/serviceaccounts/{e.account}/token"
        asked = time.time()
        tr = await self.client.request("POST", url, body=body)
        token = (tr.get("status") or {}).get("token")
        if not token:
            raise RuntimeError("the API answered the TokenRequest without a token")
        expires = _expiry(tr["status"].get("expirationTimestamp"), asked + self.expiration_seconds)
        if not os.path.isdir(e.pod_dir):
            return  # the pod's directory is gone: the pod was cleaned up meanwhile
        await asyncio.to_thread(self._write_files, e, token)
        e.expires = expires
        e.refresh_at = asked + REFRESH_AT * (expires - asked)

    def _write_files(self, e: _Entry, token: str) -> None:
        os.makedirs(e.dir, exist_ok=True)
        if self.ca_pem:
            _write(os.path.join(e.dir, "ca.crt"), self.ca_pem, 0o644)
        _write(os.path.join(e.dir, "namespace"), e.namespace.encode(), 0o644)
        _write(os.path.join(e.dir, "token"), token.encode(), 0o600)

    def _failed(self, e: _Entry, message: str) -> None:
        e.error = message
        e.failures += 1
        delay = min(RETRY_MAX, RETRY_MIN * 2 ** (e.failures - 1))
        e.refresh_at = time.time() + delay
        log.warning("%s (retrying in %.0fs)", message, delay)

    async def _sweep(self) -> None:
        """Renew tokens that are due, drop pods that left the node."""
        while self.entries:
            await asyncio.sleep(SWEEP_EVERY)  # renewal check period
            now = time.time()
            for e in list(self.entries.values()):
                if not self.alive(e.uid) or (e.mounted and not os.path.isdir(e.pod_dir)):
                    self.forget(e.uid)
                elif e.mounted is not False and now >= e.refresh_at:
                    self._fetch_soon(e)
