"""The ingress controller: an HTTP(S) reverse proxy on the node's address, run by every agent.

It serves the Ingresses of its classes — IngressClasses whose ``spec.controller`` is
``sendo.dev/ingress``; at start it creates the ``sendo`` class (marked the cluster's
default class when no other class is) if it is missing. An Ingress is ours when its
``spec.ingressClassName`` (or the older ``kubernetes.io/ingress.class`` annotation)
names one of our classes, or names none and one of our classes is the default.

**Routing** (`RouteTable`), over the rules of every Ingress we serve, oldest Ingress
first when two say the same thing:

1. host: rules whose ``host`` equals the request's Host (port and case ignored),
   then the rule whose wildcard ``*.example.com`` matches it (exactly one label:
   ``a.example.com``, not ``example.com`` nor ``a.b.example.com``), then rules
   without a host. The first of these that has a matching path wins;
2. path, within those rules: an ``Exact`` path equal to the request path, else the
   longest ``Prefix`` by path elements (``/foo`` matches ``/foo`` and ``/foo/bar``,
   not ``/foobar``; a trailing slash is ignored); ``ImplementationSpecific`` is a
   ``Prefix`` (an empty one is ``/``);
3. otherwise a ``defaultBackend`` — of an Ingress whose host rules matched, else of
   the oldest Ingress that has one; otherwise 404.

**Forwarding.** A service backend is the Service (same namespace as the Ingress)
at its cluster IP and service port (by number or by name), so the request goes
through the service proxy and load balancing stays in one place. Each request opens
its own upstream connection, so the proxy's round robin spreads requests, not just
connections. Request and response bodies stream both ways (chunked or with a
length; back-pressure through ``drain``); client connections are kept alive. The
original ``Host`` is kept; ``X-Forwarded-For``, ``X-Real-IP``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Port`` are set (the
controller is the edge: incoming values are replaced); hop-by-hop headers are
dropped. Answers of its own: 404 (no rule), 503 (the Service or its port does not
exist, has no cluster IP, or a ``resource`` backend), 502 (the upstream refused or
broke the connection), 504 (no answer within ``read_timeout``).

**TLS.** The HTTPS listener picks a certificate by SNI from the ``tls`` entries of
the Ingresses we serve: exact host, then wildcard; an entry without ``hosts`` (or a
client without SNI) gets that entry's certificate, else a self-signed one made at
start. Certificates come from ``kubernetes.io/tls`` Secrets (``tls.crt`` and
``tls.key``) in the Ingress's namespace; a missing or broken Secret is logged and
recorded as a Warning Event on the Ingress.

**Status.** Once a listener is bound, the node's address goes into
``status.loadBalancer.ingress`` of every Ingress we serve (`kubectl get ing` shows
it as ADDRESS), and comes out of Ingresses we stop serving.

Changes to Ingresses, IngressClasses and Secrets apply as soon as the informers see
them; Service changes apply to the next request. A port that cannot be bound (in
use, below 1024 without root) is logged and tried again every ``BIND_RETRY``
seconds. Limits: no WebSocket/``Upgrade`` pass-through, HTTP/1.1 only, no
annotations (rewrites, redirects) are interpreted.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import errno
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ..client import ApiError, Client, kind
from ..client.events import EventRecorder
from ..client.factory import InformerFactory
from ..client.informer import obj_key
from ..kinds.networking import (
    DEFAULT_CLASS_ANNOTATION,
    ingress_class_of,
    is_default_class,
)
from ..tasks import stop_tasks
from .lbstatus import LoadBalancerStatus
from .resync import resync_loop

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CONTROLLER = "sendo.dev/ingress"
CLASS_NAME = "sendo"
TLS_SECRET_TYPE = "kubernetes.io/tls"
BIND_RETRY = 10.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
KEEPALIVE_TIMEOUT = 75.0
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})
SET_BY_US = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
                       "x-real-ip", "expect", "host", "content-length"})


def default_ports() -> tuple[int, int]:
    """80/443 for root (they need it), else 8080/8443."""
    return (80, 443) if os.geteuid() == 0 else (8080, 8443)


# ======================================================================= routing


@dataclass(frozen=True)
class Backend:
    """Where matching requests go: a Service port (by number or name) in the Ingress's namespace."""

    namespace: str
    ingress: str  # ns/name of the Ingress that says so (logs, messages)
    service: str | None = None
    port: int | str | None = None
    resource: str | None = None  # "Kind/name" of a resource backend (not served by this controller)

    def __str__(self) -> str:
        if self.service is None:
            return f"resource {self.resource}"
        return f"service {self.namespace}/{self.service}:{self.port}"


