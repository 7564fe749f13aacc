"""The request side of the ASGI app, kept thin: the API routes every URL itself, so it
needs no router or middleware stack, only the method, path, headers, query and body.
Responses are Starlette's Response classes, which are ASGI apps of their own."""
from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, QueryParams

from .limits import MAX_BODY, body_too_large


class _URL:
    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path


class Request:
    __slots__ = ("scope", "_receive", "_body", "_query", "_headers", "url", "decoded", "options", "labels")

    def __init__(self, scope: dict[str, Any], receive):
        self.scope = scope
        self._receive = receive
        self._body: bytes | None = None
        self._query: QueryParams | None = None
        self._headers: Headers | None = None
        self.url = _URL(scope["path"])
        self.decoded: Any = None  # the body as the API decoded it (JSON, YAML or protobuf): for the audit log
        self.options: Any = None  # the RequestOptions it was served with (their audit annotations)
        # apiserver_request_total's labels (verb, group, version, resource, subresource,
        # scope, component), set by the router once it knows what the request names
        self.labels: tuple[str, ...] | None = None

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def query_params(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self.scope.get("query_string", b""))
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    async def receive(self) -> dict[str, Any]:
        """The next ASGI message of the body, for a handler that streams it (the proxy)."""
        return await self._receive()

    async def body(self) -> bytes:
        """The whole body, read chunk by chunk and refused (413) as soon as it passes
        MAX_BODY: a client cannot make the server buffer more than the limit."""
        if self._body is None:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY:
                raise body_too_large()
            chunks, size = [], 0
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    raise body_too_large()
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            self._body = b"".join(chunks)
        return self._body
