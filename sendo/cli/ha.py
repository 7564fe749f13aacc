"""`sendo up --servers N`: a highly available cluster on one machine, for trying failover.

The `sendo up` process supervises, on loopback:

* N etcd members (Debian `etcd-server`; `store/etcd_local.py`), unless --datastore names an etcd;
* N `sendo server` processes on that etcd, sharing one cluster identity (`server.share_identity`:
  tokens, CA and serving certificate, ServiceAccount key, encryption keys), each with its
  `sendo controllers` child under leader election (one runs the loops at a time);
* a TCP balancer (`balancer.py`) in front of the servers: the kubeconfig points at it, so
  kubectl keeps working when a server dies;
* supervision: a server that exits (killed, crashed, or SIGTERM for a rolling restart) is
  started again after a back-off (1 s, doubling to 30 s while it keeps dying), logged;
* one agent in this process, which itself fails over between the servers (client-side
  balancer, `client/rest.py`).

Children get SIGTERM if this process dies (PR_SET_PDEATHSIG). The ports chosen at the first
start are kept in DATA_DIR/ha/layout.json, so a restart finds etcd's members where their
data says they are.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..private import private_dir, write_private
from ..server import ServerConfig
from ..serving import free_port

REPO_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SERVER_START_DEADLINE = 180.0  # seconds for every server to answer /readyz (slow, loaded machines)
STOP_GRACE = 20.0
RESTART_BACKOFF = (1.0, 30.0)  # a dead server is restarted after 1 s, doubling up to 30 s while it keeps dying
RESTART_RESET = 60.0  # … back to 1 s once it ran this long
SHUTDOWN_DELAY = 3.0  # on SIGTERM a server fails /readyz this long before it stops: the balancer moves away first


@dataclass
class HAOptions:
    servers: int
    host: str
    port: int
    port_fallback: bool
    datastore: str | None  # an etcd of the user's; None: run our own members
    server_args: list[str] = field(default_factory=list)  # passed to every `sendo server`
    verbose: bool = False


class ServerProcess(ServerConfig):
    """One `sendo server` child: its settings (url, server_dir) and its process."""

    def __init__(self, name: str, data_dir: str, port: int, host: str):
        super().__init__(data_dir=data_dir, host=host, port=port)
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> str:
        return self.data_dir + ".log"


def _layout(data_dir: str, n: int, own_etcd: bool) -> dict:
    """The ports of this data dir's etcd members and servers: chosen once, then kept."""
    path = os.path.join(data_dir, "ha", "layout.json")
    try:
        with open(path) as f:
            layout = json.load(f)
        if len(layout["servers"]) == n and (not own_etcd or len(layout["etcd"]) == n):
            return layout
        raise SystemExit(f"{data_dir} holds a cluster of {len(layout['servers'])} servers, not {n}: "
                         "start it with that --servers, or use a new --data-dir")
    except FileNotFoundError:
        pass
    taken: set[int] = set()

    def port() -> int:
        while (p := free_port()) in taken:
            pass
        taken.add(p)
        return p
    layout = {"servers": [port() for _ in range(n)],
              "etcd": [[port(), port()] for _ in range(n)] if own_etcd else []}
    write_private(path, json.dumps(layout).encode())
    return layout


