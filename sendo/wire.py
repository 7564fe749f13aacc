"""Wire details the API server and the agents share, kept below both so neither imports
the other: the header naming an agent's node, how a query parameter's boolean is spelled (Go's `strconv.ParseBool`, which
is what every Kubernetes client expects), and the messages of the port-forward tunnel
between the API server and an agent's `/portForward` endpoint."""
from __future__ import annotations

import asyncio
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
