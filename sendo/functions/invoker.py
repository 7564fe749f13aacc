"""The invoker: the asyncio HTTP server inside every function instance.

`python -m sendo.functions.invoker` loads the function's source (``FUNCTION_SOURCE``) as the
module named by ``FUNCTION_HANDLER`` (``main.handle`` → module ``main``), then serves on
``$POD_IP:$FUNCTION_PORT``:

* any path — an HTTP invocation: ``event`` = method, path (the ingress prefix
  ``FUNCTION_PATH_PREFIX`` taken off), query, headers, body (str), json (parsed or None);
* ``POST /_sendo/event`` — a CloudEvents 1.0 dict in the body is the event (cron and cluster
  events, sent by the controller);
* ``GET /_sendo/stats`` — in-flight, running, queued and counters, read by the autoscaler;
* ``GET /_sendo/metrics`` — this instance's Prometheus metrics.

The code may instead be a directory: ``FUNCTION_FILES`` (a directory on this node) or a
zip of one (``FUNCTION_FILES_ZIP``, a file; ``FUNCTION_FILES_ZIP_DATA``, base64), unpacked
once per archive into the cache; the directory goes first on ``sys.path`` and the
handler's module is imported from it.

A warm-pool worker (``FUNCTION_GENERIC=1``) starts code-less; ``POST /_sendo/specialize``
gives it a function (see `Generic`), optionally with the first request to answer.

``FUNCTION_REQUIREMENTS`` (a JSON list of pip requirement lines) are installed first, once
per distinct list on this host, into ``$FUNCTION_CACHE_DIR`` (`install_requirements`); the
instance becomes ready only after that.

**Concurrency.** At most ``FUNCTION_CONCURRENCY`` invocations run at once; more wait in
a FIFO queue of at most ``FUNCTION_QUEUE_DEPTH``; only beyond that a request gets 429.
A sync handler runs on a thread of a pool of that size, an ``async def`` one on the loop.
**Timeout.** After ``FUNCTION_TIMEOUT`` seconds the caller gets 504; a sync handler's
thread cannot be stopped, so its slot stays taken until it returns (the cap holds).
**Returns.** dict/list → JSON 200; str → text 200; bytes → octet-stream 200; None → 204;
``(status, body)`` or ``(status, body, headers)`` set the status (and headers).
An exception is a 500 whose body names only the invocation id; the traceback goes to
the function's log (stderr), never to the caller.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import sys
import time
import traceback
import types
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

log = logging.getLogger("sendo.function")


class QueueFull(Exception):
    """More invocations wait than the queue bound allows."""


class Gate:
    """`concurrency` slots and a FIFO waiting line of at most `queue_depth`."""

    def __init__(self, concurrency: int, queue_depth: int):
        self.concurrency = max(1, concurrency)
        self.queue_depth = max(0, queue_depth)
        self.running = 0
        self._waiters: list[asyncio.Future] = []

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return self.running + self.queued

    async def acquire(self) -> None:
        if self.running < self.concurrency and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.queue_depth:
            raise QueueFull()
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # release() hands its slot over: running stays counted
        except asyncio.CancelledError:
            if fut in self._waiters:
                self._waiters.remove(fut)
            elif fut.done() and not fut.cancelled():
                self.release()  # the slot came just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1


@dataclass
class Context:
    """What a handler gets besides the event (AWS Lambda's context, in Python names)."""

    function_name: str
    namespace: str
    version: str
    invocation_id: str
    deadline: float  # time.time() after which the caller has been answered 504
    logger: logging.Logger = field(default=log)

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - time.time())


def to_response(result: Any) -> tuple[int, str, bytes, dict[str, str]]:
    """(status, content type, body, extra headers) for what a handler returned."""
    status: int = 200
    headers: dict[str, str] = {}
    if isinstance(result, tuple) and len(result) in (2, 3) and isinstance(result[0], int):
        if len(result) == 3 and isinstance(result[2], dict):
            headers = {str(k): str(v) for k, v in result[2].items()}
        status, result = result[0], result[1]
    if result is None:
        return (204 if status == 200 else status), "text/plain", b"", headers
    if isinstance(result, bytes):
        return status, "application/octet-stream", result, headers
    if isinstance(result, str):
        return status, "text/plain; charset=utf-8", result.encode(), headers
    return status, "application/json", orjson.dumps(result), headers


