"""The `sendo` command: run a cluster (up, server, agent)."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console

from ..tasks import install_profiler, install_task_dump, settle_heap
from . import users
from .defaults import DEFAULT_DATA_DIR

CONTROL_LOOPS_START_TIMEOUT = 30.0  # seconds `sendo up` waits for the controllers' /readyz
app = typer.Typer(help="sendo: a container orchestrator that speaks the Kubernetes API.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(users.app, name="user")
console = Console(stderr=True, highlight=False)


def _add_subcommands() -> None:
    from .addons import addons_app
    from .snapshot import snapshot_app
    app.add_typer(snapshot_app, name="snapshot")
    from .upgrade import upgrade_app
    app.add_typer(upgrade_app, name="upgrade")
    from .node import node_app
    app.add_typer(node_app, name="node")
    app.add_typer(addons_app, name="addons")
    from .fn import fn_app
    app.add_typer(fn_app, name="fn")


_add_subcommands()


def run(coro) -> None:
    """Run on uvloop (libuv): faster sockets and TLS for the API, the proxy and watches."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        factory = None
    async def main():
        install_task_dump()  # `kill -USR1 PID`: every task's stack on stderr
        install_profiler()  # SENDO_PROFILE=<prefix>: cProfile, `kill -USR2 PID` writes it
        await coro
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _until_signalled() -> None:
    settle_heap()  # started: what is alive now lives as long as the process
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _write_kubeconfig(data_dir: str, url: str, token: str, ca_pem: bytes) -> str:
    from ..server import kubeconfig
    path = os.path.join(data_dir, "kubeconfig")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(kubeconfig(url, token, ca_pem), f, sort_keys=False)
    os.replace(tmp, path)
    return path


_PORT_HELP = ("API port (default 6443, or the next free one if that is taken). A port given here is kept: "
              "the command fails if another process holds it.")
_DATASTORE_HELP = ("Where the cluster state is stored, as a URL: sqlite:///path/to/state.db "
                   "(default: DATA_DIR/server/state.db), or etcd://host:2379\\[,host2:2379…]\\[/key-prefix]"
                   "\\[?cacert=ca.pem&cert=client.pem&key=client-key.pem&compact_interval=300] to share it "
                   "between several servers.")
_SERVERS_HELP = ("Run a highly available cluster on this machine: this many etcd members (Debian etcd-server) "
                 "and API servers on loopback sharing one identity, the control loops under leader election, "
                 "and a TCP balancer at --port in front of the servers for the kubeconfig. Kill any one server "
                 "and kubectl keeps working.")
_INFLIGHT_HELP = ("Short {kind} requests served at once per priority level (the agents have their own; "
                  "system:masters is exempt; one user may hold half); more get 429 with Retry-After. "
                  "0: no limit.")
_ELECT_HELP = ("Run the control loops only in the server that holds the kube-system/sendo-controller-manager "
               "Lease. Default: on for a datastore several servers can share (etcd), off for SQLite.")
_LEASE_HELP = "Leader election: seconds a leader's Lease lasts without renewal (Kubernetes: 15)."
_RENEW_HELP = "Leader election: seconds a leader keeps trying to renew before it stops leading (Kubernetes: 10)."
_RETRY_HELP = "Leader election: seconds between attempts to take or renew the Lease (Kubernetes: 2)."
_INGRESS_HELP = ("Run the ingress controller: an HTTP(S) reverse proxy on the node's address that serves "
                 "Ingresses of class `sendo` (the default class).")
_INGRESS_HTTP_HELP = ("Port of the ingress controller's HTTP listener (default: 80 as root, else 8080; "
                      "0 picks any free port).")
_INGRESS_HTTPS_HELP = ("Port of the ingress controller's HTTPS listener, which picks certificates by SNI "
                       "from the Ingresses' tls Secrets (default: 443 as root, else 8443; 0 picks any free port).")


_HOST_HELP = ("Address the API listens on: 127.0.0.1 serves this machine only; an address of this machine "
              "that others reach (or 0.0.0.0) lets agents on other machines join.")
_ADVERTISE_HELP = ("Address agents on other machines reach the API at, as the join command prints it "
                   "(default: --host, or this machine's hostname if --host is 0.0.0.0). It is in the serving "
                   "certificate.")
_TLS_SAN_HELP = ("One more name or IP address for the API's serving certificate (repeat the option for more); "
                 "the --host and --advertise-address are always in it. A new name re-issues the certificate "
                 "from the same CA.")


_CLUSTER_CIDR_HELP = ("Node IPAM: the range every node's spec.podCIDR comes from (kube-controller-manager's flag). "
                      "Pod IPs of the process runtime are loopback addresses, so it lies in 127.0.0.0/8, away "
                      "from 127.0.0.0/16 and the Service range 127.32.0.0/16.")
_NODE_MASK_HELP = "Node IPAM: the prefix length of each node's podCIDR block (a /22 holds 1,021 pods)."


_AUDIT_POLICY_HELP = ("Audit policy (Kubernetes' audit.k8s.io/v1 Policy, YAML): which requests are recorded "
                      "and at which level (None, Metadata, Request, RequestResponse). Needs --audit-log-path.")
_AUDIT_LOG_HELP = ("Where audit events are appended as JSON lines (`-`: standard output); rotated by size. "
                   "Needs --audit-policy-file.")


