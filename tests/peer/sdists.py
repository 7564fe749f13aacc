"""Fetch the pinned source distributions whose own tests run against sendo.

No third-party test code lives in this repository: at test time `pip download` (the
ordinary client of the package registry) fetches each sdist once into a cache
directory, its sha256 is checked against the pin below, and the files a suite needs
are extracted into the test's temp dir. A failed fetch or a wrong digest fails the
test loudly; nothing is skipped.

The cache is `$SENDO_PEER_CACHE`, else `~/.cache/sendo/peer`.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

FETCH_TIMEOUT = 300.0


@dataclass(frozen=True)
class Sdist:
    name: str  # as pip knows it
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}.tar.gz"

    @property
    def top(self) -> str:
        """The directory every member of the archive is under."""
        return self.filename.removesuffix(".tar.gz")


KUBERNETES = Sdist("kubernetes", "37.0.2", "6967599ef976d0bb9c663c3621e690db0e26fbab7cf5c5e3ccf7e11b790d2de9")
KUBERNETES_ASYNCIO = Sdist("kubernetes_asyncio", "36.1.0",
                           "6d979d82e5ebe490bea298e7843732a2336173236bae28e200434889443d4443")
KR8S = Sdist("kr8s", "0.20.15", "484d5206bbebd48f8cc00dd3ed749d4419294d2f08cd50c6232114cf62ed6d3a")
KOPF = Sdist("kopf", "1.45.2", "5baa180cfdebe1c5095d2a0a96d7d91825b6920541a0825c55719c36abb0054f")


def cache_dir() -> Path:
    return Path(os.environ.get("SENDO_PEER_CACHE") or Path.home() / ".cache" / "sendo" / "peer")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(s: Sdist) -> Path:
    """The sdist's path in the cache, downloaded first if it is not there (or is not the pinned file)."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / s.filename
    if path.exists() and _digest(path) == s.sha256:
        return path
    with tempfile.TemporaryDirectory(dir=d) as tmp:  # other runs may share the cache: publish whole files only
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                            "--dest", tmp, f"{s.name}=={s.version}"],
                           capture_output=True, text=True, timeout=FETCH_TIMEOUT)
        got = Path(tmp) / s.filename
        if r.returncode != 0 or not got.exists():
            raise AssertionError(f"could not fetch the {s.name} {s.version} sdist (peer suites need the package "
                                 f"registry):\n{r.stdout}\n{r.stderr}")
        digest = _digest(got)
        if digest != s.sha256:
            raise AssertionError(f"{s.filename}: sha256 {digest}, pinned {s.sha256}")
        os.replace(got, path)
    return path


def extract(s: Sdist, dest: Path, packages: tuple[str, ...]) -> Path:
    """Extract the named top-level packages of the sdist into dest; returns dest."""
    prefixes = tuple(f"{s.top}/{p}/" for p in packages)
    with tarfile.open(fetch(s)) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefixes) and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len(s.top) + 1:]
        tar.extractall(dest, members=members, filter="data")
    return dest