def install_requirements(requirements: list[str], cache_root: str) -> tuple[str, bool]:
    """A directory holding ``requirements`` (pip's ``--target``), built once per distinct list and
    shared by every instance of every function on this host that asks for the same list: (path,
    whether it was built now). Concurrent instances wait on a file lock; a half-built directory is
    never used (it is renamed into place when pip succeeded). pip reads its index settings from the
    usual places (pip.conf, ``PIP_*`` in the function's env)."""
    import fcntl
    import hashlib
    import shutil
    import subprocess

    digest = hashlib.sha256("\n".join(sorted(r.strip() for r in requirements)).encode()).hexdigest()[:16]
    os.makedirs(cache_root, exist_ok=True)
    target = os.path.join(cache_root, f"py{sys.version_info[0]}{sys.version_info[1]}-{digest}")
    if os.path.isdir(target):
        return target, False
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(target):
            return target, False
        tmp = f"{target}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-warn-script-location", "--target", tmp, *requirements], check=True,
                       stdout=sys.stderr, stdin=subprocess.DEVNULL)
        os.rename(tmp, target)
    return target, True


def unpack_files(archive: bytes, cache_root: str) -> str:
    """The directory a packed source (a zip, as `sendo fn deploy --dir` makes it) is unpacked in:
    one per distinct archive on this host, under ``cache_root``, renamed into place when whole."""
    import hashlib
    import io
    import shutil
    import zipfile

    target = os.path.join(cache_root, "files-" + hashlib.sha256(archive).hexdigest()[:16])
    if os.path.isdir(target):
        return target
    os.makedirs(cache_root, exist_ok=True)
    tmp = f"{target}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        for name in z.namelist():  # no member may land outside the directory
            if name.startswith("/") or ".." in name.split("/"):
                raise RuntimeError(f"the source archive holds an unsafe path {name!r}")
        z.extractall(tmp)
    with contextlib.suppress(OSError):  # another instance won the race: use its copy
        os.rename(tmp, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def import_handler(directory: str, handler: str) -> Callable[..., Any]:
    """Import the handler's module from a directory of files (it goes first on ``sys.path``, so
    the function's own modules, packages and data files next to them work as usual)."""
    import importlib

    module_name, _, func = handler.rpartition(".")
    if not os.path.isdir(directory):
        raise RuntimeError(f"source.files: {directory} is not a directory on this node")
    sys.path.insert(0, directory)
    fn = getattr(importlib.import_module(module_name), func, None)
    if not callable(fn):
        raise RuntimeError(f"handler {handler!r}: {module_name} has no callable {func!r}")
    return fn


def load_handler(source: str, handler: str) -> Callable[..., Any]:
    """Run source as the handler's module and return its function."""
    module_name, _, func = handler.rpartition(".")
    mod = types.ModuleType(module_name)
    mod.__file__ = f"<function {module_name}>"
    sys.modules[module_name] = mod
    exec(compile(source, f"{module_name}.py", "exec"), mod.__dict__)
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise RuntimeError(f"handler {handler!r}: {module_name} has no callable {func!r}")
    return fn


class Invoker:
    def __init__(self, fn: Callable[..., Any], *, name: str = "fn", namespace: str = "default", version: str = "",
                 concurrency: int = 10, queue_depth: int = 100, timeout: float = 30.0, path_prefix: str = ""):
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.name, self.namespace, self.version = name, namespace, version
        self.gate = Gate(concurrency, queue_depth)
        self.timeout = timeout
        self.path_prefix = path_prefix.rstrip("/")
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.gate.concurrency,
                                                          thread_name_prefix="handler")
        self.invocations = 0
        self.errors = 0
        self.rejected = 0
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["function", "namespace"]
        self.m_calls = Counter("sendo_function_invocations", "Invocations by status code",
                               labels + ["code"], registry=self.registry)
        self.m_duration = Histogram("sendo_function_duration_seconds", "Handler run time", labels,
                                    registry=self.registry,
                                    buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/_sendo/stats", self._stats)
        app.router.add_get("/_sendo/metrics", self._metrics)
        app.router.add_post("/_sendo/event", self._event)
        app.router.add_route("*", "/{tail:.*}", self._http)
        return app

    def stats(self) -> dict[str, Any]:
        return {"inFlight": self.gate.in_flight, "running": self.gate.running, "queued": self.gate.queued,
                "concurrency": self.gate.concurrency,
                "invocations": self.invocations, "errors": self.errors, "rejected": self.rejected,
                "version": self.version, "startedAt": self.started}

    async def _stats(self, _r: web.Request) -> web.Response:
        return web.json_response(self.stats(), dumps=lambda o: orjson.dumps(o).decode())

    async def _metrics(self, _r: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def _event(self, request: web.Request) -> web.Response:
        try:
            event = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="the body must be a CloudEvent as JSON\n")
        return await self.invoke(event)

    async def _http(self, request: web.Request) -> web.Response:
        return await self.invoke(self.http_event(request.method, request.path, request.query, request.headers,
                                                 await request.read()))

    def http_event(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> dict[str, Any]:
        """The event of an HTTP invocation (the ingress prefix taken off the path)."""
        parsed = None
        if body:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(body)
        if self.path_prefix and (path == self.path_prefix or path.startswith(self.path_prefix + "/")):
            path = path[len(self.path_prefix):] or "/"
        return {"method": method, "path": path, "query": {str(k): v for k, v in query.items()},
                "headers": {str(k): v for k, v in headers.items()}, "body": body.decode("utf-8", "replace"),
                "json": parsed}

    async def first_call(self, req: dict[str, Any]) -> web.Response:
        """The request a warm worker's specialise call carries (``{"method", "path", "query",
        "headers", "body"}``, the body base64): an HTTP invocation, or a CloudEvent for ``/_sendo/event``."""
        import base64

        body = base64.b64decode(req.get("body") or "")
        if req.get("path") == "/_sendo/event":
            try:
                return await self.invoke(orjson.loads(body))
            except orjson.JSONDecodeError:
                return web.Response(status=400, text="the body must be a CloudEvent as JSON\n")
        return await self.invoke(self.http_event(str(req.get("method") or "GET"), str(req.get("path") or "/"),
                                                 req.get("query") or {}, req.get("headers") or {}, body))

    async def invoke(self, event: Any) -> web.Response:
        try:
            await self.gate.acquire()
        except QueueFull:
            self.rejected += 1
            self.m_calls.labels(self.name, self.namespace, "429").inc()
            return web.Response(status=429, text="too many requests: the function's queue is full\n",
                                headers={"Retry-After": "1"})
        self.invocations += 1
        iid = str(uuid.uuid4())
        ctx = Context(self.name, self.namespace, self.version, iid, time.time() + self.timeout)
        t0 = time.perf_counter()
        if self.is_async:
            task: asyncio.Future = asyncio.ensure_future(self.fn(event, ctx))
        else:
            task = asyncio.get_running_loop().run_in_executor(self.pool, self.fn, event, ctx)
        task.add_done_callback(lambda _f: self._finished(t0))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self.timeout)
        except asyncio.TimeoutError:
            self.errors += 1
            log.error("invocation %s timed out after %ss", iid, self.timeout)
            return self._answer(504, "text/plain", f"function timed out (invocation {iid})\n".encode(), {})
        except Exception:
            self.errors += 1
            print(f"invocation {iid} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            return self._answer(500, "application/json",
                                orjson.dumps({"error": "the function raised an exception", "invocationId": iid}), {})
        try:
            status, ctype, body, headers = to_response(result)
        except TypeError as e:
            self.errors += 1
            print(f"invocation {iid}: cannot encode the result: {e}", file=sys.stderr, flush=True)
            return self._answer(500, "application/json",
                                orjson.dumps({"error": "the result is not JSON", "invocationId": iid}), {})
        return self._answer(status, ctype, body, headers)

    def _finished(self, t0: float) -> None:
        self.m_duration.labels(self.name, self.namespace).observe(time.perf_counter() - t0)
        self.gate.release()

    def _answer(self, status: int, ctype: str, body: bytes, headers: dict[str, str]) -> web.Response:
        self.m_calls.labels(self.name, self.namespace, str(status)).inc()
        resp = web.Response(status=status, body=body, headers=headers)
        resp.content_type = ctype.split(";")[0]
        if "charset" in ctype:
            resp.charset = "utf-8"
        return resp


def from_env(env: dict[str, str]) -> Invoker:
    requirements = [r for r in orjson.loads(env.get("FUNCTION_REQUIREMENTS") or "[]") if r.strip()]
    if requirements:
        root = env.get("FUNCTION_CACHE_DIR") or os.path.join("/var/tmp", "sendo-functions")
        path, built = install_requirements(requirements, root)
        log.info("requirements %s in %s (%s)", requirements, path, "installed now" if built else "cached")
        sys.path.insert(0, path)
    handler = env.get("FUNCTION_HANDLER", "main.handle")
    if env.get("FUNCTION_FILES_ZIP") or env.get("FUNCTION_FILES_ZIP_DATA"):  # a packed directory
        import base64
        if env.get("FUNCTION_FILES_ZIP_DATA"):
            archive = base64.b64decode(env["FUNCTION_FILES_ZIP_DATA"])
        else:
            with open(env["FUNCTION_FILES_ZIP"], "rb") as f:
                archive = f.read()
        root = env.get("FUNCTION_CACHE_DIR") or os.path.join("/var/tmp", "sendo-functions")
        fn = import_handler(unpack_files(archive, root), handler)
    elif env.get("FUNCTION_FILES"):  # a directory on this node
        fn = import_handler(env["FUNCTION_FILES"], handler)
    else:
        fn = load_handler(env["FUNCTION_SOURCE"], handler)
    return Invoker(fn, name=env.get("FUNCTION_NAME", "fn"), namespace=env.get("FUNCTION_NAMESPACE", "default"),
                   version=env.get("FUNCTION_VERSION", ""), concurrency=int(env.get("FUNCTION_CONCURRENCY", "10")),
                   queue_depth=int(env.get("FUNCTION_QUEUE_DEPTH", "100")),
                   timeout=float(env.get("FUNCTION_TIMEOUT", "30")), path_prefix=env.get("FUNCTION_PATH_PREFIX", ""))


SPECIALIZED_HEADER = "X-Sendo-Specialized"
SOURCE_VARS = ("FUNCTION_SOURCE", "FUNCTION_FILES", "FUNCTION_FILES_ZIP_DATA")


class Generic:
    """A warm-pool worker (``FUNCTION_GENERIC=1``): the interpreter and the invoker's imports are
    loaded; ``POST /_sendo/specialize`` with a function's environment (the ``FUNCTION_*`` variables
    and its plain env values) loads its code once, and from then on it is that function's invoker.
    The body is that env, or ``{"env": …, "request": …}`` whose request (see `Invoker.first_call`)
    is answered at once: the answer is the function's, marked ``X-Sendo-Specialized: 1`` (a worker
    that was given another function already answers 409 without it)."""

    def __init__(self) -> None:
        self.invoker: Invoker | None = None
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/_sendo/specialize", self._specialize)
        app.router.add_route("*", "/{tail:.*}", self._any)
        return app

    async def _specialize(self, request: web.Request) -> web.Response:
        try:
            env = orjson.loads(await request.read())
            first = None
            if isinstance(env, dict) and isinstance(env.get("env"), dict):  # {"env": …, "request": …}
                env, first = env["env"], env.get("request")
            assert isinstance(env, dict) and any(isinstance(env.get(k), str) for k in SOURCE_VARS)
        except (orjson.JSONDecodeError, AssertionError):
            return web.Response(status=400, text="the body must be a JSON object with FUNCTION_SOURCE "
                                "(or FUNCTION_FILES, FUNCTION_FILES_ZIP_DATA)\n")
        async with self._lock:
            if self.invoker is not None:
                return web.Response(status=409, text="already specialized\n")
            os.environ.update({str(k): str(v) for k, v in env.items()})
            try:
                if orjson.loads(env.get("FUNCTION_REQUIREMENTS") or "[]"):  # pip may take a while: off the loop
                    self.invoker = await asyncio.get_running_loop().run_in_executor(None, from_env, dict(os.environ))
                else:  # nothing else waits on an unspecialised worker: a thread hop would only add latency
                    self.invoker = from_env(dict(os.environ))
                self.invoker.pool.submit(int)  # its first handler thread, started now rather than on the call
            except Exception:
                print(f"specializing failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
                return web.Response(status=422, text="the function's code did not load (see the log)\n")
        log.info("specialized as %s/%s", self.invoker.namespace, self.invoker.name)
        if isinstance(first, dict):  # the held request, answered in the same round trip
            resp = await self.invoker.first_call(first)
        else:
            resp = web.Response(status=200, text="ok\n")
        resp.headers[SPECIALIZED_HEADER] = "1"  # whatever the function answered, the worker is now its
        return resp

    async def _any(self, request: web.Request) -> web.StreamResponse:
        inv = self.invoker
        if inv is None:
            if request.path == "/_sendo/stats":
                return web.json_response({"generic": True, "inFlight": 0, "invocations": 0})
            return web.Response(status=503, text="a generic worker: not specialized yet\n")
        if request.path == "/_sendo/stats" and request.method == "GET":
            return await inv._stats(request)
        if request.path == "/_sendo/metrics" and request.method == "GET":
            return await inv._metrics(request)
        if request.path == "/_sendo/event" and request.method == "POST":
            return await inv._event(request)
        return await inv._http(request)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    app = Generic().app() if os.environ.get("FUNCTION_GENERIC") == "1" else from_env(dict(os.environ)).app()
    host = os.environ.get("POD_IP") or "127.0.0.1"
    port = int(os.environ.get("FUNCTION_PORT", "8080"))
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
