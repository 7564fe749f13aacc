"""Requests to an API server in this same process, handed to its ASGI app directly.

`sendo up` runs the API server and the node's agent in one process. Over HTTPS every
one of the agent's requests costs a TLS record on each side, an HTTP request built by
aiohttp and parsed by uvicorn, and a response built and parsed back — about a third of
what a pod costs the process (bench/podcpu.py). Through this transport the request is
the same ASGI call uvicorn would make: the same authentication (the agent's node token
in the Authorization header), authorization, admission, audit, metrics and answer; only
the socket, TLS and HTTP framing are left out. Not a back door: nothing is served here
that the URL would not serve over HTTPS, to the same credentials.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
PEER = ("127.0.0.1", 0)  # what the audit log records as the source address


class LocalStream:
    """A streamed answer (a watch): its status, then its body chunks as they are sent."""

    def __init__(self, transport: "LocalTransport", scope: dict):
        self.status = 0
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._started = asyncio.get_running_loop().create_future()
        self._gone = asyncio.Event()
        self._task = asyncio.create_task(self._run(transport.app, scope), name=f"local {scope['path']}")

    async def _run(self, app: ASGIApp, scope: dict) -> None:
        sent_request = False

        async def receive() -> dict:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._gone.wait()  # the app asks whether the client is still there: until it leaves
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if self._gone.is_set():
                raise OSError("the in-process client closed the stream")
            if message["type"] == "http.response.start":
                self.status = message["status"]
                if not self._started.done():
                    self._started.set_result(None)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    self._chunks.put_nowait(message["body"])
                if not message.get("more_body"):
                    self._chunks.put_nowait(None)
        try:
            await app(scope, receive, send)
        except BaseException as e:
            if not self._started.done():
                self._started.set_exception(e if isinstance(e, Exception) else ConnectionError("stream cancelled"))
            raise
        finally:
            self._chunks.put_nowait(None)

    async def started(self) -> None:
        await asyncio.shield(self._started)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
                    raise ConnectionError(f"the in-process API stream failed: {self._task.exception()!r}")
                return
            yield chunk

    async def close(self) -> None:
        self._gone.set()
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class LocalTransport:
    """``Client(..., transport=LocalTransport(app))``: the client's requests go to ``app``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    @staticmethod
    def scope(method: str, url: str, params: dict | None, headers: dict[str, str]) -> dict[str, Any]:
        path, _, query = url.partition("?")
        if params:
            query = (query + "&" if query else "") + urlencode(params)
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                "method": method, "scheme": "https", "path": path, "raw_path": path.encode(),
                "query_string": query.encode(), "root_path": "", "client": PEER, "server": PEER,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]}

    async def request(self, method: str, url: str, data: bytes | None, params: dict | None,
                      headers: dict[str, str]) -> tuple[int, bytes]:
        """One request; (status, whole body)."""
        if data is not None:
            headers = {**headers, "Content-Length": str(len(data))}
        scope = self.scope(method, url, params, headers)
        body_sent = False
        status, chunks = 0, []

        async def receive() -> dict:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": data or b"", "more_body": False}
            await asyncio.Future()  # never: the answer is not streamed, nobody asks twice but to see a disconnect
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def stream(self, method: str, url: str, params: dict | None, headers: dict[str, str]) -> LocalStream:
        s = LocalStream(self, self.scope(method, url, params, headers))
        try:
            await s.started()
        except BaseException:  # refused, or the caller gave up waiting: nothing may go on streaming
            await s.close()
            raise
        return s