_CONTROLLERS_HELP = ("Control loops to run, read as kube-controller-manager reads it: `*` every default loop, "
                     "`name` turns one on, `-name` turns one off, e.g. `*,-nodelifecycle`. An unknown name "
                     "is refused with the list of known ones.")


def _check_controllers(spec: str) -> str:
    """Refuse a bad --controllers value before anything starts."""
    from ..controlplane import UnknownControllerError, select_controllers
    try:
        select_controllers(spec)
    except UnknownControllerError as e:
        raise typer.BadParameter(str(e)) from None
    return spec


def _controllers_option() -> str:
    return typer.Option("*", "--controllers", callback=_check_controllers, help=_CONTROLLERS_HELP)


def _election(lease: float, renew: float, retry: float):
    from ..client.leaderelection import Timings
    try:
        return Timings(lease, renew, retry).check()
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--leader-elect-*") from None


_GRACE_HELP = ("How long a node's agent may be silent (no Lease renewal, no status) before the node is "
               "marked Unknown and tainted node.kubernetes.io/unreachable:NoSchedule and :NoExecute, as "
               "kube-controller-manager's flag: a duration such as 40s, 1m30s or 500ms.")
_NOT_READY_HELP = ("Seconds every pod tolerates node.kubernetes.io/not-ready:NoExecute unless it says otherwise "
                   "(kube-apiserver's DefaultTolerationSeconds admission): then it is evicted and replaced.")
