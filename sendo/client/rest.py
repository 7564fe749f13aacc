"""Async REST client of the Kubernetes API: what our controllers, scheduler and agents use.

It speaks the same HTTP API as any outside client; nothing here reaches into the
server's process.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Sequence

import aiohttp
import orjson

from ..kinds.base import Resource
from ..kinds.registry import Registry, builtin_registry
from ..pki import client_context
from .local import LocalTransport

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PATCH_TYPES = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
               "strategic": "application/strategic-merge-patch+json"}

_BUILTIN: Registry | None = None


def kind(plural: str, group: str = "", version: str = "v1") -> Resource:
    """A built-in resource by its plural, e.g. kind("deployments", "apps")."""
    global _BUILTIN
    if _BUILTIN is None:
        _BUILTIN = builtin_registry()
    r = _BUILTIN.get(group, version, plural)
    if r is None:
        raise KeyError(f"unknown resource {plural}.{group}/{version}")
    return r


def path(r: Resource, ns: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    base = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
    if r.namespaced and ns:
        base += f"/namespaces/{ns}"
    base += f"/{r.plural}"
    if name:
        base += f"/{name}"
        if sub:
            base += f"/{sub}"
    return base


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        super().__init__(f"{status} {self.reason}: {self.body.get('message', '')}")


def server_urls(servers: str | Sequence[str]) -> list[str]:
    """The API server URLs in `servers`: a list, or one string of URLs separated by commas."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    urls = [u.strip().rstrip("/") for u in items if u.strip()]
    if not urls:
        raise ValueError("no API server URL given")
    schemes = {u.split("://", 1)[0] for u in urls}
    if len(schemes) != 1 or not schemes <= {"http", "https"}:
        raise ValueError(f"API server URLs must all be https:// (or all http://): {', '.join(urls)}")
    return urls


class ServerList:
    """The client-side balancer: several API servers of one cluster, used one at a time.

    Requests go to the current server until one cannot reach it (its connection refused or
    dropped); then the next one in the list becomes current, for that request's retry and
    for every later request, as k3s's agent load balancer does. A server that failed is
    tried again when its turn comes round."""

    def __init__(self, servers: str | Sequence[str]):
        self.urls = server_urls(servers)
        self.index = 0
        self.failovers = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def failed(self, url: str) -> None:
        """`url` could not be reached: move on, unless another caller has already done so."""
        if url == self.current and len(self.urls) > 1:
            self.index = (self.index + 1) % len(self.urls)
            self.failovers += 1
            log.warning("API server %s unreachable: using %s", url, self.current)


# a request that never reached the server can always go to another one; one that failed
# after it was sent is repeated elsewhere only if repeating it cannot do anything twice
_NOT_SENT = (aiohttp.ClientConnectorError,)
_DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "OPTIONS"})
# an idle pooled connection is closed here well before the server's idle timeout
# (ServerConfig.idle_timeout, 90 s) closes it there: otherwise a write reusing it as the server hangs up
# fails with "Cannot write to closing transport", and a POST cannot be repeated safely
KEEPALIVE_SECONDS = 3.0
# requests (not watches) one client has on the wire at once; more wait for a slot, and a
# request's timeout starts when it has one: a burst of a thousand creates from one
# controller is a queue in this process, not a thousand timeouts at 30 s of waiting
# (each cancelled request, if it was mid-handshake, also cost a TLS connection)
REQUESTS_IN_FLIGHT = 64


