"""How the API server reaches the agent of the node a pod runs on (pods/log,
pods/portforward). The handlers get this narrow view of the server instead of the
whole `APIServer`, so they do not import the module that routes to them."""
from __future__ import annotations

from typing import Any, Awaitable, Protocol

from ..kinds.registry import Registry
from .errors import APIError
from .resources import ResourceAPI, decode


class AgentLink(Protocol):
    """What pods/log and pods/portforward need of the API server."""

    api: ResourceAPI
    registry: Registry
    node_token: str | None

    def authenticate(self, request: Any) -> Awaitable[Any] | Any: ...

    async def authorize(self, options: Any, verb: str, t: Any) -> None: ...


def agent_endpoint(node: dict) -> str:
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addrs.get("InternalIP") or addrs.get("Hostname")
    if not port or not host:
        raise APIError(503, f"node {node['metadata']['name']} has no agent endpoint yet", "ServiceUnavailable")
    return f"http://{host}:{port}"


async def node_agent(server: AgentLink, node_name: str) -> str:
    """The base URL of the agent of `node_name`."""
    nodes = server.registry.get("", "v1", "nodes")
    assert nodes is not None  # a built-in kind
    return agent_endpoint(decode((await server.api.get_kv(nodes, None, node_name)).value))