_UNREACHABLE_HELP = ("Seconds every pod tolerates node.kubernetes.io/unreachable:NoExecute unless it says "
                     "otherwise: how long pods stay on a lost node before they are replaced elsewhere.")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("40s", "1m30s", "500ms") or a bare number of seconds."""
    import re
    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", t):
        return float(t)
    if not t or not re.fullmatch(f"(?:{_DURATION_PART})+", t):
        raise ValueError(f"invalid duration {text!r}: use a number of seconds or units such as 40s, 1m30s, 500ms")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, t))


def _grace_period(text: str) -> str:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if seconds <= 0:
        raise typer.BadParameter(f"must be more than 0, not {text!r}")
    return text


def _grace_option() -> str:
    return typer.Option("40s", "--node-monitor-grace-period", callback=_grace_period, help=_GRACE_HELP)


_NODE_LEASE_HELP = ("Duration of this node's Lease, renewed every quarter of it (the kubelet's "
               "nodeLeaseDurationSeconds). Keep a quarter of it well under the control plane's "
               "--node-monitor-grace-period.")


def _lease_option() -> int:
    return typer.Option(40, "--node-lease-duration-seconds", min=1, help=_NODE_LEASE_HELP)


def _check_schedule(expr: str) -> str:
    from ..store.schedule import check_schedule
    try:
        return check_schedule(expr)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _snapshot_schedule_option() -> str:
    from ..store.schedule import DEFAULT_SCHEDULE
    return typer.Option(DEFAULT_SCHEDULE, "--snapshot-schedule", callback=_check_schedule,
                        help="When to snapshot the store (cron, UTC; k3s's default); the snapshots go to "
                             "DATA_DIR/snapshots/scheduled-*, an Event in kube-system says each. '' turns it off.")


def _snapshot_retention_option() -> int:
    from ..store.schedule import DEFAULT_RETENTION
    return typer.Option(DEFAULT_RETENTION, "--snapshot-retention", min=1,
                        help="Scheduled snapshots kept: after each one the oldest beyond this are deleted.")


def _shutdown_delay_option(default: float = 0.0) -> float:
    return typer.Option(default, "--shutdown-delay-duration", min=0.0,
                        help="Seconds between SIGTERM and the server stopping, /readyz failing meanwhile, so a "
                             "balancer in front moves new connections elsewhere first (kube-apiserver's flag).")


def _toleration_option(flag: str, help: str) -> int:
    return typer.Option(300, flag, min=0, help=help)


def _node_loss_config(grace: str, not_ready: int, unreachable: int) -> dict:
    return {"node_monitor_grace_period": parse_duration(grace), "default_not_ready_toleration_seconds": not_ready,
            "default_unreachable_toleration_seconds": unreachable}


def _ingress_config(enabled: bool, http_port: Optional[int], https_port: Optional[int]) -> dict:
    return {"ingress": enabled, "ingress_http_port": http_port, "ingress_https_port": https_port}


_REGISTRY_HELP = ("Also run a local OCI image registry on loopback (Debian docker-registry; images kept in "
                  "DATA_DIR/registry) at PORT, or at 5000 (the next free port if taken) when no PORT is given; "
                  "`podman push --tls-verify=false 127.0.0.1:PORT/name:tag` to it. Stopped with the cluster.")
_RUNTIME_HELP = ("Container runtime for pods without a runtimeClassName (pods pick another with a "
                 "RuntimeClass whose handler names it; `process` is always available).")


_ENGINE_HELP = ("docker runtime: the Docker Engine API socket (unix:///path). Default: DOCKER_HOST, then "
                "/var/run/docker.sock, /run/podman/podman.sock; if none answers and podman is installed, "
                "sendo runs `podman system service` itself.")
_CIDR_HELP = ("docker runtime: the pod CIDR of container pods, the same on every node (IPv4, at most /23). An "
              "unreachable route covers it all; this node's pods get addresses from the /24 of it the server gave "
              "the node (annotation sendo.dev/container-pod-cidr), other nodes' /24s are routed to them.")
_CONTAINER_IPAM_HELP = ("Node IPAM for container pods (docker runtime): every node gets a /24 of this range "
                        "(annotation sendo.dev/container-pod-cidr); give agents the same --container-cidr. "
                        "Default: 10.244.0.0/16.")
_SVC_CIDR_HELP = ("docker runtime: where container pods reach Services (IPv4 /16, not loopback): each ClusterIP "
                  "127.32.x.y has its twin at the same offset here; an unreachable route covers it, the node holds "
                  "it as local addresses. Default: 10.96.0.0/16.")


_METRICS_INTERVAL_HELP = ("Seconds between samples of the CPU and memory of the node and its containers "
                          "(kubectl top, the HPA); Kubernetes' cadence is 15.")
_HPA_SYNC_HELP = "Seconds between two syncs of each HorizontalPodAutoscaler (Kubernetes' default: 15)."


def _metrics_interval_option() -> float:
    return typer.Option(15.0, "--metrics-interval", min=1.0, help=_METRICS_INTERVAL_HELP)


def _hpa_sync_option() -> float:
    return typer.Option(15.0, "--hpa-sync-period", min=0.1, help=_HPA_SYNC_HELP)


def _runtime_option(name: str) -> str:
    """The --runtime value, checked before anything starts: an unknown name lists the known ones."""
    from ..agent.runtime.registry import UnknownRuntime, check
    try:
        return check(name)
    except UnknownRuntime as e:
        raise typer.BadParameter(str(e), param_hint="--runtime") from None


_SERVER_LIST_HELP = ("API server URL, e.g. https://127.0.0.1:6443, or several servers of one cluster separated "
                     "by commas: requests go to one until it cannot be reached, then to the next.")


def _server_list(value: str) -> str:
    from ..client.rest import server_urls
    try:
        return ",".join(server_urls(value))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command()
def up(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the cluster keeps its state."),
       port: Optional[int] = typer.Option(None, help=_PORT_HELP, show_default=False),
       host: str = typer.Option("127.0.0.1", help=_HOST_HELP),
       advertise_address: Optional[str] = typer.Option(None, help=_ADVERTISE_HELP, show_default=False),
       tls_san: Optional[list[str]] = typer.Option(None, help=_TLS_SAN_HELP, show_default=False),
       cluster_cidr: str = typer.Option("127.64.0.0/10", help=_CLUSTER_CIDR_HELP),
       node_cidr_mask_size: int = typer.Option(22, help=_NODE_MASK_HELP),
       datastore: Optional[str] = typer.Option(None, help=_DATASTORE_HELP, show_default=False),
       node_name: str = typer.Option(socket.gethostname(), help="Name of this machine's node."),
       apply: Optional[list[Path]] = typer.Option(None, help="Manifests to apply once the cluster is ready."),
       ingress: bool = typer.Option(True, "--ingress/--no-ingress", help=_INGRESS_HELP),
       ingress_http_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTP_PORT",
                                                       help=_INGRESS_HTTP_HELP, show_default=False),
       ingress_https_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTPS_PORT",
                                                        help=_INGRESS_HTTPS_HELP, show_default=False),
       runtime: str = typer.Option("process", help=_RUNTIME_HELP, callback=_runtime_option),
       controllers: str = _controllers_option(),
       node_monitor_grace_period: str = _grace_option(),
       default_not_ready_toleration_seconds: int = _toleration_option("--default-not-ready-toleration-seconds",
                                                                      _NOT_READY_HELP),
       default_unreachable_toleration_seconds: int = _toleration_option("--default-unreachable-toleration-seconds",
                                                                        _UNREACHABLE_HELP),
       node_lease_duration_seconds: int = _lease_option(),
       engine: str = typer.Option("", help=_ENGINE_HELP, show_default=False),
       container_cidr: str = typer.Option("", help=_CIDR_HELP + " Default: 10.244.0.0/16.", show_default=False),
       audit_policy_file: Optional[Path] = typer.Option(None, help=_AUDIT_POLICY_HELP, show_default=False),
       audit_log_path: Optional[str] = typer.Option(None, help=_AUDIT_LOG_HELP, show_default=False),
       audit_log_maxsize: int = typer.Option(100, help="Megabytes an audit log file may reach before it is rotated."),
       audit_log_maxbackup: int = typer.Option(10, help="Rotated audit log files kept (the oldest go first)."),
       metrics_interval: float = _metrics_interval_option(),
       hpa_sync_period: float = _hpa_sync_option(),
       container_service_cidr: str = typer.Option("", help=_SVC_CIDR_HELP, show_default=False),
       servers: int = typer.Option(1, "--servers", min=1, max=7, help=_SERVERS_HELP),
       snapshot_schedule: str = _snapshot_schedule_option(),
       snapshot_retention: int = _snapshot_retention_option(),
       registry: Optional[str] = typer.Option(None, metavar="[PORT]", help=_REGISTRY_HELP, show_default=False),
       verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the control plane does.")):
    """Run a one-machine cluster (API server, controllers, scheduler and an agent) in the foreground.

    State lives in DATA_DIR (SQLite); starting again with the same DATA_DIR resumes the
    same objects and pods. Ctrl-C or SIGTERM stops the cluster and its pods' processes.
    With --servers 3: three etcd members and three API servers behind a local balancer.
    """
    _logging(verbose)
    audit = _audit_config(audit_policy_file, audit_log_path, audit_log_maxsize, audit_log_maxbackup)
    _lock(data_dir)  # after the options are checked: a refused start writes nothing
    agent_options = {**_ingress_config(ingress, ingress_http_port, ingress_https_port), "runtime": runtime,
                     "engine": engine, "container_cidr": container_cidr, "metrics_interval": metrics_interval,
                     "node_lease_duration_seconds": node_lease_duration_seconds,
                     "container_service_cidr": container_service_cidr}
    if servers > 1:
        from .ha import HAOptions, up_ha
        if audit_policy_file or audit_log_path:
            raise typer.BadParameter("the audit log is not supported with --servers yet", param_hint="--servers")
        if datastore and not datastore.startswith("etcd://"):
            raise typer.BadParameter("several servers share an etcd: give etcd://… or no --datastore (sendo "
                                     "starts its own members)", param_hint="--datastore")
        _server_config(data_dir, port, host, datastore)  # checks --datastore
        server_args = ["--controllers", controllers, "--hpa-sync-period", str(hpa_sync_period),
                       "--node-monitor-grace-period", node_monitor_grace_period,
                       "--default-not-ready-toleration-seconds", str(default_not_ready_toleration_seconds),
                       "--default-unreachable-toleration-seconds", str(default_unreachable_toleration_seconds),
                       *(["--container-cidr", container_cidr] if container_cidr else []),
                       "--snapshot-schedule", snapshot_schedule, "--snapshot-retention", str(snapshot_retention)]
        opts = HAOptions(servers, host, 6443 if port is None else port, port is None, datastore, server_args,
                         verbose)
        run(up_ha(os.path.abspath(data_dir), opts, node_name, apply or [], time.monotonic(), agent_options))
        return
    cfg = _server_config(data_dir, port, host, datastore, controller_names=controllers,
                         advertise_address=advertise_address, tls_sans=list(tls_san or []),
                         cluster_cidr=cluster_cidr, node_cidr_mask_size=node_cidr_mask_size,
                         container_cidr=container_cidr,
                         audit=audit,
                         hpa_sync_period=hpa_sync_period, snapshot_schedule=snapshot_schedule,
                         snapshot_retention=snapshot_retention,
                         **_node_loss_config(node_monitor_grace_period, default_not_ready_toleration_seconds,
                                             default_unreachable_toleration_seconds))
    local_registry = _start_registry(cfg.data_dir, registry) if registry else None
    try:
        run(_up(cfg, node_name, apply or [], time.monotonic(), agent_options, local_registry))
    finally:
        if local_registry is not None:
            local_registry.stop()


def _lock(data_dir: str) -> None:
    """This process's hold on DATA_DIR (cli/datadir.py); a second sendo on it ends here."""
    from .datadir import DataDirInUse, lock_data_dir
    try:
        lock_data_dir(os.path.abspath(data_dir))
    except DataDirInUse as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        raise SystemExit(1)