class Client:
    def __init__(self, server: str | Sequence[str], token: str, ca_pem: bytes | None = None,
                 user_agent: str = "sendo", timeout: float = 30.0, headers: dict[str, str] | None = None,
                 cert: tuple[str, str] | None = None, transport: LocalTransport | None = None):
        """``token``: a bearer token; or ``cert``: a client certificate (certificate file, key
        file) the cluster CA signed, which names the user instead (the token is then "").
        ``transport``: the API server's ASGI app in this same process (local.py), which the
        requests then go to directly instead of over HTTPS (`sendo up`'s agent)."""
        self.servers = ServerList(server)
        self.headers = dict(headers or {})  # sent with every request (an agent's X-Sendo-Node)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.ssl = client_context(ca_pem, cert) if self.server.startswith("https") else None
        self.token = token
        self._tls = (ca_pem, cert)
        self.user_agent = user_agent
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(REQUESTS_IN_FLIGHT)
        self.transport = transport

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self.user_agent, "Accept": "application/json", **self.headers},
                # no pool limit: requests are bounded by _slots, watches by the informers there are
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS,
                                               ssl=self.ssl if self.ssl else True),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    def twin(self, user_agent: str | None = None, timeout: float | None = None) -> "Client":
        """A new client with this one's servers, credentials and headers, for another event
        loop (another thread): a client's connections belong to the loop that opened them."""
        if self.transport is not None:
            raise ValueError("an in-process transport serves its own event loop only")
        headers = {k: v for k, v in self.headers.items() if k != "Authorization"}
        return Client(self.servers.urls, self.token, self._tls[0], user_agent or self.user_agent,
                      self.timeout if timeout is None else timeout, headers, self._tls[1])

    @property
    def server(self) -> str:
        """The API server requests go to now (the list's current one)."""
        return self.servers.current

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _failover(self, method: str, send):
        """`send(base_url)` on the current server; on a connection error, on the next ones
        (each at most once) when the request can be repeated safely."""
        tries = len(self.servers.urls)
        for attempt in range(tries):
            base = self.servers.current
            try:
                return await send(base)
            except _NOT_SENT:
                self.servers.failed(base)
                if attempt == tries - 1:
                    raise
            except _DROPPED:
                self.servers.failed(base)
                if attempt == tries - 1 or method not in _SAFE_TO_REPEAT:
                    raise

    async def request(self, method: str, url: str, *, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json") -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None

        async def send(base: str) -> Any:
            return await self._request(base, method, url, data, params, headers)
        return await self._failover(method, send)

    async def _request(self, base: str, method: str, url: str, data: bytes | None, params: dict | None,
                       headers: dict | None) -> Any:
        if self.transport is not None:
            status, raw = await asyncio.wait_for(
                self.transport.request(method, url, data, params and _params(params), self._headers(headers)),
                self.timeout)
        else:
            async with self._slots, self.session.request(method, base + url, data=data, params=params,
                                                         headers=headers,
                                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                status, raw = resp.status, await resp.read()
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = raw.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, parsed)
        return parsed

    def _headers(self, extra: dict | None) -> dict[str, str]:
        """What a request over HTTPS would carry, for the in-process transport."""
        return {"User-Agent": self.user_agent, "Accept": "application/json", **self.headers, **(extra or {})}

    # ----------------------------------------------------------------- verbs
    async def get(self, r: Resource, ns: str | None, name: str, sub: str | None = None) -> Obj:
        return await self.request("GET", path(r, ns, name, sub))

    async def get_or_none(self, r: Resource, ns: str | None, name: str) -> Obj | None:
        try:
            return await self.get(r, ns, name)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, r: Resource, ns: str | None = None, **params: Any) -> Obj:
        return await self.request("GET", path(r, ns), params=_params(params))

    async def create(self, r: Resource, obj: Obj, ns: str | None = None) -> Obj:
        ns = ns or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", path(r, ns), body=obj)

    async def update(self, r: Resource, obj: Obj, sub: str | None = None) -> Obj:
        m = obj["metadata"]
        return await self.request("PUT", path(r, m.get("namespace"), m["name"], sub), body=obj)

    async def update_status(self, r: Resource, obj: Obj) -> Obj:
        return await self.update(r, obj, "status")

    async def patch(self, r: Resource, ns: str | None, name: str, patch: Any, type: str = "merge",
                    sub: str | None = None) -> Obj:
        return await self.request("PATCH", path(r, ns, name, sub), body=patch, content_type=PATCH_TYPES[type])

    async def delete(self, r: Resource, ns: str | None, name: str, **options: Any) -> Obj | None:
        try:
            return await self.request("DELETE", path(r, ns, name), body=options or None)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def bind(self, ns: str, pod: str, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self.request("POST", path(kind("pods"), ns, pod, "binding"), body=body)

    async def watch(self, r: Resource, ns: str | None = None, **params: Any) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) until the server ends the stream. ERROR events raise ApiError."""
        params = _params({**params, "watch": "true"})
        if self.transport is not None:
            stream = await asyncio.wait_for(self.transport.stream("GET", path(r, ns), params, self._headers(None)),
                                            self.timeout)
            try:
                if stream.status >= 400:
                    raise ApiError(stream.status, orjson.loads(b"".join([c async for c in stream.chunks()]) or b"{}"))
                async for ev in _events(stream.chunks()):
                    yield ev
            finally:
                await stream.close()
            return
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=None)

        base = self.server

        async def connect(url: str) -> aiohttp.ClientResponse:
            nonlocal base
            base = url  # the server this stream comes from
            return await self.session.get(url + path(r, ns), params=params, timeout=timeout)
        resp = await self._failover("GET", connect)
        async with resp:
            if resp.status >= 400:
                raise ApiError(resp.status, orjson.loads(await resp.read() or b"{}"))
            try:
                async for ev in _events(resp.content.iter_any()):
                    yield ev
            except (aiohttp.ClientPayloadError, *_DROPPED):
                self.servers.failed(base)  # the server went away mid-stream: the next watch goes elsewhere
                raise


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, Obj]]:
    """The (type, object) events of a watch response's body; ERROR events raise ApiError."""
    buf = b""
    async for chunk in chunks:
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            if not line.strip():
                continue
            ev = orjson.loads(line)
            if ev["type"] == "ERROR":
                obj = ev["object"]
                raise ApiError(obj.get("code", 500), obj)
            yield ev["type"], ev["object"]


def _params(params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


async def wait_ready(server: str | Sequence[str], ca_pem: bytes | None = None, timeout: float = 30.0) -> str:
    """Wait until one of the API servers answers its /readyz (used at start-up; bounded by
    timeout); return that server's URL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    urls = server_urls(server)
    ssl_ctx = client_context(ca_pem) if urls[0].startswith("https") else True
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as s:
        while True:
            for url in urls:
                try:
                    async with s.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return url
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            if loop.time() > deadline:
                raise TimeoutError(f"API server at {', '.join(urls)} not ready after {timeout}s")
            await asyncio.sleep(0.05)  # poll interval while waiting for start-up
