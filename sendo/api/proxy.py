"""The proxy subresources: `pods/proxy`, `services/proxy` and `nodes/proxy`.

URLs, as kube-apiserver serves them:

* ``/api/v1/namespaces/<ns>/pods/<[scheme:]name[:port]>/proxy/<path>``: the pod's port
  (a number or a container port's name; without one, the first port a container
  declares, else 80);
* ``/api/v1/namespaces/<ns>/services/<[scheme:]name[:port]>/proxy/<path>``: one ready
  address of the service's Endpoints, picked at random, on the endpoint port whose name
  is the one given (a number names the service port with that number);
* ``/api/v1/nodes/<[scheme:]name[:port]>/proxy/<path>``: the node's agent (the kubelet's
  place), or another port of the node's address.

The request (any method, its query, headers and body) is relayed as HTTP/1.1 and the
answer streamed back as it comes. Hop-by-hop headers (RFC 9110 section 7.6.1 and the
ones `Connection` names) are dropped both ways, and so are the caller's credentials
(`Authorization`, impersonation), as kube-apiserver's authentication filter removes
them. A pod is reached through the agent of its node (the `/portForward` tunnel of
`sendo/agent/portforward.py`): the API server never dials a pod address itself, so a
pod on another host, or inside a container network, is reached where its route is.
Failures are Status objects: 404 (no such pod, service, endpoints or node), 400 (a
name or port that does not parse), 503 (no endpoints available, or the port does not
answer: "error trying to reach service: ...").

With the `https` scheme the relay speaks TLS inside the tunnel and, as kube-apiserver
does for pods and services, does not verify the target's certificate.

Not served: connection upgrades (WebSockets) through the proxy (refused with a Status).
"""
from __future__ import annotations

import ipaddress
import random
import re
import ssl
from typing import Any, AsyncIterator

import h11
import orjson
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ..kinds.discovery import SERVICE_NAME_LABEL
from ..kinds.base import Resource
from . import errors
from .agentlink import AgentLink, agent_endpoint, node_agent
from .errors import APIError
from .http import Request
from .portforward import AgentTunnel, TCPTunnel, Tunnel, TunnelError