def backend_of(spec: Any, namespace: str, ingress: str) -> Backend | None:
    if not isinstance(spec, dict):
        return None
    svc = spec.get("service")
    if isinstance(svc, dict) and svc.get("name"):
        port = svc.get("port") or {}
        number = port.get("number") if isinstance(port, dict) else None
        name = port.get("name") if isinstance(port, dict) else None
        return Backend(namespace, ingress, str(svc["name"]), number if number else name)
    res = spec.get("resource")
    if isinstance(res, dict):
        return Backend(namespace, ingress, resource=f"{res.get('kind')}/{res.get('name')}")
    return None


def path_elements(path: str) -> tuple[str, ...]:
    return tuple(e for e in path.split("/") if e)


class HostRoutes:
    """The paths of every rule for one host (or for a wildcard, or for no host)."""

    def __init__(self) -> None:
        self.exact: dict[str, Backend] = {}
        self.prefixes: list[tuple[tuple[str, ...], int, Backend]] = []  # (elements, order, backend)
        self.ingresses: list[str] = []  # ns/name of the Ingresses that have rules here, oldest first

    def add_ingress(self, key: str) -> None:
        if key not in self.ingresses:
            self.ingresses.append(key)

    def add(self, path: str, path_type: str, backend: Backend, order: int) -> None:
        if path_type == "Exact":
            self.exact.setdefault(path, backend)
        else:  # Prefix, and ImplementationSpecific treated as Prefix
            self.prefixes.append((path_elements(path or "/"), order, backend))

    def finish(self) -> None:
        self.prefixes.sort(key=lambda p: (-len(p[0]), p[1]))

    def match(self, path: str, elements: tuple[str, ...]) -> Backend | None:
        hit = self.exact.get(path)
        if hit is not None:
            return hit
        for prefix, _, backend in self.prefixes:
            if elements[:len(prefix)] == prefix:
                return backend
        return None


def normalize_host(host: str | None) -> str:
    """A Host header without its port, lower case, without a trailing dot."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else host
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
        if port.isdigit() or not port:
            host = name
    return host.rstrip(".")


class RouteTable:
    """Host and path rules of a set of Ingresses (given oldest first), for `route`."""

    def __init__(self, ingresses: list[Obj] = ()):
        self.hosts: dict[str, HostRoutes] = {}
        self.wildcards: dict[str, HostRoutes] = {}  # "*.example.com" under "example.com"
        self.any = HostRoutes()
        self.defaults: dict[str, Backend] = {}  # ingress ns/name -> its defaultBackend, oldest first
        order = 0
        for ing in ingresses:
            meta, spec = ing.get("metadata") or {}, ing.get("spec") or {}
            ns, key = meta.get("namespace") or "default", obj_key(ing)
            default = backend_of(spec.get("defaultBackend"), ns, key)
            if default is not None:
                self.defaults.setdefault(key, default)
            for rule in spec.get("rules") or []:
                if not isinstance(rule, dict):
                    continue
                routes = self._routes_for(str(rule.get("host") or "").lower())
                routes.add_ingress(key)
                for p in ((rule.get("http") or {}).get("paths") or []):
                    backend = backend_of(p.get("backend"), ns, key) if isinstance(p, dict) else None
                    if backend is None:
                        continue
                    routes.add(str(p.get("path") or ""), str(p.get("pathType") or "Prefix"), backend, order)
                    order += 1
        for routes in (*self.hosts.values(), *self.wildcards.values(), self.any):
            routes.finish()

    def _routes_for(self, host: str) -> HostRoutes:
        if not host:
            return self.any
        if host.startswith("*."):
            return self.wildcards.setdefault(host[2:], HostRoutes())
        return self.hosts.setdefault(host, HostRoutes())

    def candidates(self, host: str) -> list[HostRoutes]:
        """The rule sets for a host, most specific first: exact, wildcard, no host."""
        out = []
        if host in self.hosts:
            out.append(self.hosts[host])
        if "." in host:
            w = self.wildcards.get(host.split(".", 1)[1])
            if w is not None:
                out.append(w)
        out.append(self.any)
        return out

    def route(self, host: str | None, path: str) -> Backend | None:
        host = normalize_host(host)
        elements = path_elements(path)
        tiers = self.candidates(host)
        for routes in tiers:
            hit = routes.match(path, elements)
            if hit is not None:
                return hit
        for routes in tiers:
            for key in routes.ingresses:
                if key in self.defaults:
                    return self.defaults[key]
        return next(iter(self.defaults.values()), None)


# ======================================================================= TLS


class TLSStore:
    """SNI host -> SSLContext, from the tls entries of the Ingresses served."""

    def __init__(self) -> None:
        self.hosts: dict[str, ssl.SSLContext] = {}
        self.wildcards: dict[str, ssl.SSLContext] = {}
        self.default: ssl.SSLContext | None = None

    def lookup(self, server_name: str | None) -> ssl.SSLContext | None:
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        ctx = self.hosts.get(name)
        if ctx is None and "." in name:
            ctx = self.wildcards.get(name.split(".", 1)[1])
        return ctx or self.default


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@contextlib.contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path holding data for ssl's file-only loaders: an in-memory file where Linux has them."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("sendo-ingress-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="sendo-ingress-", suffix=".pem")
    try:
        os.write(fd, data)
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


def context_from_pem(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context for a certificate chain and its key (raises ssl.SSLError, ValueError)."""
    ctx = server_context()
    with _pem_path(key_pem.rstrip(b"\n") + b"\n" + cert_pem) as path:
        ctx.load_cert_chain(path)
    return ctx


