"""Finding a Docker Engine API to talk to, for the `docker` runtime.

The socket comes from `--engine`, else `DOCKER_HOST`, else the usual places (Docker's,
then Podman's root and rootless sockets). When none answers and `podman` is installed,
the agent runs `podman system service` itself on a socket in its state directory and
stops it, by PID, when it closes; the service also gets SIGTERM if the agent dies
(PR_SET_PDEATHSIG). Containers outlive the service (Podman's conmon holds them), so a
restarted agent finds them again through a new service.

Also here: the pod sandbox's image. Its one process only has to hold the pod's
network namespace, so it is a 129-byte static program that calls pause(2) forever,
written here byte by byte and built into an image through the engine (nothing is
pulled).
"""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import tarfile
import time

import aiohttp

from ...tasks import die_with_parent

SUN_PATH_MAX = 107  # bytes of a unix socket path the kernel takes (sun_path, NUL included: 108)
USUAL_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
PING_TIMEOUT = 2.0
SERVICE_START_DEADLINE = 30.0
SERVICE_STOP_GRACE = 5.0
PAUSE_IMAGE = "localhost/sendo-pause:1"


class EngineError(Exception):
    """No engine answers; the message says where we looked and what to do."""


def candidates(explicit: str = "") -> list[str]:
    """unix:// URLs to try, in order."""
    if explicit:
        return [_as_url(explicit)]
    out = []
    if os.environ.get("DOCKER_HOST", "").startswith("unix://"):
        out.append(os.environ["DOCKER_HOST"])
    out += [f"unix://{p}" for p in USUAL_SOCKETS]
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        out.append(f"unix://{xdg}/podman/podman.sock")
    return list(dict.fromkeys(out))


def _as_url(engine: str) -> str:
    return engine if "://" in engine else f"unix://{engine}"


async def ping(url: str) -> bool:
    """True if a Docker Engine API answers `/_ping` on the unix socket `url`."""
    path = url.removeprefix("unix://")
    if not url.startswith("unix://") or not os.path.exists(path):
        return False
    try:
        conn = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=conn) as s:
            async with s.get("http://engine/_ping", timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as r:
                return r.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


class PodmanService:
    """`podman system service` run by the agent, on a socket of its own."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.socket = os.path.join(state_dir, "podman.sock")
        self._short_dir: str | None = None
        if len(os.fsencode(self.socket)) > SUN_PATH_MAX:  # a deep data dir: bind would fail (EINVAL)
            self._short_dir = tempfile.mkdtemp(prefix="sendo-podman-")
            self.socket = os.path.join(self._short_dir, "podman.sock")
        self.log_path = os.path.join(state_dir, "podman-service.log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self) -> None:
        podman = shutil.which("podman")
        if podman is None:
            raise EngineError("podman is not installed")
        os.makedirs(os.path.dirname(self.socket), exist_ok=True)
        try:
            os.unlink(self.socket)  # left by a service that died with a previous agent
        except FileNotFoundError:
            pass
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([podman, "system", "service", "--time=0", self.url],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         # conmon, started by the service, writes an `oom` file
                                         # into its working directory when a container is
                                         # OOM-killed: the state dir, not where sendo was started
                                         cwd=self.state_dir, start_new_session=True,
                                         preexec_fn=die_with_parent)
        deadline = time.monotonic() + SERVICE_START_DEADLINE
        while not await ping(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"podman system service did not answer on {self.socket}: {self._log_tail()}")
            await asyncio.sleep(0.1)  # poll interval of a deadline-bounded wait

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; by PID. Containers keep running."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_child(proc, SERVICE_STOP_GRACE)
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-500:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no output)"


def stop_child(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM our child by PID, SIGKILL if it has not exited after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def connect(explicit: str, state_dir: str) -> tuple[str, PodmanService | None]:
    """The engine URL to use, and the Podman service we started for it (or None)."""
    tried = candidates(explicit)
    for url in tried:
        if await ping(url):
            return url, None
    if explicit:
        raise EngineError(f"no container engine answers on {tried[0]} (--engine)")
    if shutil.which("podman") is None:
        raise EngineError(f"no container engine answers on {', '.join(tried)} and podman is not installed "
                          f"(install it with scripts/setup-containers.sh, or start Docker)")
    service = PodmanService(state_dir)
    await service.start()
    return service.url, service


# ---- the sandbox image --------------------------------------------------------------


def pause_program() -> bytes:
    """A static x86-64 ELF whose only code is `for (;;) pause();`."""
    base = 0x400000
    code = bytes([0xB8, 0x22, 0, 0, 0,  # mov eax, 34 (pause)
                  0x0F, 0x05,  # syscall
                  0xEB, 0xF7])  # jmp back to mov
    ehdr_size, phdr_size = 64, 56
    entry = base + ehdr_size + phdr_size
    total = ehdr_size + phdr_size + len(code)
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, entry, ehdr_size, 0, 0, ehdr_size, phdr_size, 1, 0, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)  # PT_LOAD, R+X
    return ehdr + phdr + code


def pause_context() -> bytes:
    """A build context (tar) for the sandbox image."""
    files = {"Dockerfile": b'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n', "pause": pause_program()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
