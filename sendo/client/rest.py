"""Async REST client of the Kubernetes API: what our controllers, scheduler and agents use.

It speaks the same HTTP API as any outside client; nothing here reaches into the
server's process.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import aiohttp
import orjson

from ..kinds.base import Resource
from ..kinds.registry import Registry, builtin_registry
from ..pki import client_context

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


class Client:
    def __init__(self, server: str, token: str, ca_pem: bytes | None = None, user_agent: str = "sendo",
                 timeout: float = 30.0, headers: dict[str, str] | None = None):
        self.server = server.rstrip("/")
        self.headers = dict(headers or {})  # sent with every request (an agent's X-Sendo-Node)
        self.ssl = client_context(ca_pem) if self.server.startswith("https") else None
        self.token = token
        self.user_agent = user_agent
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}", "User-Agent": self.user_agent,
                         "Accept": "application/json", **self.headers},
                connector=aiohttp.TCPConnector(limit=64, ssl=self.ssl if self.ssl else True),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, url: str, *, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json") -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(method, self.server + url, data=data, params=params, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
            raw = await resp.read()
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = raw.decode(errors="replace")
            if resp.status >= 400:
                raise ApiError(resp.status, parsed)
            return parsed

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
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=None)
        async with self.session.get(self.server + path(r, ns), params=params, timeout=timeout) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, orjson.loads(await resp.read() or b"{}"))
            buf = b""
            async for chunk in resp.content.iter_any():
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


async def wait_ready(server: str, ca_pem: bytes | None = None, timeout: float = 30.0) -> None:
    """Wait for the API server's /readyz (used at start-up; bounded by timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ssl_ctx = client_context(ca_pem) if server.startswith("https") else True
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as s:
        while True:
            try:
                async with s.get(server + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"API server at {server} not ready after {timeout}s")
            await asyncio.sleep(0.05)  # poll interval while waiting for start-up
