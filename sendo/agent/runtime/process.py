"""The `process` runtime: each container is a plain host process.

How a container maps onto a process, and why:

* The argv is exec'd directly (no shell in between) so the signals we send reach the
  program itself. It runs in its own session / process group (`start_new_session`),
  so signalling the group reaches every process the container started. When the
  main process ends, whatever is left in its group is killed, as the kernel does
  when pid 1 of a container's pid namespace exits: no process is left behind.
* stdout and stderr are the log file itself, opened O_APPEND: the process writes
  straight to it, so it keeps running and logging while the agent is down, and
  copytruncate rotation (sendo.agent.logs) works under it.
* A small JSON record per container in `state_dir` (pid, process start time, spec)
  lets a restarted agent adopt the processes that are still running. A process is
  identified by pid AND start time, so a recycled pid is never mistaken for ours.
  An adopted process is not our child, so its exit status cannot be read: it is
  reported as the kubelet reports a lost container (ContainerStatusUnknown, 137).
* A pod's sandbox is a loopback IP of the node's podCIDR (`loopback.py`), and its
  directory on the node is the containers' default working directory. The image is
  not used: the command runs from the host, so a container needs `command` or `args`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import os
import signal
import subprocess
import time

import orjson
import psutil

from ... import __version__
from ..logs import follow_log
from .base import (
    REASON_COMPLETED,
    REASON_ERROR,
    REASON_STATUS_UNKNOWN,
    UNKNOWN_EXIT_CODE,
    UNKNOWN_EXIT_MESSAGE,
    ContainerHandle,
    ContainerSpec,
    ExecSession,
    ExitInfo,
    Sandbox,
    SandboxConfig,
    StartError,
    container_id,
)
from . import hostexec, mountns, security
from .loopback import LoopbackSandboxes

log = logging.getLogger(__name__)

RECORD_VERSION = 1
# The kernel's start time is exact in clock ticks since boot; the epoch form also
# depends on the boot time, which the kernel may report a second apart over time.
_CREATE_TIME_SLACK = 1.0
# How often an adopted process is polled when pidfd_open is not available.
_ADOPTED_POLL_INTERVAL = 0.5


@dataclasses.dataclass
class _Entry:
    handle: ContainerHandle
    exit: asyncio.Future  # resolves to ExitInfo
    start_ticks: int | None = None  # /proc/<pid>/stat starttime, for identity checks
    adopted: bool = False
    task: asyncio.Task | None = None  # reaper (our child) or poller (adopted)
    pidfd: int | None = None  # exit watch for an adopted process


class ProcessRuntime:
    """Runs containers as host processes. One instance per agent; `state_dir` must
    survive agent restarts (it holds one JSON record per running container, and the
    pod sandboxes under `sandboxes/`)."""

    name = "process"
    # volumes at their mountPath (a private mount namespace per container) need root
    mounts_volumes = mountns.available()
    usage_source = "proctree"  # a container is its process tree (agent/usage.py)

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._entries: dict[str, _Entry] = {}
        self._background: set[asyncio.Task] = set()  # reapers of forgotten children
        self._stdin_keep: dict[str, int] = {}  # container id -> write end of a stdinOnce FIFO
        self.sandboxes = LoopbackSandboxes(os.path.join(state_dir, "sandboxes"))

    def version(self) -> str:
        return f"process://{__version__}"

    # ---- sandboxes -------------------------------------------------------------

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self.sandboxes.ips.net = ipaddress.ip_network(pod_cidr)

    async def run_pod_sandbox(self, config: SandboxConfig) -> Sandbox:
        return self.sandboxes.run(config)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        for entry in [e for e in self._entries.values() if e.handle.spec.sandbox_id == sandbox_id]:
            await self.stop(entry.handle, 0)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self.stop_pod_sandbox(sandbox_id)
        for entry in [e for e in self._entries.values() if e.handle.spec.sandbox_id == sandbox_id]:
            await self.forget(entry.handle)
        self.sandboxes.remove(sandbox_id)

    async def list_pod_sandboxes(self) -> list[Sandbox]:
        return list(self.sandboxes.by_id.values())

    # ---- start ---------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> ContainerHandle:
        cid = container_id(spec)
        old = self._entries.get(cid)
        if old is not None and not old.exit.done():
            raise RuntimeError(f"container {cid} is already running (pid {old.handle.pid})")
        if not spec.argv:
            raise StartError("no command specified: the process runtime runs no image, so it needs "
                             "command or args")
        cwd = self._working_dir(spec)
        spec = dataclasses.replace(spec, working_dir=cwd)  # the handle tells hooks and probes where it runs
        executable = _resolve_executable(spec.argv[0], spec.env, cwd)
        argv, executable = _with_privileges(spec, spec.argv, executable)
        if spec.mounts:
            if not self.mounts_volumes:
                raise StartError("volumes cannot be mounted: the process runtime mounts them only as root")
            argv, executable = mountns.wrap(argv, executable, spec.mounts, cwd)

        fd = _open_log(spec.log_path)
        stdin_fd = subprocess.DEVNULL
        if spec.stdin:
            try:
                stdin_fd = self._open_stdin_fifo(cid, spec.stdin_once)
            except OSError as e:
                os.close(fd)
                raise StartError(f"cannot make the container's stdin in {self.state_dir}: {e.strerror or e}") from e
        try:
            # Popen (vfork+exec, about a millisecond) rather than asyncio's subprocess
            # transports: those wait in a thread per child on Python 3.11 and kill the
            # child when the event loop closes, but containers must outlive the agent.
            proc = subprocess.Popen(
                argv,
                executable=executable,
                stdin=stdin_fd,
                stdout=fd,
                stderr=fd,
                env=dict(spec.env),  # exactly this env, even when empty
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise StartError(_exec_error(spec.argv[0], e)) from e
        except (ValueError, TypeError) as e:  # e.g. a NUL byte in an env value
            raise StartError(f"invalid container command or environment: {e}") from e
        finally:
            os.close(fd)
            if stdin_fd != subprocess.DEVNULL:
                os.close(stdin_fd)
        started_at = time.time()

        ident = _identity(proc.pid)
        handle = ContainerHandle(
            id=cid,
            spec=spec,
            pid=proc.pid,
            started_at=started_at,
            create_time=ident[1] if ident else None,
        )
        entry = _Entry(
            handle=handle,
            exit=asyncio.get_running_loop().create_future(),
            start_ticks=ident[0] if ident else None,
        )
        self._entries[cid] = entry
        entry.task = asyncio.create_task(self._reap(entry, proc), name=f"reap {cid}")
        try:
            self._write_record(entry)
        except OSError as e:
            # A container we could not adopt after a restart must not run at all.
            _kill_group(proc.pid, signal.SIGKILL)
            await asyncio.shield(entry.exit)
            del self._entries[cid]
            raise StartError(f"cannot record container state in {self.state_dir}: {e.strerror or e}") from e
        return handle

    async def verify_security(self, spec: ContainerSpec) -> None:
        """Raise SecurityRefused for what a host process cannot be given (security.py)."""
        security.verify_process(spec.security_context, os.geteuid())

    def _working_dir(self, spec: ContainerSpec) -> str | None:
        """The pod's directory unless the container names one. In a sandbox a missing
        working directory is created, as an engine creates it inside the container;
        a container run on its own must name one that exists."""
        sandbox = self.sandboxes.by_id.get(spec.sandbox_id) if spec.sandbox_id else None
        wd = spec.working_dir or (sandbox.pod_dir if sandbox else None)
        if wd is not None and sandbox is not None:
            try:
                os.makedirs(wd, exist_ok=True)
            except OSError as e:
                raise StartError(f'working directory "{wd}": {e.strerror or e}') from e
        if wd is not None and not os.path.isdir(wd):
            raise StartError(f'working directory "{wd}": no such directory')
        return wd

    async def _reap(self, entry: _Entry, proc: subprocess.Popen) -> None:
        rc = await _wait_child(proc)
        finished_at = time.time()
        _kill_group(entry.handle.pid, signal.SIGKILL)  # leftovers die with the main process
        if rc < 0:
            info = ExitInfo(128 - rc, -rc, finished_at, REASON_ERROR)
        else:
            info = ExitInfo(rc, None, finished_at, REASON_COMPLETED if rc == 0 else REASON_ERROR)
        if not entry.exit.done():
            entry.exit.set_result(info)

    # ---- wait / stop -----------------------------------------------------------

    async def wait(self, handle: ContainerHandle) -> ExitInfo:
        # shield: a waiter being cancelled must not cancel the shared future
        return await asyncio.shield(self._entry(handle).exit)

    async def stop(self, handle: ContainerHandle, grace_seconds: float) -> ExitInfo:
        entry = self._entry(handle)
        if not entry.exit.done():
            self._signal(entry, signal.SIGTERM)
            if grace_seconds > 0:
                await asyncio.wait([entry.exit], timeout=grace_seconds)
            if not entry.exit.done():
                self._signal(entry, signal.SIGKILL)
        return await asyncio.shield(entry.exit)

    def _signal(self, entry: _Entry, sig: int) -> None:
        """Signal the container's process group. For an adopted process, check first
        that the pid still belongs to it (our own children cannot be recycled
        before we reap them)."""
        pid = entry.handle.pid
        if entry.adopted:
            ident = _identity(pid)
            if ident is None or ident[0] != entry.start_ticks:
                return
        _kill_group(pid, sig)

    # ---- exec / attach ---------------------------------------------------------------

    async def exec(self, handle: ContainerHandle, argv: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        """A host process with the container's environment and working directory, in
        the container's mount namespace when it has one (its volumes at their paths)."""
        entry = self._entry(handle)
        if entry.exit.done():
            raise StartError(f"container {handle.spec.container_name} is not running")
        if not argv:
            raise StartError("no command given")
        spec = handle.spec
        executable = _resolve_executable(argv[0], spec.env, spec.working_dir)
        argv, executable = _with_privileges(spec, argv, executable)  # as the container's user
        if spec.mounts and self.mounts_volumes:  # start() wrapped it in a mount namespace
            argv, executable = mountns.enter(handle.pid, argv, executable, spec.working_dir)
        try:
            return hostexec.start(argv, executable=executable, env=spec.env, cwd=spec.working_dir, stdin=stdin,
                                  tty=tty, wait_child=_wait_child)
        except OSError as e:
            raise StartError(_exec_error(argv[0], e)) from e
        except (ValueError, TypeError) as e:
            raise StartError(f"invalid command: {e}") from e

    async def attach(self, handle: ContainerHandle, *, stdin: bool, tty: bool) -> ExecSession:
        """The container's stdin FIFO (if it declared `stdin: true`) and its log from now on."""
        entry = self._entry(handle)
        if entry.exit.done():
            raise StartError(f"container {handle.spec.container_name} is not running")
        fifo = self._fifo_path(handle.id) if handle.spec.stdin and stdin else None
        output = follow_log(handle.spec.log_path, tail_lines=0, is_running=lambda: not entry.exit.done())
        on_closed = (lambda: self._release_stdin(handle.id)) if handle.spec.stdin_once else None
        return hostexec.FifoAttach(output, fifo, entry.exit, on_closed)

    def _fifo_path(self, cid: str) -> str:
        return os.path.join(self.state_dir, cid.replace("/", "_") + ".stdin")

    def _open_stdin_fifo(self, cid: str, once: bool) -> int:
        """The container's stdin: a FIFO that `attach` writes to. Without stdinOnce the
        container holds a write end itself, so it never reads end of file; with it, the
        runtime holds the only other write end until the first attach closes its stdin."""
        path = self._fifo_path(cid)
        _unlink(path)
        os.mkfifo(path, 0o600)
        if not once:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        keep = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._stdin_keep[cid] = keep
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # does not block: `keep` is a writer

    def _release_stdin(self, cid: str) -> None:
        keep = self._stdin_keep.pop(cid, None)
        if keep is not None:
            os.close(keep)

    # ---- adopt / forget ----------------------------------------------------------

    async def adopt(self) -> list[ContainerHandle]:
        """Read the records back; take over every container whose process is still
        the same process (pid and start time). Clean up the other records."""
        self.sandboxes.load()
        handles = []
        for name in sorted(os.listdir(self.state_dir)):
            path = os.path.join(self.state_dir, name)
            if name.endswith(".tmp"):  # a write interrupted by a crash
                _unlink(path)
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as f:
                    rec = orjson.loads(f.read())
                handle, start_ticks = _handle_from_record(rec)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("dropping unreadable container record %s: %s", path, e)
                _unlink(path)
                continue
            known = self._entries.get(handle.id)
            if known is not None:
                if not known.exit.done():
                    handles.append(known.handle)
                continue
            if self._adopt_one(handle, start_ticks):
                handles.append(handle)
            else:
                _unlink(path)
        return handles

    def _adopt_one(self, handle: ContainerHandle, start_ticks: int | None) -> bool:
        pid = handle.pid
        pidfd = None
        try:
            # Opened before the identity check: if the check passes, the pidfd is
            # known to refer to our process even if it exits right after.
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Gone. Anything still in its process group is ours (a pid is not reused
            # while it names a live group): finish what its exit should have done.
            _kill_group(pid, signal.SIGKILL)
            return False
        except (AttributeError, OSError):
            pidfd = None  # no pidfd support: fall back to polling
        ident = _identity(pid)
        same = (
            ident is not None
            and start_ticks is not None
            and ident[0] == start_ticks
            and handle.create_time is not None
            and abs(ident[1] - handle.create_time) <= _CREATE_TIME_SLACK
        )
        if not same or ident[2] == "Z":
            # Gone, or exited and not yet reaped (a zombie still holds its pid): any
            # leftovers in the group are ours. A different process now holding the
            # pid means our group was empty: touch nothing.
            if ident is None or same:
                _kill_group(pid, signal.SIGKILL)
            if pidfd is not None:
                os.close(pidfd)
            return False

        loop = asyncio.get_running_loop()
        entry = _Entry(handle=handle, exit=loop.create_future(), start_ticks=start_ticks, adopted=True)
        self._entries[handle.id] = entry
        if pidfd is not None:
            entry.pidfd = pidfd
            loop.add_reader(pidfd, self._adopted_exited, entry)
        else:
            entry.task = asyncio.create_task(self._poll_adopted(entry), name=f"poll {handle.id}")
        return True

    def _adopted_exited(self, entry: _Entry) -> None:
        """The adopted process ended. Its parent (not us) got the exit status."""
        if entry.pidfd is not None:
            asyncio.get_running_loop().remove_reader(entry.pidfd)
            os.close(entry.pidfd)
            entry.pidfd = None
        _kill_group(entry.handle.pid, signal.SIGKILL)
        if not entry.exit.done():
            entry.exit.set_result(
                ExitInfo(UNKNOWN_EXIT_CODE, None, time.time(), REASON_STATUS_UNKNOWN, UNKNOWN_EXIT_MESSAGE)
            )

    async def _poll_adopted(self, entry: _Entry) -> None:
        while True:
            ident = _identity(entry.handle.pid)
            if ident is None or ident[0] != entry.start_ticks or ident[2] == "Z":
                self._adopted_exited(entry)
                return
            await asyncio.sleep(_ADOPTED_POLL_INTERVAL)

    async def forget(self, handle: ContainerHandle) -> None:
        """Drop the record. This does not stop the process: call it once the
        container is gone (after wait() or stop())."""
        entry = self._entries.pop(handle.id, None)
        if entry is not None:
            self._detach(entry)
        self._release_stdin(handle.id)
        _unlink(self._record_path(handle.id))
        _unlink(self._fifo_path(handle.id))

    async def close(self) -> None:
        """Stop watching every container but leave them running and their records in
        place, so a later instance can adopt them (agent shutdown). Our own children
        are still reaped when they exit while this process lives."""
        for entry in self._entries.values():
            self._detach(entry)
        self._entries.clear()

    def _detach(self, entry: _Entry) -> None:
        if entry.adopted:
            if entry.pidfd is not None:
                asyncio.get_running_loop().remove_reader(entry.pidfd)
                os.close(entry.pidfd)
                entry.pidfd = None
            if entry.task is not None:
                entry.task.cancel()
            if not entry.exit.done():
                entry.exit.cancel()
        elif entry.task is not None and not entry.task.done():
            # Our own child: keep its reaper while this process lives, so it does not
            # become a zombie; the child itself keeps running after we are gone.
            self._background.add(entry.task)
            entry.task.add_done_callback(self._background.discard)

    # ---- records --------------------------------------------------------------------

    def _entry(self, handle: ContainerHandle) -> _Entry:
        try:
            return self._entries[handle.id]
        except KeyError:
            raise KeyError(f"unknown container {handle.id}: not started or adopted by this runtime") from None

    def _record_path(self, cid: str) -> str:
        return os.path.join(self.state_dir, cid.replace("/", "_") + ".json")

    def _write_record(self, entry: _Entry) -> None:
        """Write-then-rename, so a crash never leaves half a record. No fsync: after a
        machine crash the processes are gone anyway."""
        h = entry.handle
        rec = {
            "version": RECORD_VERSION,
            "id": h.id,
            "pid": h.pid,
            "create_time": h.create_time,
            "start_ticks": entry.start_ticks,
            "started_at": h.started_at,
            "spec": h.spec,  # orjson writes a dataclass as asdict would, without its deep copy
        }
        path = self._record_path(h.id)
        tmp = path + ".tmp"
        # 0600: the env may carry values from Secrets
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(orjson.dumps(rec))
        os.replace(tmp, path)


# ---- helpers ----------------------------------------------------------------------


def _handle_from_record(rec: dict) -> tuple[ContainerHandle, int | None]:
    spec = ContainerSpec.from_dict(rec["spec"])
    handle = ContainerHandle(
        id=rec["id"],
        spec=spec,
        pid=int(rec["pid"]),
        started_at=float(rec["started_at"]),
        create_time=rec.get("create_time"),
    )
    return handle, rec.get("start_ticks")


def _identity(pid: int) -> tuple[int, float, str] | None:
    """(start time in clock ticks since boot, start time as epoch seconds, state
    letter) of a process, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name may contain spaces and ')': split after the last ')'
        fields = stat[stat.rindex(b")") + 2 :].split()
        state = fields[0].decode()
        ticks = int(fields[19])
        create_time = psutil.Process(pid).create_time()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return ticks, create_time, state


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:  # not ours: never expected, worth a trace
        log.warning("cannot signal process group %d: %s", pgid, e)


async def _wait_child(proc: subprocess.Popen) -> int:
    """Wait for our own child with no thread: the event loop watches its pidfd."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd support: poll
        while (rc := proc.poll()) is None:
            await asyncio.sleep(_ADOPTED_POLL_INTERVAL)  # poll interval without pidfd
        return rc
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
    try:
        if proc.poll() is None:  # it may have exited before the reader was added
            await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


def _with_privileges(spec: ContainerSpec, argv: list[str], executable: str) -> tuple[list[str], str]:
    """`argv` run through setpriv when the securityContext asks for another user, groups,
    fewer capabilities or no_new_privs (verify_security refused what cannot be had)."""
    prefix = security.setpriv_argv(spec.security_context, os.geteuid())
    if not prefix:
        return argv, executable
    return [*prefix, executable, *argv[1:]], prefix[0]


def _resolve_executable(argv0: str, env: dict[str, str], cwd: str | None) -> str:
    """Find what to exec, like execvp but on the container's PATH (not the agent's),
    so that a missing binary becomes a clear StartError before we fork."""
    base = os.path.abspath(cwd) if cwd else os.getcwd()  # exec happens after the chdir
    if "/" in argv0:
        path = os.path.join(base, argv0)
        if not os.path.exists(path):
            raise StartError(f'exec: "{argv0}": no such file or directory')
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise StartError(f'exec: "{argv0}": permission denied')
        return path
    for d in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(base, d or ".", argv0)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise StartError(f'exec: "{argv0}": executable file not found in $PATH')


def _exec_error(argv0: str, e: OSError) -> str:
    what = {
        errno.ENOENT: "no such file or directory",
        errno.EACCES: "permission denied",
        errno.ENOEXEC: "exec format error",
        errno.ENOTDIR: "not a directory",
    }.get(e.errno, e.strerror or str(e))
    return f'exec: "{argv0}": {what}'


def _open_log(path: str) -> int:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise StartError(f"cannot open container log {path}: {e.strerror or e}") from e


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
