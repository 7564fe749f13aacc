"""Wire details the API server and the agents share, kept below both so neither imports
the other: the header naming an agent's node, how a query parameter's boolean is spelled (Go's `strconv.ParseBool`, which
is what every Kubernetes client expects), the messages of the port-forward tunnel
between the API server and an agent's `/portForward` endpoint, where a Node says its
agent listens, and the pod tunnel a node's service proxy opens to another node's agent."""
from __future__ import annotations

import asyncio
from typing import Any
import errno
import os

import orjson

# the header an agent sends with the node token: the node it speaks for (user system:node:<name>)
NODE_HEADER = "X-Sendo-Node"

_TRUE = {"", "1", "t", "T"}  # plus any case of "true"; an empty value (``?watch``) is true
_FALSE = {"0", "f", "F"}  # plus any case of "false"


class BadParam(ValueError):
    """A query parameter that does not parse as its type; the message is for a person."""


def parse_bool(name: str, value: str) -> bool:
    if value in _TRUE or value.lower() == "true":
        return True
    if value in _FALSE or value.lower() == "false":
        return False
    raise BadParam(f'invalid value for query parameter "{name}": {value!r} is not a boolean (use true or false)')


# ----------------------------------------------------------------- port-forward tunnel
EOF_MESSAGE = orjson.dumps({"eof": True}).decode()  # API server → agent: the client closed its side


def error_message(text: str) -> str:
    """Agent → API server: the dial or the stream failed; the text is shown to the user."""
    return orjson.dumps({"error": text}).decode()


def dial_error(ip: str, port: int, e: BaseException) -> str:
    """Go's wording (`dial tcp 127.64.0.5:8080: connect: connection refused`), which is
    what a Kubernetes user knows from kubectl port-forward against a kubelet."""
    if isinstance(e, asyncio.TimeoutError):
        return f"dial tcp {ip}:{port}: i/o timeout"
    code = getattr(e, "errno", None)
    reason = os.strerror(code).lower() if code else str(e)
    if code == errno.ECONNREFUSED:
        reason = "connection refused"
    return f"dial tcp {ip}:{port}: connect: {reason}"


def agent_address(node: dict[str, Any]) -> tuple[str, int] | None:
    """(host, port) of a Node's agent: its InternalIP (else its Hostname) and
    status.daemonEndpoints.kubeletEndpoint.Port, as kube-apiserver finds a kubelet; None
    while the agent has not posted them."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or [] if isinstance(a, dict)}
    host = addrs.get("InternalIP") or addrs.get("Hostname")
    return (str(host), port) if host and isinstance(port, int) and 0 < port < 65536 else None


# ----------------------------------------------------------------- pod tunnel
# A node's service proxy reaches a process pod of another node (a loopback address that
# exists on that machine only) through that node's agent: a WebSocket upgrade of
# `GET TUNNEL_PATH?ip=<pod IP>&port=<port>` with the node token. The agent dials only
# addresses of its own podCIDR, then says CONNECTED_MESSAGE (or `error_message`) and the
# WebSocket carries the connection as the port-forward tunnel does: binary messages are
# bytes, EOF_MESSAGE a half-close, a close the end.
TUNNEL_PATH = "/podTunnel"
CONNECTED_MESSAGE = orjson.dumps({"connected": True}).decode()  # agent → proxy: the pod accepted
