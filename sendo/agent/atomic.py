"""Files of a ConfigMap, Secret, downward API or projected volume, replaced all at once.

The layout is the kubelet's (its AtomicWriter), so programs that watch for it work:

    <dir>/..2026_12_03_10_49_51.123456789abc/   the files of one version (0755 dir)
    <dir>/..data -> ..2026_12_03_10_49_51.123456789abc
    <dir>/<key>  -> ..data/<key>                  one link per top-level name

A new version is written into a fresh timestamped directory, then `..data` is
switched to it with one rename (readers see the old set or the new set, never a mix),
then the per-key links are added or removed and the old directory is deleted. Links
are relative, so the directory reads the same wherever it is bind-mounted.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

DATA = "..data"

Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def current(target: str) -> Payload | None:
    """What the volume holds now (None if it was never written)."""
    data = os.path.join(target, DATA)
    if not os.path.islink(data):
        return None
    out: Payload = {}
    root = os.path.realpath(data)
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = (fh.read(), os.stat(path).st_mode & 0o7777)
    return out


def write(target: str, payload: Payload) -> bool:
    """Make `target` hold exactly `payload`; False (and nothing touched) when it already does."""
    os.makedirs(target, exist_ok=True)
    if current(target) == payload:
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    version = tempfile.mkdtemp(prefix=stamp, dir=target)
    os.chmod(version, 0o755)
    for rel, (content, mode) in payload.items():
        path = os.path.join(version, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
    data = os.path.join(target, DATA)
    old = os.path.realpath(data) if os.path.islink(data) else None
    tmp = os.path.join(target, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(version), tmp)
    os.replace(tmp, data)  # the switch: one rename
    tops = {rel.split("/", 1)[0] for rel in payload}
    for name in tops:
        link = os.path.join(target, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(DATA, name), link)
    for name in os.listdir(target):
        if name.startswith(".."):
            continue
        if name not in tops and os.path.islink(os.path.join(target, name)):
            os.unlink(os.path.join(target, name))
    if old and old != os.path.realpath(version) and os.path.dirname(old) == os.path.realpath(target):
        shutil.rmtree(old, ignore_errors=True)
    return True