def _start_registry(data_dir: str, value: str):
    """The local image registry of --registry, started before the cluster: a taken port or
    a missing package ends the command with a message naming the option."""
    from .registry import LocalRegistry, RegistryError
    os.makedirs(data_dir, exist_ok=True)
    try:
        return LocalRegistry.start(data_dir, value)
    except RegistryError as e:
        raise typer.BadParameter(str(e), param_hint="--registry") from None


def _optional_values(args: list[str]) -> list[str]:
    """`--registry` given without a value means `auto` (typer has no options whose value
    may be left out)."""
    from .registry import AUTO
    out = []
    for i, a in enumerate(args):
        out.append(a)
        if a == "--registry" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(AUTO)
    return out


def _audit_config(policy: Optional[Path], path: Optional[str], maxsize: int, maxbackup: int):
    """The --audit-* options, checked before anything starts: a bad policy names the field at fault."""
    from ..api.audit import AuditConfig, PolicyError
    cfg = AuditConfig(str(policy) if policy else None, path, maxsize, maxbackup)
    try:
        cfg.check()
    except PolicyError as e:
        raise typer.BadParameter(str(e), param_hint="--audit-policy-file")
    return cfg


def _server_config(data_dir: str, port: Optional[int], host: str, datastore: Optional[str], **kw):
    """The server's settings from the command line; a bad --datastore or a taken --port ends the
    command with a message that names the option."""
    from ..api.admission import cluster_cidr, container_cidr
    from ..server import ServerConfig
    from ..store import DatastoreURLError, open_store
    if "cluster_cidr" in kw:
        try:
            cluster_cidr(kw["cluster_cidr"], kw["node_cidr_mask_size"])
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--cluster-cidr/--node-cidr-mask-size") from None
    if kw.get("container_cidr"):
        try:
            container_cidr(kw["container_cidr"])
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--container-cidr") from None
    if datastore:
        try:
            open_store(datastore)  # only parsed here: the store opens when the server starts
        except DatastoreURLError as e:
            raise typer.BadParameter(str(e), param_hint="--datastore")
    return ServerConfig(data_dir=os.path.abspath(data_dir), host=host, port=6443 if port is None else port,
                        port_fallback=port is None, datastore=datastore, **kw)


