"""Container log files: layout, rotation, reading and following.

A container's stdout and stderr are one file that the process itself writes with
O_APPEND (see runtime/process.py); the agent never sits in the data path. So:

* rotation is copytruncate: copy the file aside, then truncate it in place; the
  writer's next append lands at the new end (offset 0), with no reopen needed;
* the file holds raw output, with no per-line timestamps. `since_time` can only be
  judged per file (by its modification time), not per line.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_BLOCK = 64 * 1024


def container_log_path(
    root: str, namespace: str, pod_name: str, pod_uid: str, container: str, attempt: int
) -> str:
    """The kubelet's layout: one directory per pod, one per container, one file per attempt."""
    return os.path.join(root, f"{namespace}_{pod_name}_{pod_uid}", container, f"{attempt}.log")


# ---- rotation -------------------------------------------------------------------


def rotate_if_needed(path: str, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = 1) -> bool:
    """Rotate `path` by copytruncate once it reaches `max_bytes`; keep `keep` copies
    (path.1 the newest). Returns True if it rotated. Blocking (it copies up to
    max_bytes): call it with asyncio.to_thread.

    Bytes the writer appends between the end of the copy and the truncation would be
    lost; the copy is topped up right before truncating to make that window tiny."""
    try:
        if os.stat(path).st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    if keep < 1:
        os.truncate(path, 0)
        return True
    for i in range(keep - 1, 0, -1):
        older = f"{path}.{i}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{i + 1}")
    copy = f"{path}.1"
    tmp = f"{copy}.tmp"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        # A fresh inode for every copy: followers tell a new copy from an old one.
        os.replace(tmp, copy)
        rest = src.read()
        os.truncate(path, 0)
        dst.write(rest)
    return True


# ---- reading ----------------------------------------------------------------------


async def read_log(
    path: str,
    *,
    tail_lines: int | None,
    limit_bytes: int | None,
    since_time: float | None = None,
) -> bytes:
    """The current log file (not the rotated copies, like the kubelet): the last
    `tail_lines` lines, cut to the first `limit_bytes` bytes. With `since_time`, a file
    last written before that time yields nothing. A missing file reads as empty."""
    return await asyncio.to_thread(_read_log, path, tail_lines, limit_bytes, since_time)


def _read_log(path, tail_lines, limit_bytes, since_time) -> bytes:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return b""
    with f:
        st = os.fstat(f.fileno())
        if since_time is not None and st.st_mtime < since_time:
            return b""
        size = st.st_size
        start = _tail_offset(f, size, tail_lines)
        length = size - start
        if limit_bytes is not None and limit_bytes >= 0:
            length = min(length, limit_bytes)
        f.seek(start)
        return f.read(length)


def _tail_offset(f, size: int, tail_lines: int | None) -> int:
    """Offset where the last `tail_lines` lines of the first `size` bytes begin.
    A final newline ends the last line; it does not start an empty one."""
    if tail_lines is None or tail_lines < 0 or size == 0:
        return 0
    if tail_lines == 0:
        return size
    f.seek(size - 1)
    end = size - 1 if f.read(1) == b"\n" else size
    found = 0
    pos = end
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == tail_lines:
                return pos + i + 1
    return 0


# ---- following ----------------------------------------------------------------------


async def follow_log(
    path: str,
    *,
    tail_lines: int | None,
    is_running: Callable[[], bool],
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """Yield the file's content (the last `tail_lines` lines), then new data as it is
    written, until `is_running()` is False and the file is drained.

    Polls the file size every `poll_interval` seconds: the writer is another process
    appending to a plain file, and one fstat per 0.1 s is cheaper and simpler than
    inotify. Survives copytruncate rotation and the file being replaced (see
    `_Follower`). Reads are 64 KiB from a hot local file, done on the loop.
    """
    fol = _Follower(path, tail_lines)
    try:
        while True:
            # Sample before reading: once the writer is known to be done, one more
            # pass drains everything it wrote.
            running = is_running()
            for chunk in fol.drain():
                yield chunk
            if fol.replaced():
                for chunk in fol.drain():  # the last words of the old file
                    yield chunk
                fol.reopen()
                continue  # read the new file before deciding to stop
            if not running:
                return
            await asyncio.sleep(poll_interval)
    finally:
        fol.close()


class _Follower:
    """Where we are in a log file that another process appends to."""

    def __init__(self, path: str, tail_lines: int | None):
        self.path = path
        self.copy = f"{path}.1"
        self.tail_lines = tail_lines  # applies to the first file we open only
        self.f = None
        self.pos = 0
        self.copy_sig = None

    def drain(self):
        """Yield what was appended since the last call. A size below our offset means
        copytruncate: the bytes we had not read yet are in the fresh copy (path.1),
        the rest is in the file from its start."""
        if self.f is None and not self._open():
            return
        while True:
            size = os.fstat(self.f.fileno()).st_size
            if size < self.pos:
                sig = _sig(self.copy)
                if sig is not None and sig != self.copy_sig:
                    yield from _read_from(self.copy, self.pos)
                self.copy_sig = sig
                self.pos = 0
                continue
            if size == self.pos:
                return
            self.f.seek(self.pos)
            data = self.f.read(min(_BLOCK, size - self.pos))
            if not data:
                return
            self.pos += len(data)
            yield data

    def _open(self) -> bool:
        self.f = _open(self.path)
        if self.f is None:
            return False
        self.pos = _tail_offset(self.f, os.fstat(self.f.fileno()).st_size, self.tail_lines)
        self.tail_lines = None
        self.copy_sig = _sig(self.copy)
        return True

    def replaced(self) -> bool:
        """A different file is now at `path` (moved or deleted and created anew)."""
        if self.f is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # deleted: keep what we have open
        return st.st_ino != os.fstat(self.f.fileno()).st_ino

    def reopen(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _sig(path: str):
    """Tells one rotated copy from the next: each copy is a new file renamed into
    place while the previous one still exists, so its inode number differs."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _read_from(path: str, pos: int):
    try:
        with open(path, "rb") as g:
            g.seek(pos)
            while data := g.read(_BLOCK):
                yield data
    except FileNotFoundError:
        return
