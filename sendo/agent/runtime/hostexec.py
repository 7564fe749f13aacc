"""`kubectl exec` and `kubectl attach` for containers that are host processes (the
`process` runtime).

exec: the command is a new host process with the container's environment and working
directory, in a session of its own. Without a TTY its stdin, stdout and stderr are
pipes; with one they are the slave side of a pseudo-terminal that is also its
controlling terminal (so a shell is interactive and `stty`/resize work), and the
agent reads and writes the master side. Everything is read and written through the
event loop (non-blocking file descriptors), with no thread per session.

attach: the container's stdin, when it declares `stdin: true`, is a FIFO in the
runtime's state directory (so a restarted agent can still write to it); its output
is its log file, followed from the moment of the attach.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
from typing import AsyncIterator, Callable

CHUNK = 64 * 1024


async def read_fd(fd: int) -> bytes:
    """The next bytes of a non-blocking fd; b"" at its end (EIO is how a pty master
    says its slave side is closed)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await _ready(loop.add_reader, loop.remove_reader, fd)
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise


async def write_fd(fd: int, data: bytes) -> None:
    """All of `data` to a non-blocking fd, waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _ready(loop.add_writer, loop.remove_writer, fd)


async def _ready(add: Callable, remove: Callable, fd: int) -> None:
    fut = asyncio.get_running_loop().create_future()
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


def _nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class HostExec:
    """One `kubectl exec` command running as a host process (see `start`)."""

    def __init__(self, proc: subprocess.Popen, stdin_fd: int | None, outputs: list[tuple[int, int]],
                 tty_fd: int | None, wait_child: Callable[[subprocess.Popen], "asyncio.Future[int] | object"]):
        self.proc = proc
        self._stdin = stdin_fd  # our end of its stdin (the pty master with a TTY)
        self._tty = tty_fd
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=16)
        self._readers = [asyncio.create_task(self._pump(stream, fd)) for stream, fd in outputs]
        self._open_readers = len(self._readers)
        self._exit = asyncio.ensure_future(wait_child(proc))  # type: ignore[arg-type]

    async def _pump(self, stream: int, fd: int) -> None:
        try:
            while data := await read_fd(fd):
                await self._queue.put((stream, data))
        except OSError:
            pass
        finally:
            if fd != self._tty:
                _close(fd)
            self._open_readers -= 1
            if self._open_readers == 0:
                await self._queue.put(None)

    async def read(self) -> tuple[int, bytes] | None:
        if self._open_readers == 0 and self._queue.empty():
            return None
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        if self._stdin is not None and data:
            try:
                await write_fd(self._stdin, data)
            except OSError:  # the command closed its stdin or ended
                pass

    async def close_stdin(self) -> None:
        if self._tty is not None:
            # a terminal has no half-close: the line discipline's EOF character is the
            # nearest thing (a shell reading the terminal ends as on Ctrl-D)
            await self.write(b"\x04")
            return
        fd, self._stdin = self._stdin, None
        _close(fd)

    async def resize(self, width: int, height: int) -> None:
        if self._tty is not None and width > 0 and height > 0:
            try:
                fcntl.ioctl(self._tty, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            except OSError:
                pass

    async def wait(self) -> int:
        rc = await asyncio.shield(self._exit)
        return 128 - rc if rc < 0 else rc

    async def close(self) -> None:
        if not self._exit.done():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            await asyncio.shield(self._exit)
        for t in self._readers:
            t.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._stdin != self._tty:
            _close(self._stdin)
        _close(self._tty)
        self._stdin = self._tty = None


def _make_controlling_tty() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def start(argv: list[str], *, executable: str, env: dict[str, str], cwd: str | None, stdin: bool, tty: bool,
          wait_child: Callable) -> HostExec:
    """Start the command; OSError if it cannot be (the caller words the message)."""
    if tty:
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(argv, executable=executable, stdin=slave, stdout=slave, stderr=slave,
                                    env=dict(env), cwd=cwd, start_new_session=True,
                                    preexec_fn=_make_controlling_tty)
        except BaseException:
            _close(master)
            raise
        finally:
            _close(slave)
        _nonblocking(master)
        return HostExec(proc, master, [(1, master)], master, wait_child)
    proc = subprocess.Popen(argv, executable=executable, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=cwd,
                            start_new_session=True)
    fds = [os.dup(f.fileno()) for f in (proc.stdout, proc.stderr)]  # type: ignore[union-attr]
    stdin_fd = os.dup(proc.stdin.fileno()) if proc.stdin is not None else None
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()
    for fd in [*fds, *([stdin_fd] if stdin_fd is not None else [])]:
        _nonblocking(fd)
    return HostExec(proc, stdin_fd, [(1, fds[0]), (2, fds[1])], None, wait_child)


# ------------------------------------------------------------------------------ attach

class FifoAttach:
    """`kubectl attach` to a host-process container: its stdin FIFO (when it has one)
    and its log file from now on, until the container ends."""

    def __init__(self, output: AsyncIterator[bytes], fifo: str | None, ended: "asyncio.Future",
                 on_stdin_closed: Callable[[], None] | None = None):
        self._output = output
        self._fifo = fifo
        self._fd: int | None = None
        self._ended = ended
        self._on_stdin_closed = on_stdin_closed

    async def read(self) -> tuple[int, bytes] | None:
        try:
            return 1, await self._output.__anext__()
        except StopAsyncIteration:
            return None

    async def write(self, data: bytes) -> None:
        if self._fifo is None or not data:
            return
        try:
            if self._fd is None:
                # O_NONBLOCK: a FIFO with no reader (the container ended) fails at once
                self._fd = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            await write_fd(self._fd, data)
        except OSError:
            pass

    async def close_stdin(self) -> None:
        fd, self._fd = self._fd, None
        _close(fd)
        if self._on_stdin_closed is not None:
            self._on_stdin_closed()

    async def resize(self, width: int, height: int) -> None:
        """The container's output is a log file, not a terminal: nothing to resize."""

    async def wait(self) -> int:
        info = await asyncio.shield(self._ended)
        return int(getattr(info, "exit_code", 0))

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        _close(fd)
        aclose = getattr(self._output, "aclose", None)
        if aclose is not None:
            await aclose()
