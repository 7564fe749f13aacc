"""Volumes at their mountPath for the process runtime: a private mount namespace per
container, with one bind mount per volumeMount, made just before the command runs.

The container is started as `unshare --mount` (util-linux; a new mount namespace whose
mounts are private, so nothing it mounts is seen by the host or other pods) running a
short POSIX shell script that creates each missing mount point (a directory, or an
empty file for a file volume), bind-mounts the volume there (then remounts it
read-only when asked), changes to the working directory and execs the command. Every
exec keeps the pid, so the runtime's pid, process group and signals are the command's.
Only root may do this; `available()` says whether this agent can.

`kubectl exec` (and exec probes and hooks) into such a container runs through
`nsenter --mount` into the container's namespace, so it sees the same files at the
same paths as the container's own process.
"""
from __future__ import annotations

import os
import shutil

from .base import Mount

SCRIPT = r"""
cwd=$1; shift
while [ "$1" != "--" ]; do
  if [ ! -e "$2" ]; then
    if [ "$4" = d ]; then mkdir -p "$2"; else mkdir -p "$(dirname "$2")" && : > "$2"; fi
  fi
  mount --bind "$1" "$2" || { echo "sendo: cannot mount $1 at $2" >&2; exit 126; }
  if [ "$3" = ro ]; then
    mount -o remount,bind,ro "$2" || { echo "sendo: cannot make $2 read-only" >&2; exit 126; }
  fi
  shift 4
done
shift
cd "$cwd" || exit 126
exec "$@"
"""


def available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) is not None for tool in ("unshare", "mount", "nsenter"))


# Run after entering the namespace: setns() moves the working directory to the
# namespace's root, so go back to the container's one (which may be inside a volume).
ENTER_SCRIPT = 'cd "$1" || exit 126; shift; exec "$@"'


def enter(pid: int, argv: list[str], executable: str, cwd: str | None) -> tuple[list[str], str]:
    """The argv (and executable) that runs `executable argv[1:]` in the mount namespace
    of process `pid` (a container started by `wrap`), in `cwd`."""
    nsenter = shutil.which("nsenter") or "nsenter"
    return [nsenter, f"--target={pid}", "--mount", "--", "/bin/sh", "-c", ENTER_SCRIPT, "sendo-exec",
            cwd or "/", executable, *argv[1:]], nsenter


def wrap(argv: list[str], executable: str, mounts: list[Mount], cwd: str | None) -> tuple[list[str], str]:
    """The argv (and executable) that runs `executable argv[1:]` with `mounts` in place.
    Parents are mounted before what is inside them."""
    unshare = shutil.which("unshare") or "unshare"
    out = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", SCRIPT, "sendo-mount",
           cwd or os.getcwd()]
    for m in sorted(mounts, key=lambda m: os.path.normpath(m.container_path).count("/")):
        kind = "d" if os.path.isdir(m.host_path) else "f"
        out += [m.host_path, os.path.normpath(m.container_path), "ro" if m.read_only else "rw", kind]
    return out + ["--", executable, *argv[1:]], unshare