async def _start_server(server) -> None:
    from ..serving import PortInUse
    from ..store import StoreError
    try:
        await server.start()
    except PortInUse as e:
        console.print(f"[red]error:[/] {e.strerror or e}")
        raise SystemExit(1)
    except StoreError as e:  # an etcd that does not answer, …
        console.print(f"[red]error:[/] the datastore: {e}", soft_wrap=True)
        raise SystemExit(1)


async def serve_until_signalled(agent, kubeconfig_path: str, manifests: list[Path], api_url: str) -> None:
    """The end of `sendo up`'s start: the node's services, the manifests applied, what to type
    next; then run until SIGINT/SIGTERM."""
    if agent.dns:
        host, port = agent.dns.host, agent.dns.port
        console.print(f"Cluster DNS at {host}:{port} (pods get it as $SENDO_DNS): "
                      f"dig @{host} -p {port} <service>.<namespace>.svc.cluster.local")
    if agent.ingress:
        console.print(agent.ingress.describe())
    if manifests:
        from .apply import apply_files
        for line in await apply_files(agent.client, manifests):
            console.print("  " + line)
    print_next_steps(kubeconfig_path, manifests, api_url)
    await _until_signalled()
    console.print("stopping…")


def print_next_steps(kubeconfig_path: str, manifests: list[Path], api_url: str) -> None:
    """What to type next; the `export KUBECONFIG=` line (on stdout) says the cluster is ready."""
    console.print("\nNext, in another terminal:")
    print(f"export KUBECONFIG={kubeconfig_path}", flush=True)
    bundled = os.path.join(os.path.dirname(sys.executable), "kubectl")
    if not shutil.which("kubectl") and os.path.exists(bundled):
        console.print(f"export PATH={os.path.dirname(bundled)}:$PATH   # kubectl from the dev dependencies")
    console.print("kubectl get nodes,pods -o wide\n"
                  + ("" if manifests else "kubectl apply -f examples/hello-web.yaml\n")
                  + f"Web console: {api_url}/console/ — log in with the admin token:\n"
                  + "  kubectl config view --raw -o jsonpath='{.users[0].user.token}'\n"
                  + "Ctrl-C stops the cluster and its pods; `sendo up` with the same --data-dir resumes it.")


async def _up(cfg, node_name: str, manifests: list[Path], t0: float, agent_options: dict | None = None,
              local_registry=None) -> None:
    from ..agent.agent import Agent, AgentConfig
    from ..server import Server

    data_dir, host = cfg.data_dir, cfg.host
    server = Server(cfg)
    with console.status("starting the API server…"):
        await _start_server(server)
    # the agent's requests go to the API server's ASGI app in this process (client/local.py), not over HTTPS
    agent = Agent(AgentConfig(server=cfg.url, token=server.node_token, node_name=node_name, data_dir=data_dir,
                              ca_pem=server.ca_pem, address=host, local_api=server.api.app,
                              **(agent_options or {})))
    try:
        with console.status("starting the agent…"):
            await agent.start()
        await _wait_control_loops(server)
        path = _write_kubeconfig(data_dir, cfg.url, server.admin_token, server.ca_pem)
        console.print(f"[green]sendo is up[/] in {time.monotonic() - t0:.1f}s: API at {cfg.url}, "
                      f"node [bold]{node_name}[/] Ready, state in {data_dir}")
        console.print(f"Metrics (Prometheus): {cfg.url}/metrics (admin token), controllers "
                      f"{getattr(server.control, 'metrics_url', '-')}/metrics, agent "
                      f"http://{host}:{agent.port}/metrics (node token); `sendo status` shows each component up 1 / 0")
        _print_join(server)
        if local_registry is not None:
            console.print(local_registry.describe(), soft_wrap=True)
        await serve_until_signalled(agent, path, manifests, cfg.url)
    finally:
        await agent.stop(stop_pods=True)
        await server.stop()


async def _wait_control_loops(server) -> None:
    """Until the controllers process has synced its caches: a pod created the moment `sendo
    up` says it is up is scheduled at once, not after the loops' start-up."""
    wait = getattr(server.control, "wait_ready", None)
    if wait is None:
        return
    with console.status("starting the control loops…"):
        if not await wait(CONTROL_LOOPS_START_TIMEOUT):
            console.print(f"[yellow]the control loops are not ready after {CONTROL_LOOPS_START_TIMEOUT:.0f}s[/]; "
                          f"they go on starting (log: {server.control.log_path})")


