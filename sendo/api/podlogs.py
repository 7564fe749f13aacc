"""pods/log: the API server proxies to the agent that runs the pod, as kube-apiserver does
to the kubelet. The agent's address comes from its Node object."""
from __future__ import annotations

import aiohttp
from starlette.responses import Response, StreamingResponse

from . import errors
from .agentlink import AgentLink, node_agent
from .errors import APIError
from .http import Request
from .query import Query

# PodLogOptions passed on to the agent, parsed here by type and sent in one spelling
BOOL_PARAMS = ("follow", "previous", "timestamps")
INT_PARAMS = {"tailLines": 0, "limitBytes": 1, "sinceSeconds": 1}  # name -> least value


def agent_params(q: Query) -> dict[str, str]:
    """The log options the agent reads, checked (400 naming a bad one) and canonical, so
    ``follow=True`` means what ``follow=true`` does."""
    params = {k: ("true" if q.bool(k) else "false") for k in BOOL_PARAMS if k in q}
    for k, least in INT_PARAMS.items():
        n = q.int(k, minimum=least)
        if n is not None:
            params[k] = str(n)
    if q.str("sinceTime"):
        params["sinceTime"] = q.str("sinceTime")
    return params


async def serve(server: AgentLink, request: Request, q: Query, pods, ns: str, name: str) -> Response:
    if request.method != "GET":
        raise errors.method_not_supported(pods, request.method, "log")
    params = agent_params(q)
    pod = await server.api.get(pods, ns, name)
    containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
    inits = [c["name"] for c in pod.get("spec", {}).get("initContainers", []) or []]
    container = q.str("container")
    if not container:
        if len(containers) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(containers)}]")
        container = containers[0]
    elif container not in containers + inits:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    node_name = pod.get("spec", {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                 "the pod is not scheduled yet")
    url = f"{await node_agent(server, node_name)}/containerLogs/{ns}/{name}/{container}"
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
    try:
        resp = await session.get(url, params=params,
                                 headers={"Authorization": f"Bearer {server.node_token}"})
    except aiohttp.ClientError as e:
        await session.close()
        raise APIError(503, f"cannot reach the agent of node {node_name}: {e}", "ServiceUnavailable")
    if resp.status != 200:
        text = await resp.text()
        await session.close()
        code = resp.status if resp.status in (400, 404) else 503
        raise APIError(code, text.strip() or f"agent answered {resp.status}")

    async def relay():
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        finally:
            resp.release()
            await session.close()
    return StreamingResponse(relay(), media_type="text/plain")