def ensure_etcd() -> None:
    """etcd installed, by the project's script if it is missing (Debian `etcd-server`)."""
    if shutil.which("etcd"):
        return
    script = REPO_SCRIPTS / "setup-containers.sh"
    if not script.exists():
        raise SystemExit("etcd is not installed: install Debian's etcd-server (apt-get install etcd-server)")
    r = subprocess.run(["sh", str(script)], stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not shutil.which("etcd"):
        raise SystemExit(f"etcd is not installed and {script} could not install it")


class HACluster:
    """What `sendo up --servers N` runs; `start()` returns once every server is ready."""

    def __init__(self, data_dir: str, opts: HAOptions):
        from ..store.etcd_local import LocalEtcd, Member
        self.data_dir = data_dir
        self.opts = opts
        layout = _layout(data_dir, opts.servers, opts.datastore is None)
        self.etcd: LocalEtcd | None = None
        if opts.datastore is None:
            base = os.path.join(data_dir, "etcd")
            self.etcd = LocalEtcd(base, opts.servers, [Member(f"m{i}", c, p, os.path.join(base, f"m{i}"))
                                                       for i, (c, p) in enumerate(layout["etcd"])],
                                  with_parent=True)
        self.datastore = opts.datastore or (self.etcd.url if self.etcd else "")
        self.servers = [ServerProcess(f"s{i}", os.path.join(data_dir, "servers", f"s{i}"), p, opts.host)
                        for i, p in enumerate(layout["servers"])]
        self.balancer = None
        self._sock: socket.socket | None = None
        self.port = opts.port
        self.watchers: list[asyncio.Task] = []
        self.stopping = False  # set once `sendo up` stops: a server that exits now is not restarted

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def source_dir(self) -> str:
        return self.servers[0].server_dir

    def token(self, name: str) -> str:
        with open(os.path.join(self.source_dir, name)) as f:
            return f.read().strip()

    @property
    def ca_file(self) -> str:
        return os.path.join(self.source_dir, "tls", "ca.crt")

    async def start(self) -> None:
        from ..server import share_identity
        from ..serving import listen_socket
        # the balancer's port first: a taken --port fails before anything starts, and the
        # servers send pods (the `kubernetes` Service) to it
        self._sock = listen_socket(self.opts.host, self.opts.port, self.opts.port_fallback)
        self.port = self._sock.getsockname()[1]
        private_dir(os.path.join(self.data_dir, "servers"), own=True)
        share_identity(self.source_dir, [s.server_dir for s in self.servers], self.opts.host)
        if self.etcd is not None:
            ensure_etcd()
            await asyncio.to_thread(self.etcd.start)
        for s in self.servers:
            await self._spawn(s)
        with open(self.ca_file, "rb") as f:
            ca = f.read()
        await asyncio.gather(*(self._wait_ready(s, ca) for s in self.servers))
        self.watchers = [asyncio.create_task(self._watch(s), name=f"watch-{s.name}") for s in self.servers]
        await self._start_balancer(ca)

    async def _spawn(self, s: ServerProcess) -> None:
        from ..tasks import die_with_parent
        args = [sys.executable, "-m", "sendo.cli.main", "server", "--data-dir", s.data_dir, "--host", s.host,
                "--port", str(s.port), "--advertise-port", str(self.port), "--datastore", self.datastore,
                "--leader-elect", "--shutdown-delay-duration", str(SHUTDOWN_DELAY), *self.opts.server_args]
        if self.opts.verbose:
            args.append("--verbose")
        with open(s.log_path, "ab") as log:
            s.proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                          stderr=log, preexec_fn=die_with_parent)

    async def _wait_ready(self, s: ServerProcess, ca: bytes) -> None:
        from ..client.rest import wait_ready
        assert s.proc is not None
        waiting = asyncio.create_task(wait_ready(s.url, ca, SERVER_START_DEADLINE))
        exited = asyncio.create_task(s.proc.wait())
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        for t in (waiting, exited):
            t.cancel()
        if exited in done:
            raise SystemExit(f"sendo server {s.name} exited with {s.proc.returncode} during start-up; "
                             f"see {s.log_path}:\n{_tail(s.log_path)}")
        try:
            waiting.result()
        except TimeoutError:
            raise SystemExit(f"sendo server {s.name} not ready in {SERVER_START_DEADLINE:.0f}s; see {s.log_path}")

    async def _start_balancer(self, ca: bytes) -> None:
        from .balancer import TCPBalancer
        self.balancer = TCPBalancer([(s.host, s.port) for s in self.servers], ca)
        await self.balancer.start(self._sock)

    @property
    def url(self) -> str:
        return f"https://{self.opts.host}:{self.port}"

    async def _watch(self, s: ServerProcess) -> None:
        """Supervise one server: when it exits, start it again after a back-off (until stop())."""
        from .main import console
        delay = RESTART_BACKOFF[0]
        while True:
            assert s.proc is not None
            started = time.monotonic()
            code = await s.proc.wait()
            if self.stopping:  # Ctrl-C reaches the servers too: they stop with us
                return
            if time.monotonic() - started > RESTART_RESET:
                delay = RESTART_BACKOFF[0]
            left = sum(1 for x in self.servers if x.proc is not None and x.proc.returncode is None)
            console.print(f"[yellow]sendo server {s.name}[/] (pid {s.proc.pid}) exited with {code}; "
                          f"{left} of {len(self.servers)} serve on; restarting it in {delay:.0f}s "
                          f"(log: {s.log_path})")
            await asyncio.sleep(delay)  # the back-off before a restart
            if self.stopping:
                return
            delay = min(delay * 2, RESTART_BACKOFF[1])
            await self._spawn(s)
            assert s.proc is not None
            console.print(f"sendo server {s.name} restarted: pid {s.proc.pid}")

    async def stop(self) -> None:
        self.stopping = True
        for t in self.watchers:
            t.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        live = [s.proc for s in self.servers if s.proc is not None and s.proc.returncode is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                await asyncio.wait_for(p.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()
        if self.balancer is not None:
            await self.balancer.stop()
        elif self._sock is not None:
            self._sock.close()
        if self.etcd is not None:
            await asyncio.to_thread(self.etcd.stop)


def _tail(path: str, n: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


async def up_ha(data_dir: str, opts: HAOptions, node_name: str, manifests: list[Path], t0: float,
                agent_options: dict) -> None:
    from ..agent.agent import Agent, AgentConfig
    from ..serving import PortInUse
    from .main import _write_kubeconfig, console, serve_until_signalled
    cluster = HACluster(data_dir, opts)
    agent = None
    try:
        with console.status(f"starting {opts.servers} etcd members and {opts.servers} API servers…"):
            try:
                await cluster.start()
            except PortInUse as e:
                console.print(f"[red]error:[/] {e.strerror or e}")
                raise SystemExit(1)
        with open(cluster.ca_file, "rb") as f:
            ca = f.read()
        agent = Agent(AgentConfig(server=",".join(cluster.urls), token=cluster.token("node-token"),
                                  node_name=node_name, data_dir=data_dir, ca_pem=ca, address=opts.host,
                                  pods_api_url=cluster.url, **agent_options))
        with console.status("starting the agent…"):
            await agent.start()
        path = _write_kubeconfig(data_dir, cluster.url, cluster.token("admin-token"), ca)
        console.print(f"[green]sendo is up[/] in {time.monotonic() - t0:.1f}s, highly available: "
                      f"{opts.servers} API servers on {cluster.datastore}, node [bold]{node_name}[/] Ready, "
                      f"state in {data_dir}")
        for s in cluster.servers:
            assert s.proc is not None
            console.print(f"  server {s.name}: {s.url}  pid {s.proc.pid}  log {s.log_path}")
        console.print(f"kubectl reaches them through a TCP balancer at {cluster.url} (checks each /readyz "
                      "every second); the agent fails over between them itself.\n"
                      "The scheduler and controllers run in the server holding the Lease:\n"
                      "  kubectl -n kube-system get lease sendo-controller-manager\n"
                      "Try a failover: kill -9 one server's pid above; kubectl keeps working, "
                      "another server takes the Lease within a few seconds, and sendo up starts the "
                      "killed one again (kill -TERM each in turn: a rolling restart).\n"
                      f"Join another node: sendo agent --server {','.join(cluster.urls)} "
                      f"--token {cluster.token('node-token')} --ca-cert {cluster.ca_file} --node-name NAME")
        await serve_until_signalled(agent, path, manifests, cluster.url)
    finally:
        cluster.stopping = True
        if agent is not None:
            await agent.stop(stop_pods=True)
        await cluster.stop()
