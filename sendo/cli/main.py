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

app = typer.Typer(help="sendo: a container orchestrator that speaks the Kubernetes API.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True, highlight=False)

DEFAULT_DATA_DIR = os.environ.get("SENDO_DATA_DIR") or str(Path.home() / ".sendo")


def run(coro) -> None:
    """Run on uvloop (libuv): faster sockets and TLS for the API, the proxy and watches."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _until_signalled() -> None:
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
                   "(default: DATA_DIR/server/state.db).")
_INGRESS_HELP = ("Run the ingress controller: an HTTP(S) reverse proxy on the node's address that serves "
                 "Ingresses of class `sendo` (the default class).")
_INGRESS_HTTP_HELP = ("Port of the ingress controller's HTTP listener (default: 80 as root, else 8080; "
                      "0 picks any free port).")
_INGRESS_HTTPS_HELP = ("Port of the ingress controller's HTTPS listener, which picks certificates by SNI "
                       "from the Ingresses' tls Secrets (default: 443 as root, else 8443; 0 picks any free port).")


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


def _ingress_config(enabled: bool, http_port: Optional[int], https_port: Optional[int]) -> dict:
    return {"ingress": enabled, "ingress_http_port": http_port, "ingress_https_port": https_port}


_RUNTIME_HELP = ("Container runtime for pods without a runtimeClassName (pods pick another with a "
                 "RuntimeClass whose handler names it; `process` is always available).")


_ENGINE_HELP = ("docker runtime: the Docker Engine API socket (unix:///path). Default: DOCKER_HOST, then "
                "/var/run/docker.sock, /run/podman/podman.sock; if none answers and podman is installed, "
                "sendo runs `podman system service` itself.")
_CIDR_HELP = ("docker runtime: the pod CIDR of container pods (IPv4, at most /23). An unreachable route "
              "covers it all; this node's pods get addresses from its first /24.")
_SVC_CIDR_HELP = ("docker runtime: where container pods reach Services (IPv4 /16, not loopback): each ClusterIP "
                  "127.32.x.y has its twin at the same offset here; an unreachable route covers it, the node holds "
                  "it as local addresses. Default: 10.96.0.0/16.")


def _runtime_option(name: str) -> str:
    """The --runtime value, checked before anything starts: an unknown name lists the known ones."""
    from ..agent.runtime.registry import UnknownRuntime, check
    try:
        return check(name)
    except UnknownRuntime as e:
        raise typer.BadParameter(str(e), param_hint="--runtime") from None


@app.command()
def up(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the cluster keeps its state."),
       port: Optional[int] = typer.Option(None, help=_PORT_HELP, show_default=False),
       host: str = typer.Option("127.0.0.1", help="Address the API listens on."),
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
       engine: str = typer.Option("", help=_ENGINE_HELP, show_default=False),
       container_cidr: str = typer.Option("", help=_CIDR_HELP + " Default: 10.244.0.0/16.", show_default=False),
       container_service_cidr: str = typer.Option("", help=_SVC_CIDR_HELP, show_default=False),
       verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the control plane does.")):
    """Run a one-machine cluster (API server, controllers, scheduler and an agent) in the foreground.

    State lives in DATA_DIR (SQLite); starting again with the same DATA_DIR resumes the
    same objects and pods. Ctrl-C or SIGTERM stops the cluster and its pods' processes.
    """
    _logging(verbose)
    cfg = _server_config(data_dir, port, host, datastore, controller_names=controllers)
    run(_up(cfg, node_name, apply or [], time.monotonic(),
            {**_ingress_config(ingress, ingress_http_port, ingress_https_port), "runtime": runtime,
             "engine": engine, "container_cidr": container_cidr,
             "container_service_cidr": container_service_cidr}))


def _server_config(data_dir: str, port: Optional[int], host: str, datastore: Optional[str], **kw):
    """The server's settings from the command line; a bad --datastore or a taken --port ends the
    command with a message that names the option."""
    from ..server import ServerConfig
    from ..store import DatastoreURLError, open_store
    if datastore:
        try:
            open_store(datastore)  # only parsed here: the store opens when the server starts
        except DatastoreURLError as e:
            raise typer.BadParameter(str(e), param_hint="--datastore")
    return ServerConfig(data_dir=os.path.abspath(data_dir), host=host, port=6443 if port is None else port,
                        port_fallback=port is None, datastore=datastore, **kw)


async def _start_server(server) -> None:
    from ..serving import PortInUse
    try:
        await server.start()
    except PortInUse as e:
        console.print(f"[red]error:[/] {e.strerror or e}")
        raise SystemExit(1)


async def _up(cfg, node_name: str, manifests: list[Path], t0: float, agent_options: dict | None = None) -> None:
    from ..agent.agent import Agent, AgentConfig
    from ..server import Server

    data_dir, host = cfg.data_dir, cfg.host
    server = Server(cfg)
    with console.status("starting the API server…"):
        await _start_server(server)
    agent = Agent(AgentConfig(server=cfg.url, token=server.node_token, node_name=node_name, data_dir=data_dir,
                              ca_pem=server.ca_pem, address=host, **(agent_options or {})))
    try:
        with console.status("starting the agent…"):
            await agent.start()
        path = _write_kubeconfig(data_dir, cfg.url, server.admin_token, server.ca_pem)
        console.print(f"[green]sendo is up[/] in {time.monotonic() - t0:.1f}s: API at {cfg.url}, "
                      f"node [bold]{node_name}[/] Ready, state in {data_dir}")
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
        console.print("\nNext, in another terminal:")
        print(f"export KUBECONFIG={path}", flush=True)
        bundled = os.path.join(os.path.dirname(sys.executable), "kubectl")
        if not shutil.which("kubectl") and os.path.exists(bundled):
            console.print(f"export PATH={os.path.dirname(bundled)}:$PATH   # kubectl from the dev dependencies")
        console.print("kubectl get nodes,pods -o wide\n"
                      + ("" if manifests else "kubectl apply -f examples/hello-web.yaml\n")
                      + "Ctrl-C stops the cluster and its pods; `sendo up` with the same --data-dir resumes it.")
        await _until_signalled()
        console.print("stopping…")
    finally:
        await agent.stop(stop_pods=True)
        await server.stop()


@app.command()
def server(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the server keeps its state."),
           port: Optional[int] = typer.Option(None, help=_PORT_HELP, show_default=False),
           host: str = typer.Option("127.0.0.1", help="Address the API listens on."),
           datastore: Optional[str] = typer.Option(None, help=_DATASTORE_HELP, show_default=False),
           no_controllers: bool = typer.Option(False, "--no-controllers",
                                               help="Run no control loops here (run `sendo controllers` apart)."),
           controllers: str = _controllers_option(),
           verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the control plane does.")):
    """Run the API server with the scheduler and controllers, without an agent.

    Agents join with the node token this prints (`sendo agent --server … --token …`).
    """
    _logging(verbose)
    run(_server(_server_config(data_dir, port, host, datastore, controllers=not no_controllers,
                               controller_names=controllers)))


async def _server(cfg) -> None:
    from ..server import Server
    s = Server(cfg)
    await _start_server(s)
    path = _write_kubeconfig(cfg.data_dir, cfg.url, s.admin_token, s.ca_pem)
    console.print(f"[green]sendo server[/] at {cfg.url}; state in {cfg.data_dir}")
    console.print(f"Join a node:  sendo agent --server {cfg.url} --token {s.node_token} "
                  f"--ca-cert {s.tls.ca_cert} --node-name NAME")
    print(f"export KUBECONFIG={path}", flush=True)
    try:
        await _until_signalled()
    finally:
        await s.stop()


@app.command()
def agent(server: str = typer.Option(..., help="API server URL, e.g. https://127.0.0.1:6443."),
          token: str = typer.Option(..., envvar="SENDO_TOKEN", help="The node token `sendo server` printed."),
          node_name: str = typer.Option(socket.gethostname(), help="Name of this node."),
          ca_cert: Optional[Path] = typer.Option(None, help="CA certificate of the API server (PEM)."),
          data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="Where the agent keeps pod state and logs."),
          address: str = typer.Option("127.0.0.1", help="Address the API server reaches this agent at."),
          stop_pods: bool = typer.Option(False, help="On exit, stop the pods' processes too."),
          hollow: int = typer.Option(0, help="Run this many hollow (fake) nodes instead, for benchmarks: "
                                             "pods bound to them go Running without any process."),
          pod_start_delay: float = typer.Option(0.0, help="Hollow nodes: milliseconds a pod takes to 'start'."),
          ingress: bool = typer.Option(True, "--ingress/--no-ingress", help=_INGRESS_HELP),
          ingress_http_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTP_PORT",
                                                          help=_INGRESS_HTTP_HELP, show_default=False),
          ingress_https_port: Optional[int] = typer.Option(None, envvar="SENDO_INGRESS_HTTPS_PORT",
                                                           help=_INGRESS_HTTPS_HELP, show_default=False),
          runtime: str = typer.Option("process", help=_RUNTIME_HELP, callback=_runtime_option),
          engine: str = typer.Option("", help=_ENGINE_HELP, show_default=False),
          container_cidr: str = typer.Option("", help=_CIDR_HELP + " Default: 10.244.0.0/16.",
                                             show_default=False),
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
             "engine": engine, "container_cidr": container_cidr,
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


async def _agent(server: str, token: str, node_name: str, ca: bytes | None, data_dir: str, address: str,
                 stop_pods: bool, agent_options: dict | None = None) -> None:
    from ..agent.agent import Agent, AgentConfig
    a = Agent(AgentConfig(server=server, token=token, node_name=node_name, data_dir=data_dir, ca_pem=ca,
                          address=address, **(agent_options or {})))
    await a.start()
    console.print(f"[green]sendo agent[/] {node_name} joined {server}")
    if a.ingress:
        console.print(a.ingress.describe())
    try:
        await _until_signalled()
    finally:
        await a.stop(stop_pods=stop_pods)


@app.command()
def controllers(server: str = typer.Option(..., help="API server URL."),
                token_file: Path = typer.Option(..., help="File holding a token with full access."),
                ca_cert: Optional[Path] = typer.Option(None, help="CA certificate of the API server (PEM)."),
                controllers: str = _controllers_option(),
                verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the controllers do.")):
    """Run the scheduler and controllers against an API server.

    `sendo server` and `sendo up` start this for you as a child process.
    """
    _logging(verbose)
    from ..controlplane import run_controllers
    ca = ca_cert.read_bytes() if ca_cert else None
    run(run_controllers(server, token_file.read_text().strip(), ca, controllers))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
