"""The agent's half of pods/exec and pods/attach: `GET /exec/<ns>/<pod>/<container>` and
`GET /attach/<ns>/<pod>/<container>` upgrade to a WebSocket that speaks Kubernetes'
remote command channel protocol, version 5 (`v5.channel.k8s.io`), as a kubelet's
streaming server does; the API server relays the frames to and from the client.

Query: `command` (repeated, exec only), `stdin`, `stdout`, `stderr`, `tty` (Go's
booleans). Every binary message is one channel byte and a payload:

* 0 stdin (client → agent), 1 stdout, 2 stderr (agent → client);
* 3 error: one message, then the close: a `Status` — `Success`, or `Failure` with
  reason `NonZeroExitCode` and the exit code as the cause `ExitCode` (what makes
  `kubectl exec … -- sh -c 'exit 3'` exit 3), or `Failure` with the reason the command
  could not run;
* 4 resize: `{"Width": w, "Height": h}` of the client's terminal;
* 255 close: `[255, 0]` says the client's stdin has ended (v5).

The command and the container come from the runtime (`Runtime.exec`, `.attach`): an
engine exec for the docker runtime, a host process for the process runtime.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

import orjson
from aiohttp import WSMsgType, web

from .query import BadQuery, query_bool
from .runtime import ContainerHandle, Runtime, StartError
from .runtime.base import ExecSession

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
OUTPUT_DRAIN = 5.0  # after the command ended, how long output still held open (a background child) is read

FindContainer = Callable[[str, str, str], tuple[Runtime, ContainerHandle]]
"""(namespace, pod, container) -> the runtime and the running container; raises
LookupError with a message for the user when there is none."""


def success() -> dict:
    return {"metadata": {}, "status": "Success"}


def failure(message: str, reason: str = "InternalError", code: int = 500) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def exit_status(argv: list[str], code: int) -> dict:
    """The Status a kubelet writes for a command that ended, with its exit code."""
    if code == 0:
        return success()
    what = f"error executing command [{' '.join(argv)}], exit code {code}" if argv else f"exit code {code}"
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {what}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def handler(token: str, find: FindContainer, attach: bool = False):
    async def serve(request: web.Request) -> web.StreamResponse:
        return await handle(token, find, request, attach)
    return serve


async def handle(token: str, find: FindContainer, request: web.Request, attach: bool) -> web.StreamResponse:
    if request.headers.get("Authorization", "") != f"Bearer {token}":
        return web.Response(status=401, text="Unauthorized")
    ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
    q = request.query
    try:
        stdin, stdout, stderr, tty = (query_bool(q, k) for k in ("stdin", "stdout", "stderr", "tty"))
    except BadQuery as e:
        return web.Response(status=400, text=str(e))
    argv = q.getall("command", [])
    if not attach and not argv:
        return web.Response(status=400, text="you must specify at least 1 command")
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    try:
        await _run(ws, find, ns, name, container, argv, attach, stdin, stdout, stderr and not tty, tty)
    except Exception:
        log.exception("%s %s/%s/%s failed", "attach" if attach else "exec", ns, name, container)
    finally:
        if not ws.closed:
            await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    if not ws.closed:
        await ws.send_bytes(bytes([channel]) + data)


async def _run(ws: web.WebSocketResponse, find: FindContainer, ns: str, name: str, container: str,
               argv: list[str], attach: bool, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    try:
        runtime, handle = find(ns, name, container)
        if attach:
            session: ExecSession = await runtime.attach(handle, stdin=stdin, tty=tty)
        else:
            session = await runtime.exec(handle, argv, stdin=stdin, tty=tty)
    except LookupError as e:
        await _send(ws, ERROR, orjson.dumps(failure(str(e.args[0] if e.args else e), "NotFound", 404)))
        return
    except StartError as e:
        await _send(ws, ERROR, orjson.dumps(failure(f"error executing command in container: {e}")))
        return

    async def pump_output() -> None:
        while (piece := await session.read()) is not None:
            channel, data = piece
            if (channel == STDOUT and stdout) or (channel == STDERR and stderr):
                await _send(ws, channel, data)

    async def pump_input() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                break
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN and stdin:
                await session.write(payload)
            elif channel == RESIZE:
                await _resize(session, payload)
            elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                await session.close_stdin()

    out_t = asyncio.create_task(pump_output(), name=f"exec output {ns}/{name}")
    in_t = asyncio.create_task(pump_input(), name=f"exec input {ns}/{name}")
    exit_t = asyncio.create_task(session.wait(), name=f"exec wait {ns}/{name}")
    try:
        # the command ends (or the container, for attach), or the client goes away
        await asyncio.wait({exit_t, in_t}, return_when=asyncio.FIRST_COMPLETED)
        if exit_t.done():
            await asyncio.wait({out_t}, timeout=OUTPUT_DRAIN)  # what it wrote last
            out_t.cancel()
            await asyncio.gather(out_t, return_exceptions=True)
            # attach succeeded whatever the container's exit; exec reports the command's
            status = success() if attach else exit_status(argv, exit_t.result())
            await _send(ws, ERROR, orjson.dumps(status))
    finally:
        for t in (out_t, in_t, exit_t):
            t.cancel()
        await asyncio.gather(out_t, in_t, exit_t, return_exceptions=True)
        with contextlib.suppress(Exception):
            await session.close()


async def _resize(session: ExecSession, payload: bytes) -> None:
    try:
        size = orjson.loads(payload)
        width, height = int(size.get("Width") or 0), int(size.get("Height") or 0)
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return
    await session.resize(width, height)