@app.command()
def server(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the server keeps its state."),
           port: Optional[int] = typer.Option(None, help=_PORT_HELP, show_default=False),
           host: str = typer.Option("127.0.0.1", help=_HOST_HELP),
           advertise_address: Optional[str] = typer.Option(None, help=_ADVERTISE_HELP, show_default=False),
           tls_san: Optional[list[str]] = typer.Option(None, help=_TLS_SAN_HELP, show_default=False),
           cluster_cidr: str = typer.Option("127.64.0.0/10", help=_CLUSTER_CIDR_HELP),
           node_cidr_mask_size: int = typer.Option(22, help=_NODE_MASK_HELP),
           container_cidr: str = typer.Option("", help=_CONTAINER_IPAM_HELP, show_default=False),
           datastore: Optional[str] = typer.Option(None, help=_DATASTORE_HELP, show_default=False),
           no_controllers: bool = typer.Option(False, "--no-controllers",
                                               help="Run no control loops here (run `sendo controllers` apart)."),
           controllers: str = _controllers_option(),
           audit_policy_file: Optional[Path] = typer.Option(None, help=_AUDIT_POLICY_HELP, show_default=False),
           audit_log_path: Optional[str] = typer.Option(None, help=_AUDIT_LOG_HELP, show_default=False),
           audit_log_maxsize: int = typer.Option(100, help="Megabytes an audit log file may reach before it is rotated."),
           audit_log_maxbackup: int = typer.Option(10, help="Rotated audit log files kept (the oldest go first)."),
           leader_elect: Optional[bool] = typer.Option(None, "--leader-elect/--no-leader-elect", help=_ELECT_HELP,
                                                       show_default=False),
           lease_duration: float = typer.Option(3.0, "--leader-elect-lease-duration", help=_LEASE_HELP),
           renew_deadline: float = typer.Option(2.0, "--leader-elect-renew-deadline", help=_RENEW_HELP),
           retry_period: float = typer.Option(0.5, "--leader-elect-retry-period", help=_RETRY_HELP),
           hpa_sync_period: float = _hpa_sync_option(),
           node_monitor_grace_period: str = _grace_option(),
           default_not_ready_toleration_seconds: int = _toleration_option("--default-not-ready-toleration-seconds",
                                                                          _NOT_READY_HELP),
           default_unreachable_toleration_seconds: int = _toleration_option(
               "--default-unreachable-toleration-seconds", _UNREACHABLE_HELP),
           advertise_port: Optional[int] = typer.Option(None, help="Port the `kubernetes` Service in `default` "
                                                        "sends pods to (default: --port), e.g. a balancer's in "
                                                        "front of several servers.", show_default=False),
           max_requests_inflight: int = typer.Option(400, help=_INFLIGHT_HELP.format(kind="read-only")),
           max_mutating_requests_inflight: int = typer.Option(200, help=_INFLIGHT_HELP.format(kind="mutating")),
           snapshot_schedule: str = _snapshot_schedule_option(),
           snapshot_retention: int = _snapshot_retention_option(),
           shutdown_delay_duration: float = _shutdown_delay_option(),
           verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the control plane does.")):
    """Run the API server with the scheduler and controllers, without an agent.

    Agents join with the node token this prints (`sendo agent --server … --token …`).
    Several servers can share one etcd (--datastore etcd://…): each serves the API, and the
    control loops run in one of them at a time (leader election through a Lease).
    """
    _logging(verbose)
    audit = _audit_config(audit_policy_file, audit_log_path, audit_log_maxsize, audit_log_maxbackup)
    _lock(data_dir)  # after the options are checked: a refused start writes nothing
    run(_server(_server_config(data_dir, port, host, datastore, controllers=not no_controllers,
                               advertise_address=advertise_address, tls_sans=list(tls_san or []),
                               cluster_cidr=cluster_cidr, node_cidr_mask_size=node_cidr_mask_size,
                               container_cidr=container_cidr,
                               controller_names=controllers, leader_elect=leader_elect,
                               election=_election(lease_duration, renew_deadline, retry_period),
                               audit=audit,
                               hpa_sync_period=hpa_sync_period, advertise_port=advertise_port,
                               max_requests_inflight=max_requests_inflight,
                               max_mutating_requests_inflight=max_mutating_requests_inflight,
                               snapshot_schedule=snapshot_schedule, snapshot_retention=snapshot_retention,
                               **_node_loss_config(node_monitor_grace_period, default_not_ready_toleration_seconds,
                                                   default_unreachable_toleration_seconds)), shutdown_delay_duration))


def _print_join(server) -> None:
    """The join command on a line of its own (standard output, so a script can take it)."""
    console.print(f"Join another machine as a node: copy {server.tls.ca_cert} there, then run")
    print(server.join_command(), flush=True)
    if server.cfg.host in ("127.0.0.1", "::1", "localhost"):
        console.print("(this server listens on loopback only: start it with --host ADDRESS for other machines)")


async def _server(cfg, shutdown_delay: float = 0.0) -> None:
    from ..server import Server
    s = Server(cfg)
    await _start_server(s)
    path = _write_kubeconfig(cfg.data_dir, cfg.url, s.admin_token, s.ca_pem)
    console.print(f"[green]sendo server[/] at {cfg.url}; state in {cfg.data_dir}")
    console.print(f"Web console: {cfg.url}/console/ (log in with a bearer token, e.g. the kubeconfig's)")
    _print_join(s)
    print(f"export KUBECONFIG={path}", flush=True)
    try:
        await _until_signalled()
        if shutdown_delay:
            s.shutting_down = True  # /readyz fails: a balancer stops sending new connections here
            await asyncio.sleep(shutdown_delay)  # while it notices, this server still serves
    finally:
        await s.stop()


@app.command()
def agent(server: str = typer.Option(..., help=_SERVER_LIST_HELP, callback=_server_list),
          token: str = typer.Option(..., envvar="SENDO_TOKEN", help="The node token `sendo server` printed."),
          node_name: str = typer.Option(socket.gethostname(), help="Name of this node."),
          ca_cert: Optional[Path] = typer.Option(None, help="CA certificate of the API server (PEM)."),
          data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the agent keeps pod state and logs."),
          address: str = typer.Option("127.0.0.1", help="Address the API server reaches this agent at."),
          stop_pods: bool = typer.Option(False, help="On exit, stop the pods' processes too."),
          hollow: int = typer.Option(0, help="Run this many hollow (fake) nodes instead, for benchmarks: "
                                             "pods bound to them go Running without any process. "
                                             "They act for many nodes: give them the admin token."),
          pod_start_delay: float = typer.Option(0.0, help="Hollow nodes: milliseconds a pod takes to 'start'."),
          ingress: bool = typer.Option(True, "--ingress/--no-ingress", help=_INGRESS_HELP),
          service_proxy: bool = typer.Option(True, "--service-proxy/--no-service-proxy",
                                             help="Run the service proxy on this node (off for a second agent on "
                                                  "a machine whose first agent already serves the ClusterIPs)."),
          ingress_http_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTP_PORT",
                                                          help=_INGRESS_HTTP_HELP, show_default=False),
          ingress_https_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTPS_PORT",
                                                           help=_INGRESS_HTTPS_HELP, show_default=False),
          runtime: str = typer.Option("process", help=_RUNTIME_HELP, callback=_runtime_option),
          engine: str = typer.Option("", help=_ENGINE_HELP, show_default=False),
          container_cidr: str = typer.Option("", help=_CIDR_HELP + " Default: 10.244.0.0/16.",
                                             show_default=False),
          metrics_interval: float = _metrics_interval_option(),
          node_lease_duration_seconds: int = _lease_option(),
          container_service_cidr: str = typer.Option("", help=_SVC_CIDR_HELP, show_default=False),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the agent does.")):
    """Run a node agent: register the node and run the pods bound to it."""
    _logging(verbose)
    ca = ca_cert.read_bytes() if ca_cert else None
    if hollow:
        run(_hollow(server, token, ca, hollow, node_name, pod_start_delay / 1000))
        return
    run(_agent(server, token, node_name, ca, os.path.abspath(data_dir), address, stop_pods,
               {**_ingress_config(ingress, ingress_http_port, ingress_https_port), "runtime": runtime,
             "engine": engine, "container_cidr": container_cidr, "metrics_interval": metrics_interval,
             "service_proxy": service_proxy, "node_lease_duration_seconds": node_lease_duration_seconds,
             "container_service_cidr": container_service_cidr}))


