"""Files that hold secrets (tokens, keys, the store, kubeconfigs): 0600 in 0700 directories.

The mode is given when the file or directory is created (the umask can only take bits
away), never by a chmod afterwards, so no other user can open one in between. SQLite
creates ``-wal`` and ``-shm`` with the mode of the database file, so a database
created here keeps them private too.
"""
from __future__ import annotations

import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str, own: bool = False) -> str:
    """Make ``path`` and any missing parent 0700. ``own``: the directory is sendo's alone (not a
    data dir a user named, which could be /tmp), so an existing one made by an older sendo is
    tightened too."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        private_dir(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if own:
            tighten(path, DIR_MODE)
    return path


def create_private(*paths: str) -> None:
    """Create each file empty and 0600 unless it exists (a database a library opens next);
    an existing one left readable by an older sendo is tightened."""
    for path in paths:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            tighten(path, FILE_MODE)


def tighten(path: str, mode: int = FILE_MODE) -> None:
    """Take group and other bits off a file or directory that sendo made, if an older version left them."""
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, mode)


def write_private(path: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (0600 unless the file is public)."""
    private_dir(os.path.dirname(path))
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