KINDS = ("pods", "services", "nodes")
# <api root>/<version>[/namespaces/<ns>]/<plural>/<id>/proxy, then the path to relay
_URL = re.compile(r"^(/api/v1(?:/namespaces/[^/]+)?/(?:pods|services|nodes)/[^/]+/proxy)(/.*)?$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "proxy-connection"}
CREDENTIALS = ("authorization", "impersonate-")  # consumed by the API server, never relayed
DEFAULT_PORT = 80


def split(path: str) -> tuple[str, str] | None:
    """(the subresource's URL, the path to relay, "" for none) of a proxy URL, else None."""
    m = _URL.match(path)
    if m is None:
        return None
    return m.group(1), m.group(2) or ""


def split_id(raw: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` → (scheme, name, port), as Kubernetes' SplitSchemeNamePort
    reads it; a 400 when it does not parse."""
    parts = raw.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        scheme, name, port = "", "", ""
    if not name or scheme not in ("", "http", "https"):
        raise errors.bad_request(f"invalid request {raw!r}: use [scheme:]name[:port]")
    return scheme, name, port


def port_number(raw: str, what: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise errors.bad_request(f"invalid port {raw!r} for {what}: must be a number from 1 to 65535 "
                                 "or the name of a port")
    return int(raw)


def pod_port(pod: dict, raw: str) -> int:
    """The port a pods/proxy URL names: a number, a container port's name, or (none
    given) the first port a container declares, else 80."""
    declared = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    if not raw:
        return int(declared[0]["containerPort"]) if declared else DEFAULT_PORT
    if not raw.isdigit():
        for p in declared:
            if p.get("name") == raw:
                return int(p["containerPort"])
    return port_number(raw, f'pod "{pod["metadata"]["name"]}"')



def pick_endpoint(endpoints: dict, port_name: str, service: str,
                  rng: random.Random | Any = random) -> tuple[dict, int]:
    """(address, port) of a ready endpoint whose port has the name asked for; subsets and
    addresses are tried from a random start, as kube-apiserver does."""
    subsets = [s for s in endpoints.get("subsets") or [] if s.get("addresses")]
    start = rng.randrange(len(subsets)) if subsets else 0
    for i in range(len(subsets)):
        ss = subsets[(start + i) % len(subsets)]
        for p in ss.get("ports") or []:
            if (p.get("name") or "") == port_name:
                addresses = ss["addresses"]
                return addresses[rng.randrange(len(addresses))], int(p["port"])
    raise APIError(503, f'no endpoints available for service "{service}"', "ServiceUnavailable")


def relayed_headers(raw: list[tuple[bytes, bytes]], host: str, client: str | None) -> list[tuple[bytes, bytes]]:
    """The caller's headers to send on: no hop-by-hop ones, no credentials, the target's Host."""
    named = {v.strip().lower() for k, vs in raw if k.lower() == b"connection" for v in vs.decode("latin-1").split(",")}
    out = []
    forwarded = ""
    for k, v in raw:
        name = k.decode("latin-1").lower()
        if name in HOP_BY_HOP or name in named or name == "host" or name.startswith(CREDENTIALS):
            continue
        if name == "x-forwarded-for":
            forwarded = v.decode("latin-1") + ", "
            continue
        out.append((k, v))
    out.append((b"host", host.encode()))
    if client:
        out.append((b"x-forwarded-for", (forwarded + client).encode()))
    return out


def answered_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = {v.strip().lower() for k, vs in headers if k.lower() == b"connection"
             for v in vs.decode("latin-1").split(",")}
    return [(k, v) for k, v in headers if k.decode("latin-1").lower() not in HOP_BY_HOP | named]


# ----------------------------------------------------------------- where a request goes


def _core(server: AgentLink, plural: str) -> Resource:
    r = server.registry.get("", "v1", plural)
    assert r is not None  # a built-in kind
    return r


class TLSTunnel:
    """TLS over another tunnel (the `https` scheme), with memory BIOs: the certificate is
    not verified, as kube-apiserver does not verify a pod's or a service's."""

    def __init__(self, inner: Tunnel, server_name: str | None = None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        self._inner, self._in, self._out = inner, ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)

    async def _flush(self) -> None:
        if data := self._out.read():
            await self._inner.send(data)

    async def _fill(self) -> None:
        data = await self._inner.recv()
        if data is None:
            self._in.write_eof()
        else:
            self._in.write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                await self._flush()
                return
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError as e:
                raise TunnelError(f"TLS handshake failed: {e}")

    async def send(self, data: bytes) -> None:
        self._tls.write(data)
        await self._flush()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def recv(self) -> bytes | None:
        while True:
            try:
                return self._tls.read(64 * 1024) or None
            except ssl.SSLWantReadError:
                await self._flush()
                if self._in.eof:
                    return None
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return None

    async def close(self) -> None:
        await self._inner.close()


class Destination:
    """Where to relay: opens one tunnel per request (TLS inside it for `https`)."""

    def __init__(self, host: str, port: int, open_tunnel, authorization: str | None = None):
        self.host, self.port, self._open, self.authorization = host, port, open_tunnel, authorization
        self.tls = False

    async def open(self) -> Tunnel:
        tunnel = await self._open()
        if not self.tls:
            return tunnel
        secure = TLSTunnel(tunnel)
        try:
            await secure.handshake()
        except BaseException:
            await tunnel.close()
            raise
        return secure


async def _pod_destination(server: AgentLink, ns: str, pod: dict, port: int) -> Destination:
    name = pod["metadata"]["name"]
    node = (pod.get("spec") or {}).get("nodeName")
    ip = (pod.get("status") or {}).get("podIP")
    if not node or not ip:
        raise errors.bad_request(f'pod "{name}" has no address yet (it is not running on a node)')
    base = await node_agent(server, node)

    async def open_tunnel() -> Tunnel:
        return await AgentTunnel.open(base, server.node_token, ns, name, port, node)
    return Destination(ip, port, open_tunnel)


async def pod_destination(server: AgentLink, ns: str, raw: str) -> Destination:
    _, name, port = split_id(raw)
    pod = await server.api.get(_core(server, "pods"), ns, name)
    return await _pod_destination(server, ns, pod, pod_port(pod, port))


async def _slice_endpoints(server: AgentLink, ns: str, service: str) -> dict:
    """A Service's ready EndpointSlice endpoints in the shape of an Endpoints object: what
    the node proxies route by, so a slice written by another owner than the endpoints
    controller (a function's activator while it is at zero) is reached too."""
    r = server.registry.get("discovery.k8s.io", "v1", "endpointslices")
    assert r is not None  # a built-in kind
    kvs, _ = await server.api.list_kvs(r, ns)
    subsets = []
    for kv in kvs:
        s = orjson.loads(kv.value)
        if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) != service:
            continue
        addresses = [{"ip": ip, **({"targetRef": e["targetRef"]} if e.get("targetRef") else {})}
                     for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") is not False
                     for ip in (e.get("addresses") or [])[:1]]
        subsets.append({"addresses": addresses, "ports": s.get("ports") or []})
    return {"subsets": subsets}


async def service_destination(server: AgentLink, ns: str, raw: str) -> Destination:
    _, name, port = split_id(raw)
    svc = await server.api.get(_core(server, "services"), ns, name)
    if port.isdigit():  # a number names the service port with that number
        match = [p for p in (svc.get("spec") or {}).get("ports") or [] if str(p.get("port")) == port]
        if not match:
            raise APIError(503, f'no service port {port} found for service "{name}"', "ServiceUnavailable")
        port = match[0].get("name") or ""
    try:
        address, target_port = pick_endpoint(await _slice_endpoints(server, ns, name), port, name)
    except APIError:  # no ready endpoint in its slices: an Endpoints object of its own, as before slices
        endpoints = await server.api.get(_core(server, "endpoints"), ns, name)
        address, target_port = pick_endpoint(endpoints, port, name)
    ref = address.get("targetRef") or {}
    if ref.get("kind") == "Pod" and ref.get("name"):
        pod = await server.api.get(_core(server, "pods"), ref.get("namespace") or ns, ref["name"])
        return await _pod_destination(server, ns, pod, target_port)
    ip = str(address.get("ip", ""))
    try:
        loopback = ipaddress.ip_address(ip).is_loopback
    except ValueError:
        loopback = False
    if not loopback:  # never dial an address that may be off this machine
        raise APIError(503, f'endpoint {ip} of service "{name}" is not a pod; this server relays only to pods '
                       "and loopback addresses", "ServiceUnavailable")

    async def open_tunnel() -> Tunnel:
        return await TCPTunnel.open(ip, target_port)
    return Destination(ip, target_port, open_tunnel)


async def node_destination(server: AgentLink, raw: str) -> Destination:
    _, name, port = split_id(raw)
    node = await server.api.get(_core(server, "nodes"), None, name)
    base = agent_endpoint(node)  # http://host:port of the agent
    host, _, agent_port = base.removeprefix("http://").rpartition(":")
    number = port_number(port, f'node "{name}"') if port else int(agent_port)
    # the agent asks for the node token (as the kubelet asks for the API server's credentials)
    authorization = f"Bearer {server.node_token}" if number == int(agent_port) and server.node_token else None

    async def open_tunnel() -> Tunnel:
        return await TCPTunnel.open(host, number)
    return Destination(host, number, open_tunnel, authorization)


# ----------------------------------------------------------------- the relay


async def _request_body(request: Request) -> AsyncIterator[bytes]:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body"):
            return


def _target(path: str, query: bytes) -> bytes:
    return (path or "/").encode() + (b"?" + query if query else b"")


async def relay(request: Request, dest: Destination, path: str) -> Response:
    """Send `request` to `dest` as HTTP/1.1 and stream back what it answers."""
    if request.headers.get("upgrade"):
        raise errors.bad_request("connection upgrades (WebSockets) through the proxy are not supported")
    client = (request.scope.get("client") or (None,))[0]
    headers = relayed_headers(request.scope.get("headers") or [], f"{dest.host}:{dest.port}", client)
    if dest.authorization:
        headers.append((b"authorization", dest.authorization.encode()))
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    headers.append((b"connection", b"close"))
    conn = h11.Connection(h11.CLIENT)
    try:
        tunnel = await dest.open()
    except TunnelError as e:
        raise unreachable(str(e))
    try:
        await tunnel.send(conn.send(h11.Request(method=request.method, target=_target(
            path, request.scope.get("query_string", b"")), headers=headers)))
        if chunked or request.headers.get("content-length", "0") != "0":
            async for chunk in _request_body(request):
                await tunnel.send(conn.send(h11.Data(data=chunk)))
        await tunnel.send(conn.send(h11.EndOfMessage()))
        while True:
            event = await _next(conn, tunnel)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):
                raise unreachable("the connection closed before an answer")
    except TunnelError as e:
        await tunnel.close()
        raise unreachable(str(e))
    except h11.ProtocolError as e:
        await tunnel.close()
        raise APIError(502, f"the proxied server did not answer in HTTP/1.1: {e}", "BadGateway")
    except BaseException:
        await tunnel.close()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                ev = await _next(conn, tunnel)
                if isinstance(ev, h11.Data):
                    yield bytes(ev.data)
                elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
        except (TunnelError, h11.ProtocolError):
            return  # the answer was cut short; the client sees the stream end
        finally:
            await tunnel.close()

    response = StreamingResponse(body(), status_code=event.status_code)
    response.raw_headers = answered_headers(list(event.headers))
    return response


async def _next(conn: h11.Connection, tunnel: Tunnel) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await tunnel.recv() or b"")


def unreachable(why: str) -> APIError:
    return APIError(503, f"error trying to reach service: {why}", "ServiceUnavailable")


async def serve(server: AgentLink, request: Request, plural: str, ns: str | None, raw_id: str,
                base: str, path: str) -> Response:
    """Serve one proxy request (already authenticated and authorized); `base` is the URL
    up to `/proxy`, `path` what follows it."""
    if not path:  # .../proxy → .../proxy/, as kube-apiserver redirects, so relative links work
        query = request.scope.get("query_string", b"").decode("latin-1")
        return RedirectResponse(base + "/" + (f"?{query}" if query else ""), status_code=301)
    if plural == "pods":
        dest = await pod_destination(server, ns or "", raw_id)
    elif plural == "services":
        dest = await service_destination(server, ns or "", raw_id)
    else:
        dest = await node_destination(server, raw_id)
    dest.tls = split_id(raw_id)[0] == "https"
    return await relay(request, dest, path)