async def _hollow(server: str, token: str, ca: bytes | None, count: int, prefix: str, delay: float) -> None:
    from ..agent.hollow import HollowNodes
    h = HollowNodes(server, token, ca, count, prefix=prefix, pod_start_delay=delay)
    await h.start()
    console.print(f"[green]{count} hollow nodes[/] ({prefix}-0000…) joined {server}")
    print("hollow nodes ready", flush=True)
    try:
        await _until_signalled()
    finally:
        await h.stop()


_NAME_MISMATCH = (62, 64)  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _join_error(e: BaseException, server: str) -> str | None:
    """One line for a join that cannot work (a wrong token, CA or address); None if the error
    is not one of those."""
    import ssl
    from urllib.parse import urlsplit

    import aiohttp

    from ..client import ApiError
    if isinstance(e, ApiError) and e.status in (401, 403):
        return (f"the API server at {server} refused the node token ({e.status} {e.reason}): pass the token "
                "`sendo server` printed (DATA_DIR/server/node-token)")
    cert_error = getattr(e, "certificate_error", e)
    if isinstance(cert_error, ssl.SSLCertVerificationError) and cert_error.verify_code in _NAME_MISMATCH:
        host = urlsplit(server).hostname
        return (f"the API server's certificate at {server} does not name {host}: join with an address it names, "
                f"or restart the server with --tls-san {host} (or --advertise-address {host})")
    if isinstance(e, (aiohttp.ClientSSLError, ssl.SSLError)):
        return f"cannot verify the API server at {server}: pass its CA certificate with --ca-cert ({e})"
    if isinstance(e, (aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError)):
        return f"cannot reach the API server at {server}: {e or 'no answer in time'}"
    return None


async def _agent(server: str, token: str, node_name: str, ca: bytes | None, data_dir: str, address: str,
                 stop_pods: bool, agent_options: dict | None = None) -> None:
    from ..agent.agent import Agent, AgentConfig
    a = Agent(AgentConfig(server=server, token=token, node_name=node_name, data_dir=data_dir, ca_pem=ca,
                          address=address, **(agent_options or {})))
    try:
        await a.start()
    except Exception as e:
        msg = _join_error(e, server)
        await a.stop()  # what start opened (sessions, the HTTP listener) closes; pods are left as they are
        if msg is None:
            raise
        console.print(f"[red]error:[/] {msg}", soft_wrap=True)
        raise SystemExit(1)
    console.print(f"[green]sendo agent[/] {node_name} joined {server}")
    if a.ingress:
        console.print(a.ingress.describe())
    try:
        await _until_signalled()
    finally:
        await a.stop(stop_pods=stop_pods)


