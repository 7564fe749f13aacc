"""What the container tests need around a cluster: the engine and registry installed
(`scripts/setup-containers.sh`), a local OCI registry on loopback, a test image built
here from files and pushed to it, a pod CIDR of the test's own, guarded HTTP to pod IPs,
and the clean-up of every container, network, route and image a test made.

Nothing is pulled from the internet: the image is `FROM scratch` + Debian's static
busybox. Traffic goes only to loopback, or to a pod IP once `ip route get` shows that
it goes over the bridge the test's cluster created.
"""
from __future__ import annotations

import glob
import hashlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import REPO, Cluster, poll

SETUP = REPO / "scripts" / "setup-containers.sh"


def setup_engine() -> None:
    """Install Podman, runc, the registry and busybox if missing; fail saying why."""
    r = subprocess.run(["sh", str(SETUP)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{SETUP} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    address: str  # host:port on loopback
    proc: subprocess.Popen
    root: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_registry(root: Path, user: str = "", password: str = "", log_level: str = "warn") -> Registry:
    """Debian's `docker-registry` (the OCI distribution registry) on a free loopback port;
    with basic auth (htpasswd, bcrypt) when a user is given. At log level "info" its log
    (`registry.log` under root) has a line per request."""
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = root / "config.yml"
    text = (f"version: 0.1\nlog:\n  level: {log_level}\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
    if user:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        (root / "htpasswd").write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        text += f"auth:\n  htpasswd:\n    realm: sendo-test\n    path: {root / 'htpasswd'}\n"
    config.write_text(text)
    log = open(root / "registry.log", "ab")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    log.close()
    reg = Registry(f"127.0.0.1:{port}", proc, root)

    def up() -> bool:
        assert proc.poll() is None, f"docker-registry exited: {(root / 'registry.log').read_text()[-500:]}"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    try:
        poll(up, 20, 0.1, "the local registry to listen")
    except BaseException:
        reg.stop()
        raise
    return reg


# ENTRYPOINT and CMD both set, so tests see how command and args override them
CONTAINERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
ENTRYPOINT ["/bin/echo", "entrypoint"]
CMD ["cmd"]
"""


def build_and_push(registry: Registry, workdir: Path, creds: str = "") -> str:
    """Build the test image here and push it (with `user:password` creds if given); the
    local copy is untagged again, so a pod really pulls it from the registry."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", workdir / "busybox")
    (workdir / "Containerfile").write_text(CONTAINERFILE)
    image = f"{registry.address}/sendo-test/busybox:1"
    run(["podman", "build", "-q", "-t", image, "-f", str(workdir / "Containerfile"), str(workdir)])
    run(["podman", "push", "-q", "--tls-verify=false", *(["--creds", creds] if creds else []), image])
    run(["podman", "rmi", image])
    return image


def own_storage(root: Path) -> dict[str, str]:
    """The environment that gives Podman (its CLI and a `podman system service` started
    with it) an image and container store of its own under `root`: builds of other users
    of the machine cannot clash with it ("layer not known"), and `empty_storage` removes
    everything in it without touching anyone else's."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf)}


def empty_storage(env: dict[str, str]) -> None:
    """Every container and image of a store made by `own_storage` (all of them its owner's)."""
    env = {**os.environ, **env}
    ids = subprocess.run(["podman", "ps", "-a", "-q"], capture_output=True, text=True, env=env).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True, env=env)
    subprocess.run(["podman", "rmi", "-a", "-f"], capture_output=True, env=env)


def end_leftover_conmons(root: Path) -> list[int]:
    """Podman's exec-session monitors (conmon --exec-attach) that outlived the containers
    of a store made by `own_storage` (seen after `kubectl exec` with such a store), found
    by that store's path in their command line and ended by PID; their PIDs."""
    import psutil
    ended = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if p.info["name"] == "conmon" and any(str(root) in a for a in cmd):
            try:
                p.kill()
                ended.append(p.info["pid"])
            except psutil.NoSuchProcess:
                pass
    return ended


def run(argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    for _attempt in range(3):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        # podman's shared storage: another test's image removal can pull a layer from under
        # a concurrent build or push ("image not known", "layer not known"); that one is retried
        if r.returncode == 0 or "not known" not in r.stderr:
            break
    if check:
        assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def remove_images_of(registry: Registry) -> None:
    """The images pulled from this test registry (created by this test session only)."""
    out = run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], check=False).stdout.split()
    mine = [i for i in out if i.startswith(registry.address + "/")]
    if mine:
        run(["podman", "rmi", "-f", *mine], check=False)


# ---------------------------------------------------------------------------- pod CIDR

def container_cidrs() -> tuple[str, str, tuple[str, ...]]:
    """(pod CIDR, service CIDR, the `sendo up` options naming them): two free /16s, so a
    test's cluster shares no container address with another cluster on this machine."""
    pod = free_pod_cidr()
    svc = free_pod_cidr(avoid=pod)
    return pod, svc, ("--container-cidr", pod, "--container-service-cidr", svc)


def free_pod_cidr(avoid: str = "") -> str:
    """A /16 in 10.0.0.0/8 that no route of this machine touches (other tests, other
    clusters, the machine's own networks), and not `avoid`."""
    routes = run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines()
    used = []
    for line in routes:
        word = line.split()[0] if line.split() else ""
        if word in ("unreachable", "local", "broadcast", "blackhole", "prohibit"):
            word = line.split()[1]
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for _ in range(200):
        cand = ipaddress.ip_network(f"10.{random.randint(100, 250)}.0.0/16")
        if str(cand) != avoid and not any(cand.overlaps(u) for u in used if u.prefixlen > 0):
            return str(cand)
    raise AssertionError("no free /16 in 10.100.0.0-10.250.255.255 for the test's pod CIDR")


def route_dev(ip: str) -> str:
    """`ip route get`: the device the kernel would send to `ip` through, or the error."""
    r = run(["ip", "route", "get", ip], check=False)
    if r.returncode != 0:
        return r.stderr.strip()
    words = r.stdout.split()
    return words[words.index("dev") + 1] if "dev" in words else r.stdout.strip()


def docker_state_dir(cluster: Cluster) -> str:
    found = glob.glob(str(cluster.data_dir / "agent" / "*" / "docker"))
    assert found, "the agent has no docker runtime state directory"
    return os.path.abspath(found[0])


def network_name(cluster: Cluster) -> str:
    return network_name_of(docker_state_dir(cluster))


def network_name_of(state_dir: str) -> str:
    """The pod network of the docker runtime whose state directory this is (its owner label)."""
    return "sendo-" + hashlib.sha1(state_dir.encode()).hexdigest()[:10]


def bridge_of(cluster: Cluster) -> str:
    return run(["podman", "network", "inspect", "--format", "{{.NetworkInterface}}", network_name(cluster)]).stdout.strip()


def pod_http(cluster: Cluster, ip: str, port: int, path: str = "/", timeout: float = 2.0) -> str:
    """GET from a container pod, only once the kernel routes its IP over this cluster's
    bridge (network safety: nothing to an address without a local route)."""
    import urllib.request
    dev = route_dev(ip)
    bridge = bridge_of(cluster)
    if dev != bridge:
        raise AssertionError(f"refusing to send to {ip}: it routes via {dev!r}, not this cluster's bridge {bridge!r}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{ip}:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def engine_containers(cluster: Cluster, *labels: str) -> list[str]:
    """IDs of this cluster's containers (all states), optionally with more labels."""
    argv = ["podman", "ps", "-a", "-q", "--no-trunc", "--filter", f"label=io.sendo.owner={docker_state_dir(cluster)}"]
    for label in labels:
        argv += ["--filter", f"label={label}"]
    return run(argv).stdout.split()


def cleanup_engine(cluster: Cluster, pod_cidr: str, service_cidr: str = "") -> None:
    """Remove what this cluster made in the engine and the kernel: its containers (by ID),
    its network, the unreachable routes of its pod and service CIDRs and the local route
    of the latter."""
    try:
        state = docker_state_dir(cluster)
    except AssertionError:
        state = None
    if state is not None:
        ids = engine_containers(cluster)
        if ids:
            run(["podman", "rm", "-f", "-t", "0", *ids], check=False)
        run(["podman", "network", "rm", "-f", network_name(cluster)], check=False)
    run(["ip", "route", "del", "unreachable", pod_cidr], check=False)
    if service_cidr:
        run(["ip", "route", "del", "local", service_cidr, "dev", "lo", "table", "local"], check=False)
        run(["ip", "route", "del", "unreachable", service_cidr], check=False)


def engine_socket_elsewhere() -> bool:
    """An engine socket sendo would use before starting Podman itself."""
    from sendo.agent.runtime import engine
    return any(os.path.exists(u.removeprefix("unix://")) for u in engine.candidates())


def podman_service_of(cluster: Cluster) -> int | None:
    """PID of the `podman system service` sendo started for its data dir: on a socket there, or
    (a data dir too deep for a socket path) working in it with the socket in a short temp dir."""
    import psutil
    needle = str(cluster.data_dir)
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd = p.info["cmdline"] or []
        if "system" in cmd and "service" in cmd and (any(needle in a for a in cmd)
                                                      or (p.info["cwd"] or "").startswith(needle)):
            return p.info["pid"]
    return None


def registry_of(cluster: Cluster) -> int | None:
    """PID of the registry `sendo up --registry` started with its config in the data dir."""
    import psutil
    config = str(cluster.data_dir / "registry" / "config.yml")
    for p in psutil.process_iter(["pid", "cmdline"]):
        if config in (p.info["cmdline"] or []):
            return p.info["pid"]
    return None


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)  # poll interval of a deadline-bounded wait
