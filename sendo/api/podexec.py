"""pods/exec and pods/attach: `kubectl exec`, `kubectl attach`, `kubectl cp` (tar over
exec) and the official Python client's `stream()` through the API server.

What the clients send: a WebSocket upgrade of
`GET /api/v1/namespaces/<ns>/pods/<pod>/exec?command=…&container=…&stdin=…&stdout=…&stderr=…&tty=…`
(or `/attach`, without `command`) offering the subprotocols `v5.channel.k8s.io` (kubectl
1.30+) and/or `v4.channel.k8s.io` (the Python client, older kubectl). Version 5 is
version 4 plus a close signal for stdin; the frames are otherwise the same (see
`sendo/agent/podexec.py`, which speaks them). So, as kube-apiserver proxies to the
kubelet, this module checks the request and the pod, opens a WebSocket to the agent of
the pod's node (node token) and relays frames both ways untouched. A text frame from
the client (the Python client sends `str` data as text) is relayed as its UTF-8 bytes.

kubectl falls back to SPDY when the WebSocket upgrade is refused; an ASGI app cannot
take over the raw socket, so a request without a WebSocket gets the Status error the
WebSocket would have got (or a 400 asking for a WebSocket).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from ..wire import BadParam, parse_bool
from . import errors
from .agentlink import AgentLink, node_agent, upgrade
from .errors import APIError
from .http import Request
from .options import RequestOptions
from .paths import Target, parse_path

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")  # preferred first
SUBRESOURCES = ("exec", "attach")


def is_exec_path(path: str) -> bool:
    t = parse_path(path.rstrip("/"))
    return t is not None and t.plural == "pods" and t.sub in SUBRESOURCES


async def _target(server: AgentLink, request: Request, ns: str, name: str, sub: str) -> tuple[str, str, list]:
    """(agent URL of the pod's container, its params) for a request, else an APIError
    worded as kube-apiserver words it."""
    q = request.query_params
    opts: dict[str, bool] = {}
    for key in ("stdin", "stdout", "stderr", "tty"):
        values = q.getlist(key)
        try:
            opts[key] = parse_bool(key, values[-1]) if values else False
        except BadParam as e:
            raise errors.bad_request(str(e))
    command = q.getlist("command")
    if sub == "exec" and not command:
        raise errors.bad_request("you must specify at least 1 command")
    if not (opts["stdin"] or opts["stdout"] or opts["stderr"]):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    pods = server.registry.get("", "v1", "pods")
    pod = await server.api.get(pods, ns, name)
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    others = [c.get("name") for k in ("initContainers", "ephemeralContainers") for c in spec.get(k) or []]
    container = (q.getlist("container") or [""])[-1]
    if not container:
        if len(names) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(str(n) for n in names)}]")
        container = names[0]
    elif container not in names and container not in others:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot {sub} into a container in a completed pod; current phase is {phase}")
    base = await node_agent(server, node_name)
    params = [(k, "true" if v else "false") for k, v in opts.items()] + [("command", c) for c in command]
    return f"{base}/{sub}/{ns}/{name}/{container}", container, params


async def serve_http(server: AgentLink, request: Request, ns: str, name: str, sub: str) -> Any:
    """An exec/attach request without a WebSocket (kubectl's SPDY fallback, or by hand)."""
    if request.method not in ("GET", "POST"):
        raise APIError(405, f"{sub} supports GET and POST (with a WebSocket upgrade)", "MethodNotAllowed")
    await _target(server, request, ns, name, sub)
    raise errors.bad_request(f"{sub} needs a WebSocket upgrade with the subprotocol v5.channel.k8s.io or "
                             "v4.channel.k8s.io; this server does not serve SPDY upgrades")


async def websocket(server: AgentLink, scope, receive, send) -> None:
    """ASGI `websocket` scope of pods/<name>/exec or /attach."""
    offered = [p.strip() for p in scope.get("subprotocols") or []]

    async def prepare(request: Request, user: Any) -> tuple[Target, str, aiohttp.ClientSession, Any]:
        t = parse_path(scope["path"].rstrip("/"))
        if t is None or (t.group, t.version, t.plural) != ("", "v1", "pods") or t.sub not in SUBRESOURCES \
                or not t.namespace or not t.name:
            raise errors.no_route()
        await server.authorize(RequestOptions(user), "create", t)
        protocol = next((p for p in PROTOCOLS if p in offered), None)
        if protocol is None:
            raise errors.bad_request(f"none of the offered WebSocket subprotocols {offered} is supported; "
                                     f"use {' or '.join(PROTOCOLS)}")
        url, _, params = await _target(server, request, t.namespace, t.name, t.sub or "")
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        try:
            agent = await session.ws_connect(url, params=params, heartbeat=None, max_msg_size=0, autoping=True,
                                             headers={"Authorization": f"Bearer {server.node_token}"})
        except BaseException as e:
            await session.close()
            if isinstance(e, aiohttp.WSServerHandshakeError):
                raise APIError(e.status if e.status >= 400 else 502,
                               f"the agent of the pod's node refused the {t.sub}: {e.message}")
            if isinstance(e, (aiohttp.ClientError, OSError)):
                raise APIError(503, f"cannot reach the agent of the pod's node: {e}", "ServiceUnavailable")
            raise
        return t, protocol, session, agent

    prepared = await upgrade(server, scope, receive, send, prepare)
    if prepared is None:
        return
    t, protocol, session, agent = prepared
    try:
        await send({"type": "websocket.accept", "subprotocol": protocol})
        await _relay(agent, receive, send, t)
    finally:
        with contextlib.suppress(Exception):
            await agent.close()
        await session.close()


async def _relay(agent: aiohttp.ClientWebSocketResponse, receive, send, t: Target) -> None:
    async def up() -> None:  # client → agent
        while True:
            msg = await receive()
            if msg["type"] != "websocket.receive":
                return
            data = msg.get("bytes")
            if data is None:
                data = (msg.get("text") or "").encode()
            if data and not agent.closed:
                await agent.send_bytes(data)

    async def down() -> None:  # agent → client
        async for msg in agent:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
            elif msg.type != aiohttp.WSMsgType.TEXT:
                break
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except Exception as e:
        log.debug("%s %s/%s ended: %s", t.sub, t.namespace, t.name, e)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