@app.command()
def controllers(server: str = typer.Option(..., help=_SERVER_LIST_HELP, callback=_server_list),
                token_file: Optional[Path] = typer.Option(None, help="File holding a token with full access "
                                                          "(every loop acts as its user)."),
                credentials_dir: Optional[Path] = typer.Option(
                    None, help="Directory of the loops' client certificates, one per identity (what `sendo "
                    "server` writes in DATA_DIR/server/components): the scheduler acts as system:kube-scheduler, "
                    "each controller as its kube-system ServiceAccount. Instead of --token-file."),
                ca_cert: Optional[Path] = typer.Option(None, help="CA certificate of the API server (PEM)."),
                controllers: str = _controllers_option(),
                leader_elect: bool = typer.Option(False, "--leader-elect", help="Run the loops only while "
                                                  "holding the kube-system/sendo-controller-manager Lease."),
                lease_duration: float = typer.Option(3.0, "--leader-elect-lease-duration", help=_LEASE_HELP),
                renew_deadline: float = typer.Option(2.0, "--leader-elect-renew-deadline", help=_RENEW_HELP),
                retry_period: float = typer.Option(0.5, "--leader-elect-retry-period", help=_RETRY_HELP),
                identity: str = typer.Option("", "--leader-elect-identity",
                                             help="This candidate's name in the Lease (default: host_pid_random)."),
                metrics_port: int = typer.Option(10257, help="Port of /metrics, /healthz, /livez and /readyz "
                                                 "on 127.0.0.1 (kube-controller-manager's is 10257; if another "
                                                 "process holds 10257, a free port, logged)."),
                hpa_sync_period: float = _hpa_sync_option(),
                node_monitor_grace_period: str = _grace_option(),
                cluster_signing_cert_file: Optional[Path] = typer.Option(
                    None, help="CA certificate (PEM) that signs approved kubernetes.io/kube-apiserver-client "
                    "CertificateSigningRequests (with --cluster-signing-key-file)."),
                cluster_signing_key_file: Optional[Path] = typer.Option(None, help="The key of that CA (PEM)."),
                verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the controllers do.")):
    """Run the scheduler and controllers against an API server.

    `sendo server` and `sendo up` start this for you as a child process.
    """
    _logging(verbose)
    from ..controlplane import Credentials, controller_options, run_controllers
    if (token_file is None) == (credentials_dir is None):
        console.print("[red]error:[/] give one of --token-file and --credentials-dir")
        raise typer.Exit(2)
    creds = token_file.read_text().strip() if token_file else Credentials(directory=str(credentials_dir))
    ca = ca_cert.read_bytes() if ca_cert else None
    election = _election(lease_duration, renew_deadline, retry_period) if leader_elect else None
    run(run_controllers(server, creds, ca, controllers, election, identity, metrics_port,
                        controller_options(parse_duration(node_monitor_grace_period), hpa_sync_period,
                                           str(cluster_signing_cert_file or "") or None,
                                           str(cluster_signing_key_file or "") or None)))


secrets_app = typer.Typer(help="Secrets at rest: sealed with AES-GCM, key in DATA_DIR/server/encryption-config.yaml.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate-key")
def rotate_key(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The data directory of the running server "
                                            "(its kubeconfig and admin token are used).")):
    """Seal every Secret with a new key, while the server runs.

    The new key goes first in the encryption configuration with the old ones kept behind
    it, every stored value is sealed again (writes go on meanwhile), then the old keys
    are dropped. Reads never fail during the rotation. Keep a copy of the new
    configuration file with your snapshots.
    """
    import base64

    from ..client.rest import Client
    cfg_path = os.path.join(data_dir, "kubeconfig")
    try:
        kc = yaml.safe_load(open(cfg_path))
        cluster = kc["clusters"][0]["cluster"]
        token = open(os.path.join(data_dir, "server", "admin-token")).read().strip()
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
        console.print(f"[red]error:[/] no running server's kubeconfig and admin token in {data_dir} ({e}); "
                      "give the server's --data-dir")
        raise SystemExit(1)
    ca = base64.b64decode(cluster["certificate-authority-data"]) if "certificate-authority-data" in cluster else None

    async def go() -> dict:
        from ..api.rotation import PATH
        c = Client(cluster["server"], token, ca, timeout=600)
        try:
            return await c.request("POST", PATH, body={})
        finally:
            await c.close()
    from ..client import ApiError
    try:
        with console.status("sealing every Secret with a new key…"):
            status = asyncio.run(go())
    except ApiError as e:
        console.print(f"[red]error:[/] {e.body.get('message', e)}")
        raise SystemExit(1)
    except OSError as e:
        console.print(f"[red]error:[/] cannot reach the server at {cluster['server']}: {e}")
        raise SystemExit(1)
    console.print(status.get("message", "done"))


@app.command()
def status(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data directory (its kubeconfig "
                                        "and the server's component list)."),
           kubeconfig: Optional[Path] = typer.Option(None, envvar="KUBECONFIG", show_default=False,
                                                     help="Kubeconfig of the cluster (default: DATA_DIR/kubeconfig)."),
           timeout: float = typer.Option(5.0, help="Seconds each component has to answer.")):
    """Each component of the cluster, up 1 or down 0, from its /readyz: the API server, the
    controllers, and the agent of every node. Exits 1 if any is down."""
    from .status import check_all, render
    rows = check_all(os.path.abspath(data_dir), kubeconfig, timeout)
    print(render(rows))
    raise typer.Exit(0 if rows and all(r.up for r in rows) else 1)


def main() -> None:
    app(args=_optional_values(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
