"""Container probes: liveness, readiness and startup, with the kubelet's semantics.

Two layers:

* **Checks** run one probe once and say how it went (`Outcome`): `http_get`,
  `tcp_socket`, `exec_command`, dispatched by `run_probe` from a Probe object.
  They never raise for what happens on the wire; a configuration problem (a port
  name the container does not declare, an unsupported handler) is `UNKNOWN`.
* **`ProbeLoop`** runs one probe of one container run periodically (one asyncio task
  each) and turns single outcomes into the probe's state with the thresholds:
  `failureThreshold` failures in a row make it fail, `successThreshold` successes in
  a row make it succeed. It reports each change of state to the pod worker, which
  acts on it (readiness → `ready`, startup → `started`, liveness / startup failure →
  kill and restart).

Kubelet behaviour kept here (pkg/kubelet/prober, pkg/probe):

* initial state: readiness Failure, liveness Success, startup unknown;
* `initialDelaySeconds` counts from the container's start; startup and readiness
  probes run as soon as they may, a liveness probe one period later (the kubelet's
  ticker puts it anywhere in that period); liveness and readiness do
  not run until the startup probe (if any) has succeeded, and the startup probe stops
  once it has; a committed liveness / startup failure stops the loop until the next
  container run (the worker cancels it and starts a new one with the new container);
* every failed probe is a Warning event `Unhealthy` ("Readiness probe failed: ..."),
  a 3xx answer that is not followed is `ProbeWarning` and counts as success, a probe
  that cannot run is reported ("... probe errored: ...") and its result thrown away;
* HTTP: GET to the pod IP (or `host`), HTTP or HTTPS without certificate checks,
  200-399 is success, redirects are followed only to the same host (at most 10),
  no keep-alive, at most 10 KiB of body read; default headers `User-Agent:
  sendo-probe/<version>` and `Accept: */*`, both replaceable (an empty value
  removes them) through `httpHeaders`; no proxy is ever used;
* exec: for a process-runtime container the command runs as a host process with the
  container's environment and working directory; for a container with a runtime of its
  own (docker) it runs inside the container through `Runtime.exec`; `$(VAR)`
  expanded from that environment, no shell unless the command is one; exit 0 is
  success; `timeoutSeconds` kills it (its whole process group). At most
  `EXEC_CONCURRENCY` exec probes run at once per event loop;
* grpc is not supported by this agent (no gRPC client is available): such a probe
  errors on every run, which the kubelet treats as "no result" — a readiness probe
  then never becomes ready, a liveness probe never kills, a startup probe never
  completes. Every run records the Warning event so the reason is visible.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import ssl
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from .. import __version__
from .env import expand

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SUCCESS = "success"
FAILURE = "failure"
WARNING = "warning"  # success, with something worth telling (e.g. a redirect not followed)
UNKNOWN = "unknown"  # the probe could not run: its result is thrown away

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"

MAX_BODY = 10 * 1024  # bytes of a response body read, of exec output kept (as the kubelet)
MAX_REDIRECTS = 10
BODY_READ_TIMEOUT = 0.25  # the body does not decide anything: never wait long for it
EXEC_CONCURRENCY = 8  # exec probes running at once per event loop (they are processes)
REDIRECT_CODES = (301, 302, 303, 307, 308)


def user_agent(purpose: str = "probe") -> str:
    major_minor = ".".join(__version__.split(".")[:2])
    return f"sendo-{purpose}/{major_minor}"


@dataclass
class Outcome:
    result: str  # SUCCESS | FAILURE | WARNING | UNKNOWN
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.result in (SUCCESS, WARNING)


@dataclass
class Target:
    """What a probe or hook of one container run needs to know."""

    pod_ip: str
    container: Obj  # the container spec (ports by name, probes)
    env: dict[str, str] = field(default_factory=dict)  # the running container's environment
    cwd: str | None = None  # and its working directory
    # how exec handlers run (argv, env, cwd, timeout): a host process (`run_command`)
    # unless the container has a runtime of its own to exec in (`in_container`)
    run: "Callable[[list[str], dict[str, str], str | None, float | None], Awaitable[CommandResult]] | None" = None

    async def command(self, argv: list[str], timeout: float | None) -> "CommandResult":
        return await (self.run or run_command)(argv, self.env, self.cwd, timeout)


class ConfigError(Exception):
    """The probe cannot be run as written (e.g. an unknown port name)."""


# ============================================================================ settings

def settings(kind: str, probe: Obj) -> tuple[float, float, float, int, int]:
    """(initialDelay, period, timeout, successThreshold, failureThreshold) with the API
    defaults for what is unset or zero. Floats are accepted (tests use short periods)."""
    def num(key: str, default: float) -> float:
        v = probe.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else default
    delay = num("initialDelaySeconds", 0)
    period = num("periodSeconds", 10)
    timeout = num("timeoutSeconds", 1)
    success = int(num("successThreshold", 1))
    failure = int(num("failureThreshold", 3))
    if kind != READINESS:
        success = 1  # must be 1 for liveness and startup (validation enforces it too)
    return delay, period, timeout, success, failure


def resolve_port(port: Any, container: Obj) -> int:
    """A port by number, or by the name of one of the container's ports (a numeric
    string is a number, as the kubelet reads it)."""
    if isinstance(port, bool):
        raise ConfigError(f"invalid port {port!r}")
    if isinstance(port, int):
        number = port
    elif isinstance(port, str) and port.isdigit():
        number = int(port)
    elif isinstance(port, str) and port:
        for p in container.get("ports") or []:
            if isinstance(p, dict) and p.get("name") == port:
                number = p.get("containerPort")
                break
        else:
            raise ConfigError(f"couldn't find port {port!r} in the ports of container {container.get('name')!r}")
    else:
        raise ConfigError(f"invalid port {port!r}")
    if not isinstance(number, int) or not 0 < number < 65536:
        raise ConfigError(f"invalid port number: {number}")
    return number


# ============================================================================ HTTP

def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # probes skip certificate verification, as the kubelet's
    return ctx


_TLS: ssl.SSLContext | None = None


def request_headers(action: Obj, purpose: str) -> list[tuple[str, str]]:
    given = [(str(h.get("name", "")), str(h.get("value", ""))) for h in action.get("httpHeaders") or []
             if isinstance(h, dict) and h.get("name")]
    names = {n.lower() for n, _ in given}
    out = [(n, v) for n, v in given if v != "" or n.lower() not in ("user-agent", "accept")]
    if "user-agent" not in names:
        out.append(("User-Agent", user_agent(purpose)))
    if "accept" not in names:
        out.append(("Accept", "*/*"))
    return out


def http_url(action: Obj, target: Target) -> str:
    scheme = str(action.get("scheme") or "HTTP").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"unsupported scheme {action.get('scheme')!r}")
    host = action.get("host") or target.pod_ip
    if not host:
        raise ConfigError("the pod has no IP yet")
    port = resolve_port(action.get("port"), target.container)
    path = str(action.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{hostport}{path}"


async def http_request(url: str, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
    """One GET, no keep-alive, no proxy. Returns (status, response headers lower-cased)."""
    global _TLS
    u = urlsplit(url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    ssl_ctx = None
    if u.scheme == "https":
        _TLS = _TLS or _tls_context()
        ssl_ctx = _TLS
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl_ctx,
                                                   server_hostname="" if ssl_ctx else None)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        lines = [f"GET {path} HTTP/1.1"]
        if not any(n.lower() == "host" for n, _ in headers):
            lines.append(f"Host: {u.netloc}")
        lines += [f"{n}: {v}" for n, v in headers]
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace"))
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"malformed HTTP response {status_line[:80]!r}")
        resp_headers: dict[str, str] = {}
        for _ in range(200):  # header lines, bounded
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        # read (and drop) up to 10 KiB of body, as the kubelet does, so a server is not cut
        # off mid-answer; what happens to the body does not change the result
        status = int(parts[1])
        length = resp_headers.get("content-length", "")
        left = min(int(length), MAX_BODY) if length.isdigit() else MAX_BODY
        if status in (204, 304) or status < 200:
            left = 0

        async def drain(left: int) -> None:
            while left > 0 and (chunk := await reader.read(left)):
                left -= len(chunk)
        try:
            await asyncio.wait_for(drain(left), BODY_READ_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError):  # TimeoutError included
            pass
        return status, resp_headers
    finally:
        writer.close()


def _dial_error(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED:
        return "connect: connection refused"
    if isinstance(e, ConnectionResetError):
        return "read: connection reset by peer"
    return e.strerror or str(e) or type(e).__name__


async def http_get(action: Obj, target: Target, timeout: float, purpose: str = "probe") -> Outcome:
    """GET the action's URL: 200-399 success; a redirect to another host is not followed
    (WARNING, like the kubelet's "Probe terminated redirects"); anything else fails."""
    try:
        url = http_url(action, target)
    except ConfigError as e:
        return Outcome(UNKNOWN, str(e))
    headers = request_headers(action, purpose)
    first_host = urlsplit(url).hostname
    current = url
    try:
        async with asyncio.timeout(timeout):
            for hop in range(MAX_REDIRECTS + 1):
                status, resp_headers = await http_request(current, headers)
                location = resp_headers.get("location")
                if status in REDIRECT_CODES and location:
                    nxt = urljoin(current, location)
                    if urlsplit(nxt).scheme in ("http", "https") and urlsplit(nxt).hostname == first_host \
                            and hop < MAX_REDIRECTS:
                        current = nxt
                        continue
                break
    except TimeoutError:
        return Outcome(FAILURE, f'Get "{current}": context deadline exceeded '
                                f'(Client.Timeout exceeded while awaiting headers)')
    except (ValueError, ssl.SSLError, asyncio.IncompleteReadError) as e:  # SSLError is an OSError
        return Outcome(FAILURE, f'Get "{current}": {e}')
    except OSError as e:
        u = urlsplit(current)
        return Outcome(FAILURE, f'Get "{current}": dial tcp {u.hostname}:{u.port}: {_dial_error(e)}')
    if 200 <= status < 300:
        return Outcome(SUCCESS, "")
    if 300 <= status < 400:
        return Outcome(WARNING, f"Probe terminated redirects, Response status: {status}")
    return Outcome(FAILURE, f"HTTP probe failed with statuscode: {status}")


# ============================================================================ TCP

async def tcp_socket(action: Obj, target: Target, timeout: float) -> Outcome:
    try:
        port = resolve_port(action.get("port"), target.container)
    except ConfigError as e:
        return Outcome(UNKNOWN, str(e))
    host = action.get("host") or target.pod_ip
    if not host:
        return Outcome(UNKNOWN, "the pod has no IP yet")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(FAILURE, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return Outcome(FAILURE, f"dial tcp {host}:{port}: {_dial_error(e)}")
    writer.close()
    return Outcome(SUCCESS, "")


# ============================================================================ exec

@dataclass
class CommandResult:
    exit_code: int | None  # None: it did not run to an exit (not found, timed out)
    output: str = ""  # stdout and stderr together, at most MAX_BODY bytes
    timed_out: bool = False
    error: str = ""  # why it could not start


_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def exec_limiter() -> asyncio.Semaphore:
    """The semaphore bounding exec probes on the running loop."""
    loop = asyncio.get_running_loop()
    sem = _limiters.get(loop)
    if sem is None:
        sem = _limiters[loop] = asyncio.Semaphore(EXEC_CONCURRENCY)
    return sem


def _which(argv0: str, env: dict[str, str], cwd: str | None) -> str | None:
    base = os.path.abspath(cwd) if cwd else os.getcwd()
    if "/" in argv0:
        path = os.path.join(base, argv0)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    search = os.pathsep.join(os.path.join(base, d or ".") for d in env.get("PATH", os.defpath).split(os.pathsep))
    return shutil.which(argv0, path=search)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _exited(proc: subprocess.Popen) -> int:
    """Wait for our child without a thread: the loop watches its pidfd."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:
        while (rc := proc.poll()) is None:
            await asyncio.sleep(0.05)  # poll interval without pidfd support
        return rc
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
    try:
        if proc.poll() is None:
            await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


def _reap_soon(proc: subprocess.Popen) -> None:
    """A killed child we stopped waiting for (cancelled): reap it in the background."""
    if proc.poll() is not None:
        return
    task = asyncio.get_running_loop().create_task(_exited(proc))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task] = set()


async def run_command(argv: list[str], env: dict[str, str], cwd: str | None,
                      timeout: float | None) -> CommandResult:
    """Run argv as a host process in its own process group with exactly `env` in `cwd`,
    collecting its output. On timeout or cancellation its whole group is killed; when
    it exits, whatever it left running in its group is killed too."""
    if not argv:
        return CommandResult(None, error="no command given")
    if cwd is not None and not os.path.isdir(cwd):
        cwd = None
    exe = _which(argv[0], env, cwd)
    if exe is None:
        return CommandResult(None, error=f'exec: "{argv[0]}": executable file not found in $PATH')
    rfd, wfd = os.pipe()
    try:
        proc = subprocess.Popen(argv, executable=exe, stdin=subprocess.DEVNULL, stdout=wfd, stderr=wfd,
                                env=dict(env), cwd=cwd, start_new_session=True, close_fds=True)
    except OSError as e:
        os.close(rfd)
        return CommandResult(None, error=f'exec: "{argv[0]}": {e.strerror or e}')
    except (ValueError, TypeError) as e:
        os.close(rfd)
        return CommandResult(None, error=f"invalid command or environment: {e}")
    finally:
        os.close(wfd)
    loop = asyncio.get_running_loop()
    out = bytearray()
    eof = loop.create_future()
    os.set_blocking(rfd, False)

    def readable() -> None:
        try:
            chunk = os.read(rfd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            loop.remove_reader(rfd)
            if not eof.done():
                eof.set_result(None)
            return
        if len(out) < MAX_BODY:
            out.extend(chunk[: MAX_BODY - len(out)])
    loop.add_reader(rfd, readable)
    timed_out = False
    try:
        try:
            rc = await asyncio.wait_for(_exited(proc), timeout) if timeout else await _exited(proc)
        except asyncio.TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            rc = await _exited(proc)
        _kill_group(proc.pid)  # leftovers die with the command
        try:
            await asyncio.wait_for(asyncio.shield(eof), 0.5)  # bounded: a stray holder of the pipe
        except asyncio.TimeoutError:
            pass
    except BaseException:
        _kill_group(proc.pid)
        _reap_soon(proc)
        raise
    finally:
        loop.remove_reader(rfd)
        os.close(rfd)
    text = bytes(out).decode(errors="replace")
    if timed_out:
        return CommandResult(None, text, timed_out=True)
    return CommandResult(128 - rc if rc < 0 else rc, text)


def in_container(exec_session: Callable[[list[str]], Awaitable[Any]]):
    """A `Target.run` that runs the command in the container through its runtime's
    exec (`exec_session(argv)` -> an ExecSession; StartError if it cannot start): the
    container's namespaces, environment and working directory, not the node's."""
    async def run(argv: list[str], env: dict[str, str], cwd: str | None, timeout: float | None) -> CommandResult:
        try:
            session = await exec_session(argv)
        except Exception as e:  # StartError, or the runtime lost the container
            return CommandResult(None, error=str(e))
        out = bytearray()

        async def collect() -> int:
            while (piece := await session.read()) is not None:
                if len(out) < MAX_BODY:
                    out.extend(piece[1][: MAX_BODY - len(out)])
            return await session.wait()
        try:
            rc = await asyncio.wait_for(collect(), timeout) if timeout else await collect()
        except asyncio.TimeoutError:
            return CommandResult(None, bytes(out).decode(errors="replace"), timed_out=True)
        finally:
            await session.close()
        return CommandResult(rc, bytes(out).decode(errors="replace"))
    return run


def _quote(argv: list[str]) -> str:
    return "[" + " ".join(f'"{a}"' for a in argv) + "]"


async def exec_command(action: Obj, target: Target, timeout: float) -> Outcome:
    command = action.get("command")
    if not isinstance(command, list) or not command:
        return Outcome(UNKNOWN, "exec probe has no command")
    argv = [expand(str(a), target.env) for a in command]
    async with exec_limiter():
        r = await target.command(argv, timeout)
    if r.error:
        return Outcome(FAILURE, r.error)
    if r.timed_out:
        return Outcome(FAILURE, f"command {_quote(argv)} timed out after {timeout:g}s")
    if r.exit_code == 0:
        return Outcome(SUCCESS, r.output)
    # the kubelet reports the command's output; say how it ended when it printed nothing
    return Outcome(FAILURE, r.output.strip() or f"command {_quote(argv)} exited with code {r.exit_code}")


# ============================================================================ dispatch

HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


async def run_probe(probe: Obj, target: Target, timeout: float | None = None) -> Outcome:
    """Run a probe once. Never raises for the probe's own failures."""
    if timeout is None:
        timeout = settings(READINESS, probe)[2]
    if isinstance(probe.get("httpGet"), dict):
        return await http_get(probe["httpGet"], target, timeout)
    if isinstance(probe.get("tcpSocket"), dict):
        return await tcp_socket(probe["tcpSocket"], target, timeout)
    if isinstance(probe.get("exec"), dict):
        return await exec_command(probe["exec"], target, timeout)
    if isinstance(probe.get("grpc"), dict):
        return Outcome(UNKNOWN, "grpc probes are not supported by the sendo agent")
    return Outcome(UNKNOWN, "the probe has no handler (exec, httpGet, tcpSocket or grpc)")


# ============================================================================ the loop

class Threshold:
    """The kubelet's result run: the probe's state changes only after `success`
    successes, or `failure` failures, in a row. UNKNOWN results are not counted."""

    def __init__(self, initial: bool | None, success: int, failure: int):
        self.value = initial
        self.success, self.failure = max(1, success), max(1, failure)
        self.last: bool | None = None
        self.run = 0

    def observe(self, ok: bool) -> bool:
        """Count one result; True if the state changed."""
        if ok == self.last:
            self.run += 1
        else:
            self.last, self.run = ok, 1
        if self.run < (self.success if ok else self.failure):
            return False
        changed = self.value != ok
        self.value = ok
        return changed


Check = Callable[[], Awaitable[Outcome]]
OnResult = Callable[[str, bool], None]  # (kind, new state)
OnEvent = Callable[[str, str, str], None]  # (type, reason, message)


class ProbeLoop:
    """One probe of one container run. `run()` is the task body; cancel the task to stop
    it (the worker does when the container stops). It returns by itself after a startup
    probe succeeded, and after a liveness or startup probe failed (the container is then
    killed; its next run gets a new loop)."""

    def __init__(self, kind: str, probe: Obj, check: Check, *, started_at: float,
                 on_result: OnResult, on_event: OnEvent, gate: asyncio.Event | None = None,
                 initial: bool | None = None, clock: Callable[[], float] = time.time):
        self.kind = kind
        self.probe = probe
        self.check = check
        self.started_at = started_at
        self.on_result = on_result
        self.on_event = on_event
        self.gate = gate
        self.clock = clock
        self.delay, self.period, self.timeout, success, failure = settings(kind, probe)
        if initial is None:
            initial = {READINESS: False, LIVENESS: True, STARTUP: None}[kind]
        self.state = Threshold(initial, success, failure)
        self.runs = 0

    @property
    def title(self) -> str:
        return self.kind.capitalize()

    async def run(self) -> None:
        if self.gate is not None:
            await self.gate.wait()  # liveness and readiness wait for the startup probe
        wait = self.started_at + self.delay - self.clock()
        if self.kind == LIVENESS:
            # the kubelet's first liveness probe comes at its next tick, (0, period] later;
            # take the lenient end so a server still binding is not counted against it.
            # (Readiness is probed at once, as the kubelet triggers it when started.)
            wait = max(wait, 0) + self.period
        if wait > 0:
            await asyncio.sleep(wait)  # initialDelaySeconds from the container's start
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            if not await self.probe_once():
                return
            await asyncio.sleep(max(0.0, self.period - (loop.time() - began)))  # periodSeconds

    async def probe_once(self) -> bool:
        """Run the check once and act on it; False when the loop is done."""
        self.runs += 1
        try:
            # the checks bound themselves by timeoutSeconds; time an exec probe waits for a
            # free slot (EXEC_CONCURRENCY) is not held against it
            outcome = await self.check()
        except Exception as e:  # a bug in a check must not end probing silently
            log.exception("%s probe raised", self.kind)
            outcome = Outcome(UNKNOWN, f"{type(e).__name__}: {e}")
        if outcome.result == UNKNOWN:
            self.on_event("Warning", "Unhealthy", f"{self.title} probe errored: {outcome.message}")
            return True
        if outcome.result == FAILURE:
            self.on_event("Warning", "Unhealthy", f"{self.title} probe failed: {outcome.message}")
        elif outcome.result == WARNING:
            self.on_event("Warning", "ProbeWarning", f"{self.title} probe warning: {outcome.message}")
        if not self.state.observe(outcome.ok):
            return True
        self.on_result(self.kind, bool(self.state.value))
        if self.kind == STARTUP and self.state.value:
            return False  # started: the startup probe has done its job
        if self.kind in (LIVENESS, STARTUP) and not self.state.value:
            return False  # the container will be killed; a new run gets a new loop
        return True
