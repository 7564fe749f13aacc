"""Local stand-ins for the public images a peer suite's pods ask for, and a
`sendo up --runtime docker` whose engine pulls them from a registry on loopback.

kr8s's tests run pods of `nginx:latest` (readiness GET / on port 80, `dd` into
/usr/share/nginx/html, port-forwards to 80), `ubuntu:latest` (`sleep`, `date`, `cat`)
and `gcr.io/google_containers/pause` (no command: it must just keep running). Nothing
may be pulled from the internet, so these are NOT those images: each is `FROM scratch`
plus Debian's static busybox (as tests/e2e/containers.py builds its test image), built
here, pushed to Debian's `docker-registry` on 127.0.0.1 and named like the image the
tests ask for:

* "nginx": busybox `httpd -f -p 80 -h /usr/share/nginx/html` (an index.html there);
* "ubuntu": busybox's sh and coreutils (`CMD ["sh"]`);
* "pause": sleeps until SIGTERM.

The cluster's Podman resolves the public names to that registry through a
registries.conf of the test's own (`CONTAINERS_REGISTRIES_CONF`, inherited by the
`podman system service` sendo starts): `docker.io` and `gcr.io` are rewritten to the
local registry (the whole registries, so an image no stand-in covers fails to pull
instead of reaching the internet), short names search `docker.io` only. sendo passes
the image reference as the pod spec names it (adding `:latest` when there is no tag),
so the rewrite applies to it; `pulled()` reads the registry's access log to show that
every stand-in really came from it.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.e2e import containers as ct
from tests.e2e.harness import Cluster

BASE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
"""
# PID 1 of a container gets no signal it has no handler for: the trap lets SIGTERM end
# the stand-in at once, as the real images' processes do, instead of after the grace period
_UNTIL_TERM = "trap 'exit 0' TERM INT; {} & wait"


@dataclass(frozen=True)
class StandIn:
    name: str  # the fully qualified name the tests' short or long name resolves to
    containerfile: str  # after BASE

    @property
    def repository(self) -> str:
        return self.name.rsplit(":", 1)[0]


STANDINS = (
    StandIn("docker.io/library/nginx:latest",
            'RUN mkdir -p /usr/share/nginx/html && echo "sendo test stand-in for nginx (busybox httpd)" '
            "> /usr/share/nginx/html/index.html\nEXPOSE 80\n"
            f'ENTRYPOINT ["/bin/sh", "-c", "{_UNTIL_TERM.format("httpd -f -p 80 -h /usr/share/nginx/html")}"]\n'),
    StandIn("docker.io/library/ubuntu:latest", 'CMD ["sh"]\n'),
    StandIn("gcr.io/google_containers/pause:latest",
            f'ENTRYPOINT ["/bin/sh", "-c", "{_UNTIL_TERM.format("sleep 2147483647")}"]\n'),
)
REWRITTEN = ("docker.io", "gcr.io")  # whole registries sent to the local one


def registries_conf(registry: ct.Registry) -> str:
    lines = ['unqualified-search-registries = ["docker.io"]', 'short-name-mode = "permissive"', ""]
    for prefix in REWRITTEN:
        lines += ["[[registry]]", f'prefix = "{prefix}"', f'location = "{registry.address}/{prefix}"',
                  "insecure = true", ""]
    return "\n".join(lines)


def build_and_push(registry: ct.Registry, workdir: Path) -> None:
    """Every stand-in built here and pushed under its name; the local copies are removed,
    so a pod's image really comes from the registry."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", workdir / "busybox")
    for s in STANDINS:
        local = "localhost/sendo-standin/" + s.name.replace("/", "-")
        (workdir / "Containerfile").write_text(BASE + s.containerfile)
        ct.run(["podman", "build", "-q", "-t", local, "-f", str(workdir / "Containerfile"), str(workdir)])
        ct.run(["podman", "push", "-q", "--tls-verify=false", local, f"{registry.address}/{s.name}"])
        ct.run(["podman", "rmi", local])


def pulled(registry: ct.Registry) -> set[str]:
    """The stand-ins whose manifest was served by the registry (its access log)."""
    log = (registry.root / "registry.log").read_text(errors="replace")
    out = set()
    for s in STANDINS:
        repo, tag = s.name.rsplit(":", 1)
        if f'"GET /v2/{repo}/manifests/{tag} ' in log:
            out.add(s.name)
    return out


SYSTEM_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "sendo-system-standin", "namespace": "kube-system", "labels": {"app": "sendo-system-standin"}},
    "spec": {"terminationGracePeriodSeconds": 1,
             "containers": [{"name": "pause", "image": "gcr.io/google_containers/pause"}]},
}


def start_system_pod(cluster: Cluster, timeout: float = 120.0) -> None:
    """One Running pod in kube-system (the pause stand-in), as a kind cluster runs CoreDNS and
    kube-proxy there: kr8s's listing tests expect a cluster that already runs pods. sendo runs
    its own system parts as processes, so a fresh `sendo up` has none."""
    import json
    cluster.kubectl("apply", "-f", "-", input=json.dumps(SYSTEM_POD))
    cluster.kubectl("wait", "-n", "kube-system", "--for=condition=Ready", f"pod/{SYSTEM_POD['metadata']['name']}",
                    f"--timeout={int(timeout)}s", timeout=timeout + 30)


@contextlib.contextmanager
def standin_cluster(base: Path) -> Iterator[tuple[Cluster, ct.Registry]]:
    """`sendo up --runtime docker` on pod and service CIDRs of its own, its engine pulling
    the stand-ins from a local registry; afterwards its containers, network, routes, the
    stand-ins it pulled and the registry are removed (processes by PID)."""
    ct.setup_engine()
    assert not ct.engine_socket_elsewhere(), (
        "an engine socket exists on this machine: sendo would use that engine, which does not read this "
        "test's registries.conf, so the stand-in images could not be resolved")
    registry = ct.start_registry(base / "registry", log_level="info")
    pod_cidr, svc_cidr, net_args = ct.container_cidrs()
    cluster = None
    try:
        build_and_push(registry, base / "images")
        conf = base / "registries.conf"
        conf.write_text(registries_conf(registry))
        cluster = Cluster(base / "cluster", ("--runtime", "docker", *net_args),
                          {"CONTAINERS_REGISTRIES_CONF": str(conf)})
        cluster.start()
        yield cluster, registry
    finally:
        if cluster is not None:
            cluster._cleanup()
            ct.cleanup_engine(cluster, pod_cidr, svc_cidr)
        ct.run(["podman", "rmi", "-f", *(s.name for s in STANDINS)], check=False)
        registry.stop()