def context_from_secret(secret: Obj) -> ssl.SSLContext:
    data = secret.get("data") or {}
    if "tls.crt" not in data or "tls.key" not in data:
        raise ValueError("has no tls.crt and tls.key")
    try:
        cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    except (binascii.Error, TypeError) as e:
        raise ValueError(f"holds invalid base64: {e}") from None
    try:
        return context_from_pem(cert, key)
    except ssl.SSLError as e:
        raise ValueError(f"holds no usable certificate and key: {e.reason or e}") from None


def self_signed_pem(name: str = "sendo-ingress.invalid") -> tuple[bytes, bytes]:
    """A throwaway certificate for clients whose SNI matches no Ingress."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sendo ingress default certificate")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


# ======================================================================= the controller


class Unavailable(Exception):
    """The backend cannot be reached at all (answered with 503)."""


Resolver = Callable[[Backend], tuple[str, int]]


@dataclass
class _Listener:
    scheme: str  # http | https
    port: int
    site: web.TCPSite | None = None
    bound: int | None = None  # the port actually bound (port 0 asks for any)
    failed_at: float = 0.0
    error: str = ""


@dataclass
class _Snapshot:
    table: RouteTable = field(default_factory=RouteTable)
    served: dict[str, Obj] = field(default_factory=dict)


class IngressController:
    def __init__(self, client: Client, node_name: str, node_ip: str = "127.0.0.1", *,
                 http_port: int | None = None, https_port: int | None = None,
                 resolver: Resolver | None = None, recorder: EventRecorder | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 create_class: bool = True, informers: InformerFactory | None = None):
        dh, ds = default_ports()
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.listeners = [_Listener("http", dh if http_port is None else http_port),
                          _Listener("https", ds if https_port is None else https_port)]
        self.resolver = resolver or self.resolve_service
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.create_class = create_class
        self.recorder = recorder or EventRecorder(client, "ingress-controller", node_name)
        self._own_recorder = recorder is None
        self.ing_kind = kind("ingresses", "networking.k8s.io")
        self._own_informers = informers is None  # else the agent's, shared with the proxy and DNS
        self.informers = informers or InformerFactory(client)
        self.ingresses = self.informers.get(self.ing_kind)
        self.classes = self.informers.get(kind("ingressclasses", "networking.k8s.io"))
        self.services = self.informers.get(kind("services"))
        self.secrets = self.informers.get(kind("secrets"), field_selector=f"type={TLS_SECRET_TYPE}")
        for inf in (self.ingresses, self.classes, self.secrets):
            inf.add_handler(lambda t, o, old: self._dirty.set())
        self.snapshot = _Snapshot()
        self.tls = TLSStore()
        self._contexts: dict[str, tuple[str, ssl.SSLContext | None, str]] = {}  # secret -> (rv, ctx, error)
        self._told: set[tuple[str, str]] = set()  # (ingress uid, problem) already reported
        cert, key = self_signed_pem()
        self._fallback = context_from_pem(cert, key)
        self._https_ctx = context_from_pem(cert, key)  # the listener's: it hands each client over by SNI
        self._https_ctx.sni_callback = self._sni
        self._dirty = asyncio.Event()
        self.lb_status = LoadBalancerStatus(client, self.ing_kind, node_ip, self._dirty.set)
        self.lb_ip = self.lb_status.ip
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self, timeout: float = 30.0) -> None:
        await self.informers.start(self.ingresses, self.classes, self.services, self.secrets, timeout=timeout)
        if self.create_class:
            await self._ensure_class()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=None),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                          sock_read=self.read_timeout))
        server = web.Server(self._handle, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT,
                            auto_decompress=False, max_line_size=16384, max_field_size=16384)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        self.sync()
        await self._bind_listeners()
        self._tasks = [asyncio.create_task(self._sync_loop(), name="ingress-sync")]

    async def stop(self) -> None:
        await stop_tasks(self._tasks, "ingress task")
        await self.lb_status.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        if self._own_informers:
            await self.informers.stop()
        if self._own_recorder:
            await self.recorder.close()

    @property
    def bound(self) -> dict[str, int]:
        """scheme -> port, for the listeners that are bound."""
        return {lst.scheme: lst.bound for lst in self.listeners if lst.bound is not None}

    def describe(self) -> str:
        """One line for people: where the listeners are, or why they are not (yet)."""
        parts = []
        for lst in self.listeners:
            if lst.bound is not None:
                parts.append(f"{lst.scheme}://{self.lb_ip}:{lst.bound}")
            else:
                parts.append(f"{lst.scheme.upper()} not on {self.node_ip}:{lst.port} ({lst.error or 'not started'}; "
                             f"retrying every {BIND_RETRY:g}s)")
        return f"Ingress (class {CLASS_NAME}): " + ", ".join(parts)

    async def _ensure_class(self) -> None:
        """Create the `sendo` IngressClass if missing; the default class when no other class is."""
        if self.classes.get(CLASS_NAME) is not None:
            return
        annotations = {}
        if not any(is_default_class(c) for c in self.classes.list()):
            annotations[DEFAULT_CLASS_ANNOTATION] = "true"
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": CLASS_NAME, "annotations": annotations,
                             "labels": {"app.kubernetes.io/managed-by": "sendo"}},
                "spec": {"controller": CONTROLLER}}
        try:
            created = await self.client.create(self.classes.r, body)
            self.classes.cache.setdefault(CLASS_NAME, created)  # the watch brings it too
            log.info("ingress: created IngressClass %s (controller %s)", CLASS_NAME, CONTROLLER)
        except ApiError as e:
            if e.status != 409:  # another agent made it first
                log.warning("ingress: cannot create IngressClass %s: %s", CLASS_NAME, e)

    async def _sync_loop(self) -> None:
        async def sync_and_bind() -> None:
            self.sync()
            await self._bind_listeners()
        await resync_loop(self._dirty, sync_and_bind, "ingress controller",
                          lambda: BIND_RETRY if any(lst.site is None for lst in self.listeners) else None)

    # ----------------------------------------------------------------- desired state
    def our_classes(self) -> tuple[set[str], bool]:
        """Names of the IngressClasses we serve, and whether one of them is the default."""
        ours, default = set(), False
        for c in self.classes.list():
            if (c.get("spec") or {}).get("controller") == CONTROLLER:
                ours.add(c["metadata"]["name"])
                default = default or is_default_class(c)
        if self.classes.get(CLASS_NAME) is None:
            ours.add(CLASS_NAME)  # not created yet (or being re-created): still ours by name
        return ours, default

    def serves(self, ing: Obj, ours: set[str] | None = None, default: bool | None = None) -> bool:
        if ours is None or default is None:
            ours, default = self.our_classes()
        cls = ingress_class_of(ing)
        return cls in ours if cls else default

    def sync(self) -> None:
        """Rebuild the route table, TLS certificates and statuses from the caches."""
        ours, default = self.our_classes()
        served = [i for i in self.ingresses.list()
                  if not (i.get("metadata") or {}).get("deletionTimestamp") and self.serves(i, ours, default)]
        served.sort(key=lambda i: (i["metadata"].get("creationTimestamp") or "", obj_key(i)))
        self.snapshot = _Snapshot(RouteTable(served), {obj_key(i): i for i in served})
        self._sync_tls(served)
        self._update_status()

    def _secret_context(self, ns: str, name: str) -> tuple[ssl.SSLContext | None, str]:
        key = f"{ns}/{name}"
        secret = self.secrets.get(key)
        if secret is None:
            return None, f"TLS secret {key} not found (a {TLS_SECRET_TYPE} Secret is needed)"
        rv = secret["metadata"].get("resourceVersion", "")
        cached = self._contexts.get(key)
        if cached is not None and cached[0] == rv:
            return cached[1], cached[2]
        try:
            ctx, err = context_from_secret(secret), ""
        except ValueError as e:
            ctx, err = None, f"TLS secret {key} {e}"
        self._contexts[key] = (rv, ctx, err)
        return ctx, err

    def _sync_tls(self, served: list[Obj]) -> None:
        store = TLSStore()
        used: set[str] = set()
        for ing in served:
            ns = ing["metadata"].get("namespace") or "default"
            for entry in (ing.get("spec") or {}).get("tls") or []:
                if not isinstance(entry, dict) or not entry.get("secretName"):
                    continue
                used.add(f"{ns}/{entry['secretName']}")
                ctx, err = self._secret_context(ns, str(entry["secretName"]))
                if ctx is None:
                    self._tell(ing, "Warning", "TLSSecretInvalid", err)
                    continue
                hosts = [str(h).lower() for h in entry.get("hosts") or [] if isinstance(h, str)]
                if not hosts and store.default is None:
                    store.default = ctx
                for h in hosts:
                    if h.startswith("*."):
                        store.wildcards.setdefault(h[2:], ctx)
                    else:
                        store.hosts.setdefault(h, ctx)
        if store.default is None:
            store.default = self._fallback
        for key in [k for k in self._contexts if k not in used]:
            del self._contexts[key]
        self.tls = store

    def _tell(self, ing: Obj, type_: str, reason: str, message: str) -> None:
        mark = (f"{ing['metadata'].get('uid')}/{ing['metadata'].get('generation')}", message)
        if mark in self._told:
            return
        self._told.add(mark)
        if len(self._told) > 10_000:
            self._told.clear()
        log.warning("ingress %s: %s", obj_key(ing), message)
        self.recorder.emit({**ing, "kind": "Ingress", "apiVersion": "networking.k8s.io/v1"}, type_, reason, message)

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = self.tls.lookup(server_name)
        if ctx is not None:
            sslobj.context = ctx
        return None

    # ----------------------------------------------------------------- listeners
    async def _bind_listeners(self) -> None:
        now = time.monotonic()
        changed = False
        for lst in self.listeners:
            if lst.site is not None or (lst.failed_at and now - lst.failed_at < BIND_RETRY * 0.9):
                continue
            site = web.TCPSite(self._runner, self.node_ip, lst.port, backlog=1024, reuse_address=True,
                               ssl_context=self._https_ctx if lst.scheme == "https" else None)
            try:
                await site.start()
            except OSError as e:
                told = bool(lst.failed_at)
                lst.failed_at, lst.error = now, _bind_error(e, lst.port)
                (log.debug if told else log.warning)(
                    "ingress: cannot listen for %s on %s:%s: %s (retrying every %gs)",
                    lst.scheme.upper(), self.node_ip, lst.port, lst.error, BIND_RETRY)
                continue
            lst.site, lst.failed_at, lst.error = site, 0.0, ""
            server = getattr(site, "_server", None)
            socks = getattr(server, "sockets", None) or []
            lst.bound = socks[0].getsockname()[1] if socks else lst.port
            changed = True
            log.info("ingress: serving %s on %s:%s", lst.scheme.upper(), self.node_ip, lst.bound)
        if changed:
            self._update_status()

    # ----------------------------------------------------------------- status
    def _update_status(self) -> None:
        """Ingresses this controller serves get the node's address while it listens."""
        listening = any(lst.site is not None for lst in self.listeners)
        served = self.snapshot.served
        self.lb_status.sync(self.ingresses.list(), add=lambda ing: listening and obj_key(ing) in served,
                            remove=lambda ing: obj_key(ing) not in served)

    # ----------------------------------------------------------------- backends
    def resolve_service(self, b: Backend) -> tuple[str, int]:
        """The cluster IP and port of a service backend, from the Service cache."""
        if b.service is None:
            raise Unavailable(f"{b} backends are not served by this ingress controller")
        svc = self.services.get(f"{b.namespace}/{b.service}")
        if svc is None:
            raise Unavailable(f"service {b.namespace}/{b.service} not found")
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName" or not ip or ip == "None":
            raise Unavailable(f"service {b.namespace}/{b.service} has no cluster IP")
        for p in spec.get("ports") or []:
            if (p.get("protocol") or "TCP") != "TCP":
                continue
            if (isinstance(b.port, int) and p.get("port") == b.port) or \
                    (isinstance(b.port, str) and p.get("name") == b.port):
                return ip, int(p["port"])
        raise Unavailable(f"service {b.namespace}/{b.service} has no port {b.port!r}")

    # ----------------------------------------------------------------- requests
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        backend = self.snapshot.table.route(host, request.rel_url.raw_path)
        if backend is None:
            return _answer(404, "404 page not found")
        try:
            ip, port = self.resolver(backend)
        except Unavailable as e:
            log.debug("ingress: %s %s%s: %s", request.method, host, request.rel_url.raw_path, e)
            return _answer(503, f"503 Service Unavailable: {e}")
        return await self._forward(request, backend, ip, port)

    def _upstream_headers(self, request: web.BaseRequest) -> CIMultiDict:
        drop = set(HOP_BY_HOP) | SET_BY_US
        for value in request.headers.getall("Connection", []):
            drop.update(v.strip().lower() for v in value.split(","))
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
        host = request.headers.get("Host")
        if host:
            headers["Host"] = host
            headers["X-Forwarded-Host"] = host
        if request.headers.get("Content-Length") and "chunked" not in \
                request.headers.get("Transfer-Encoding", "").lower():
            headers["Content-Length"] = request.headers["Content-Length"]
        client_ip = request.remote or ""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        headers["X-Forwarded-For"] = client_ip
        headers["X-Real-IP"] = client_ip
        headers["X-Forwarded-Proto"] = "https" if request.secure else "http"
        if sockname:
            headers["X-Forwarded-Port"] = str(sockname[1])
        return headers

    async def _forward(self, request: web.BaseRequest, backend: Backend, ip: str, port: int) -> web.StreamResponse:
        assert self._session is not None
        if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        url = URL(f"http://{netloc}{request.rel_url.raw_path_qs}", encoded=True)
        data = request.content if request.body_exists else None
        try:
            upstream = await self._session.request(
                request.method, url, headers=self._upstream_headers(request), data=data,
                allow_redirects=False, skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent",
                                                          "Content-Type"))
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as e:
            log.info("ingress: %s timed out: %s", backend, e)
            return _answer(504, "504 Gateway Timeout")
        except (aiohttp.ClientError, OSError) as e:
            log.info("ingress: %s failed: %s", backend, e)
            return _answer(502, "502 Bad Gateway")
        try:
            return await self._relay(request, upstream)
        finally:
            upstream.close()

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        drop = set(HOP_BY_HOP) | {"content-length"}
        for value in upstream.headers.getall("Connection", []):
            drop.update(v.strip().lower() for v in value.split(","))
        for k, v in upstream.headers.items():
            if k.lower() not in drop:
                resp.headers.add(k, v)
        length = upstream.headers.get("Content-Length")
        chunked = "chunked" in upstream.headers.get("Transfer-Encoding", "").lower()
        if length is not None and length.isdigit() and not chunked:
            resp.content_length = int(length)
        try:
            await resp.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await resp.write(chunk)
            await resp.write_eof()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            # the upstream broke off after the answer began: all we can do is cut the client off too
            log.info("ingress: upstream answer broke off: %s", e)
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionError, RuntimeError) as e:  # the client went away
            log.debug("ingress: client went away: %s", e)
        return resp


def _answer(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"Cache-Control": "no-store"})


def _bind_error(e: OSError, port: int) -> str:
    if e.errno == errno.EADDRINUSE:
        return "address already in use (another process or another sendo on this machine holds it)"
    if e.errno == errno.EACCES and port < 1024:
        return "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE"
    if e.errno == errno.EADDRNOTAVAIL:
        return "the address is not local to this machine"
    return e.strerror or str(e)
