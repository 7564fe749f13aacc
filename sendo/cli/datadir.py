"""One running `sendo up` / `sendo server` per data directory.

Two processes on one data dir would share its SQLite store, kubeconfig, engine socket
and pods, and each would stop the other's containers when it exits. The first takes an
exclusive lock on DATA_DIR/lock for its whole life (the kernel releases it when the
process ends, even by kill -9); a second one ends at once with a message naming the
first one's PID.
"""
from __future__ import annotations

import fcntl
import os

from ..private import private_dir

_held: list[int] = []  # the lock's descriptor, kept open until the process ends


class DataDirInUse(Exception):
    pass


def lock_data_dir(data_dir: str) -> None:
    private_dir(data_dir)
    path = os.path.join(data_dir, "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # children do not inherit it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirInUse(f"{data_dir} is in use by another sendo (pid {holder}): stop it first (Ctrl-C in "
                           f"its terminal), or give this one its own --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.append(fd)
