"""How the API server reaches the agent of the node a pod runs on (pods/log,
pods/portforward). The handlers get this narrow view of the server instead of the
whole `APIServer`, so they do not import the module that routes to them."""
from __future__ import annotations

import inspect
import logging
from typing import Any, Awaitable, Callable, Protocol, TypeVar

import orjson

from ..kinds.registry import Registry
from ..wire import agent_address
from .errors import APIError
from .http import Request
from .options import RequestOptions
from .resources import ResourceAPI, decode

log = logging.getLogger(__name__)
T = TypeVar("T")


class AgentLink(Protocol):
    """What pods/log and pods/portforward need of the API server."""

    api: ResourceAPI
    registry: Registry
    node_token: str | None

    def authenticate(self, request: Any) -> Awaitable[Any] | Any: ...

    async def authorize(self, options: RequestOptions, verb: str, t: Any) -> None: ...


async def authenticated_user(server: AgentLink, request: Any) -> Any:
    user = server.authenticate(request)
    return await user if inspect.isawaitable(user) else user


async def deny_upgrade(send: Any, e: APIError) -> None:
    """Refuse a WebSocket upgrade with the Status of `e` (what a client prints)."""
    body = orjson.dumps(e.status())
    await send({"type": "websocket.http.response.start", "status": e.code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "websocket.http.response.body", "body": body})


def agent_endpoint(node: dict) -> str:
    where = agent_address(node)
    if where is None:
        raise APIError(503, f"node {node['metadata']['name']} has no agent endpoint yet", "ServiceUnavailable")
    return f"http://{where[0]}:{where[1]}"


async def node_agent(server: AgentLink, node_name: str) -> str:
    """The base URL of the agent of `node_name`."""
    nodes = server.registry.get("", "v1", "nodes")
    assert nodes is not None  # a built-in kind
    return agent_endpoint(decode((await server.api.get_kv(nodes, None, node_name)).value))


async def upgrade(server: AgentLink, scope: Any, receive: Any, send: Any,
                  prepare: Callable[[Request, Any], Awaitable[T]]) -> T | None:
    """The start of every WebSocket the API serves (pods/exec, attach, portforward): the
    client's connect, authentication, then `prepare(request, user)`, whose APIError (or
    any other failure, as a 500) refuses the upgrade with a Status. None when refused."""
    msg = await receive()
    if msg["type"] != "websocket.connect":
        return None
    request = Request(scope, receive)
    try:
        return await prepare(request, await authenticated_user(server, request))
    except APIError as e:
        await deny_upgrade(send, e)
    except Exception as e:
        log.exception("internal error upgrading %s", scope.get("path"))
        await deny_upgrade(send, APIError(500, f"internal error: {type(e).__name__}: {e}"))
    return None
