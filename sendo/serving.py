"""The API's listening socket and the uvicorn server on it, hardened against idle clients.

* The port: an explicit one is kept or start-up fails loudly. The socket is bound with
  SO_REUSEADDR, as asyncio and uvicorn bind theirs, so the connections a crashed server
  left in TIME_WAIT do not make its own port look taken. Only an unset port falls back
  to the next free one.
* Idle connections: a TLS handshake must finish within ``handshake_timeout`` (uvicorn
  passes no deadline of its own), a first request must come within
  ``first_request_timeout``, and later ones within uvicorn's keep-alive timeout.
* A cap on open connections: beyond it a new connection is closed at once and a log
  line says so, so file descriptors are never all taken by clients.
* Client certificates: when the server asks for them (``ssl_cert_reqs=CERT_OPTIONAL`` and
  the cluster CA), a certificate the CA signed is verified by the TLS handshake and its
  subject, CN (the user) and O (the groups), is put in every request's scope state under
  ``CLIENT_CERT`` for the API's authentication. A client without one still connects.
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)

FALLBACK_PORTS = 100  # an unset port tries the default and the next 99, then any free one
FD_RESERVE = 256  # descriptors kept for the store, agents' pods, logs and outgoing connections
CLIENT_CERT = "sendo.client_cert"  # scope["state"] key: (user, groups) of a verified client certificate


def cert_subject(peercert: dict | None) -> tuple[str, list[str]] | None:
    """(CN, [O, …]) of a certificate as ``SSLSocket.getpeercert()`` gives it (verified ones only)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return (cn, orgs) if cn else None


class PortInUse(OSError):
    pass


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
    except OSError:
        s.close()
        raise
    return s


def listen_socket(host: str, port: int, fallback: bool = False) -> socket.socket:
    """A bound socket for the API on ``port``; with ``fallback`` the next free port if it is taken."""
    ports = [port] + ([*range(port + 1, port + FALLBACK_PORTS), 0] if fallback else [])
    for p in ports:
        try:
            return _bind(host, p)
        except OSError as e:
            if not fallback:
                raise PortInUse(e.errno, f"cannot listen on {host}:{port}: {e.strerror}. Another process "
                                         "holds it: stop that process or choose another --port") from e
    raise PortInUse(f"no free port on {host} from {port}")


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """A port a server could bind now: ``preferred`` or the next free one after it, else any."""
    with listen_socket(host, preferred or 0, fallback=bool(preferred)) as s:
        return s.getsockname()[1]


def remembered_port(path: str, host: str = "127.0.0.1") -> int:
    """A port for a listener that has no fixed one (an agent's, the controllers' /metrics):
    the one it had last time, written in ``path``, while it is free (else the next free
    one), so what scrapes it, a Prometheus job, finds it again after a restart."""
    try:
        with open(path) as f:
            previous: int | None = int(f.read().strip())
    except (OSError, ValueError):
        previous = None
    port = free_port(host, previous)
    if port != previous:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, path)
    return port


def default_connection_limit() -> int:
    """Leave FD_RESERVE descriptors of the process's limit for everything but clients."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 65536


class _CappedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol with a connection cap and an idle deadline from the first byte."""

    limit = 0  # set per server by guarded_protocol()
    first_request_timeout = 30.0
    _refused = 0
    _logged = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limit:
            transport.abort()
            cls = type(self)
            cls._refused += 1
            now = time.monotonic()
            if now - cls._logged >= 10:
                peer = transport.get_extra_info("peername")
                log.warning("API connection limit of %d reached: closed %d new connection(s), the last from %s",
                            self.limit, cls._refused, peer)
                cls._logged, cls._refused = now, 0
            return
        super().connection_made(transport)
        subject = cert_subject(transport.get_extra_info("peercert"))
        if subject is not None:  # every request on this connection is this certificate's
            self.app_state = {**self.app_state, CLIENT_CERT: subject}
        # a client that connects and never sends a request is closed too (uvicorn only times out
        # the wait between requests); a loaded client may be slow to send its first one
        self.timeout_keep_alive_task = self.loop.call_later(self.first_request_timeout,
                                                            self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # refused in connection_made: uvicorn never saw it
        super().connection_lost(exc)


def guarded_protocol(limit: int, first_request_timeout: float) -> type[asyncio.Protocol]:
    return type("APIHTTPProtocol", (_CappedHTTP,),
                {"limit": limit, "first_request_timeout": first_request_timeout})


class APIServer(uvicorn.Server):
    """uvicorn serving on sockets we bound, with a deadline for each TLS handshake."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], handshake_timeout: float):
        super().__init__(config)
        self.listen_sockets = sockets
        self.handshake_timeout = handshake_timeout
        self.install_signal_handlers = lambda: None  # the CLI owns signals

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # lifespan and state only: we open the listeners below
        self.started = False  # uvicorn says so already; not until the sockets listen
        config, loop = self.config, asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore
                                              app_state=self.lifespan.state, _loop=loop)
        for sock in self.listen_sockets:
            self.servers.append(await loop.create_server(
                protocol, sock=sock, ssl=config.ssl, backlog=config.backlog,
                ssl_handshake_timeout=self.handshake_timeout if config.ssl else None))
        self.started = True
