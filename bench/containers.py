"""Container pods (the `docker` runtime over Podman's Docker Engine API) against the bare
engine, measured in the same run on the same machine:

* pod start: a burst of N pods of one locally built image (already in the engine's
  store), each from just before its POST until a watch sees it Running; then N
  `podman run -d` of the same image on the same network, started at once, each timed
  until the command returns (the container is running). Goal: sendo's p50 and p99
  ≤ 115 % of the engine's.
* agent CPU and RSS with M idle container pods (`sleep`), sampled over a window once
  they all run; the Podman service's own CPU and RSS beside them.
* image pull of a ~50 MB image (static busybox + a layer of random bytes, built here)
  from a registry on loopback: a pod with `imagePullPolicy: Always` (to its Pulled
  Event's own timing, and to Running) against `podman pull` of the same image, each
  after the image was removed from the engine's store.

`sendo server` and `sendo agent --runtime docker` run as separate processes, so the
agent is measured alone. Podman uses a storage root of this run's own
(CONTAINERS_STORAGE_CONF, inherited by the `podman system service` the agent starts),
so builds of other users of the machine cannot clash with it and everything is removed
at the end. Nothing is pulled from the internet; traffic stays on loopback and on the
agent's internal bridge (guarded by the unreachable route of its pod CIDR).

    python -m bench.containers [--tiny] [--only start idle pull]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import psutil

from bench.harness import SENDO, Proc, percentile, report, start_server, wait_for
from sendo.client import kind
from sendo.client.rest import ApiError
from tests.e2e import containers as ct

PODS = kind("pods")
FULL = dict(burst=20, rounds=2, idle=100, idle_seconds=30, pull_mb=50, pull_rounds=3)
TINY = dict(burst=3, rounds=1, idle=3, idle_seconds=2, pull_mb=2, pull_rounds=1)
GOALS = {"sendo_start_overhead_p50_pct": ("≤", 15), "sendo_start_overhead_p99_pct": ("≤", 15)}
IMAGE_FILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
"""


def log(msg: str) -> None:
    print(f"[bench containers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def podman(*args: str, timeout: float = 300) -> str:
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {r.returncode}: {r.stderr[-1000:]}")
    return r.stdout


def build_image(registry: str, workdir: str, name: str, random_mb: int = 0) -> str:
    os.makedirs(workdir, exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(workdir, "busybox"))
    text = IMAGE_FILE
    if random_mb:
        with open(os.path.join(workdir, "blob"), "wb") as f:
            for _ in range(random_mb):  # incompressible: the registry sends every byte
                f.write(os.urandom(2**20))
        text += "COPY blob /blob\n"
    with open(os.path.join(workdir, "Containerfile"), "w") as f:
        f.write(text)
    image = f"{registry}/bench/{name}:1"
    podman("build", "-q", "-t", image, "-f", os.path.join(workdir, "Containerfile"), workdir)
    podman("push", "-q", "--tls-verify=false", image)
    return image


def pod_body(name: str, image: str, label: str, policy: str = "IfNotPresent") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": label}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "c", "image": image, "imagePullPolicy": policy, "command": ["sleep", "3600"]}]}}


def running(pod: dict) -> bool:
    sts = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(sts) and all("running" in (s.get("state") or {}) for s in sts)


async def create_pod(client, body: dict) -> None:
    """POST a pod; once more if the server had closed the idle connection under the
    request (a 409 then means the first one went through)."""
    try:
        await client.create(PODS, body, "default")
    except aiohttp.ServerDisconnectedError:
        try:
            await client.create(PODS, body, "default")
        except ApiError as e:
            if e.status != 409:
                raise


async def start_pods(client, image: str, label: str, n: int, timeout: float = 300) -> list[float]:
    """Create n pods at once; seconds from each POST until a watch sees it Running."""
    seen: dict[str, float] = {}
    created: dict[str, float] = {}

    async def watch() -> None:
        async for _, p in client.watch(PODS, "default", labelSelector=f"bench={label}", resourceVersion="0"):
            name = p["metadata"]["name"]
            if running(p) and name not in seen:
                seen[name] = time.perf_counter()
                if len(seen) == n:
                    return
    w = asyncio.create_task(watch())

    async def create(i: int) -> None:
        name = f"{label}-{i}"
        created[name] = time.perf_counter()
        await create_pod(client, pod_body(name, image, label))
    await asyncio.gather(*[create(i) for i in range(n)])
    try:
        await asyncio.wait_for(w, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"only {len(seen)} of {n} pods ({label}) Running within {timeout}s") from None
    return [seen[k] - created[k] for k in created]


async def delete_pods(client, label: str) -> None:
    await client.request("DELETE", "/api/v1/namespaces/default/pods",
                         params={"labelSelector": f"bench={label}", "gracePeriodSeconds": "0"})

    async def gone() -> bool:
        return not (await client.list(PODS, "default", labelSelector=f"bench={label}"))["items"]
    await wait_for(gone, 300, f"the {label} pods to go", interval=0.2)


def bare_runs(image: str, network: str, n: int) -> list[float]:
    """n `podman run -d` started at once; seconds until each returned (its container running)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["podman", "run", "-d", "--rm", "--network", network, "--label", "io.sendo.bench=bare",
                               image, "sleep", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    took, ids = [], []
    pending = dict(enumerate(procs))
    deadline = time.monotonic() + 300
    while pending and time.monotonic() < deadline:
        for i, p in list(pending.items()):
            if p.poll() is not None:
                took.append(time.perf_counter() - t0)
                out, err = p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"podman run exited {p.returncode}: {err[-500:]}")
                ids.append(out.strip())
                del pending[i]
        time.sleep(0.005)  # poll interval of a deadline-bounded wait
    for p in pending.values():
        p.kill()
    if ids:
        podman("rm", "-f", "-t", "0", *ids)
    if pending:
        raise AssertionError(f"{len(pending)} podman run did not return in 300 s")
    return took


def pct(v: float, base: float) -> float:
    return round((v - base) / base * 100, 1)


async def bench_start(c, client, image: str, network: str, size: dict, figures: dict) -> None:
    sendo, bare = [], []
    for r in range(size["rounds"]):  # alternated, so both see the machine's load alike
        bare += bare_runs(image, network, size["burst"])
        sendo += await start_pods(client, image, f"start{r}", size["burst"])
        await delete_pods(client, f"start{r}")
    for who, lat in (("sendo", sendo), ("podman_run", bare)):
        figures[f"{who}_start_p50_ms"] = round(percentile(lat, 50) * 1000, 1)
        figures[f"{who}_start_p99_ms"] = round(percentile(lat, 99) * 1000, 1)
    for p in ("p50", "p99"):
        figures[f"sendo_start_overhead_{p}_pct"] = pct(figures[f"sendo_start_{p}_ms"], figures[f"podman_run_start_{p}_ms"])
    log(f"burst of {size['burst']} x{size['rounds']}: sendo p50/p99 {figures['sendo_start_p50_ms']}/"
        f"{figures['sendo_start_p99_ms']} ms, podman run -d {figures['podman_run_start_p50_ms']}/"
        f"{figures['podman_run_start_p99_ms']} ms")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


async def bench_idle(agent, client, image: str, size: dict, figures: dict) -> None:
    n = size["idle"]
    t0 = time.monotonic()
    await start_pods(client, image, "idle", n, timeout=900)
    log(f"{n} idle pods Running after {time.monotonic() - t0:.1f}s")
    await asyncio.sleep(5)  # settle: status writes of the start are over
    service = ct.podman_service_of(SimpleNamespace(data_dir=agent.data_dir))
    a0, s0 = cpu_seconds([agent.pid]), cpu_seconds([service]) if service else 0.0
    w0 = time.monotonic()
    await asyncio.sleep(size["idle_seconds"])  # the measured window
    wall = time.monotonic() - w0
    figures["agent_cpu_pct_idle_pods"] = round((cpu_seconds([agent.pid]) - a0) / wall * 100, 2)
    figures["agent_rss_mb_idle_pods"] = round(agent.rss_mb(), 1)
    if service:
        figures["podman_service_cpu_pct_idle_pods"] = round((cpu_seconds([service]) - s0) / wall * 100, 2)
        figures["podman_service_rss_mb_idle_pods"] = round(psutil.Process(service).memory_info().rss / 2**20, 1)
    figures["idle_pods"] = n
    log(f"{n} idle pods: agent CPU {figures['agent_cpu_pct_idle_pods']} % of a core, RSS "
        f"{figures['agent_rss_mb_idle_pods']} MB; podman service CPU "
        f"{figures.get('podman_service_cpu_pct_idle_pods')} %, RSS {figures.get('podman_service_rss_mb_idle_pods')} MB")
    await delete_pods(client, "idle")


async def bench_pull(client, image: str, size: dict, figures: dict) -> None:
    event_s, to_running, bare = [], [], []
    for r in range(size["pull_rounds"]):
        podman("rmi", "-f", image)
        name = f"pull-{r}"
        t0 = time.perf_counter()
        await create_pod(client, pod_body(name, image, "pull", "Always"))

        async def is_running() -> bool:
            p = await client.get_or_none(PODS, "default", name)
            return bool(p) and running(p)
        await wait_for(is_running, 300, f"{name} running", interval=0.02)
        to_running.append(time.perf_counter() - t0)
        ev = (await client.list(kind("events"), "default", fieldSelector=f"involvedObject.name={name}"))["items"]
        pulled = [e["message"] for e in ev if e.get("reason") == "Pulled"]
        if not pulled or " in " not in pulled[0]:
            raise AssertionError(f"{name}: no Pulled event with a duration: {pulled}")
        event_s.append(float(pulled[0].rsplit(" in ", 1)[1].rstrip("s")))
        await delete_pods(client, "pull")
        podman("rmi", "-f", image)
        t0 = time.perf_counter()
        podman("pull", "-q", "--tls-verify=false", image)
        bare.append(time.perf_counter() - t0)
    figures["image_mb"] = size["pull_mb"]
    figures["sendo_pull_s"] = round(percentile(event_s, 50), 2)
    figures["sendo_pull_to_running_s"] = round(percentile(to_running, 50), 2)
    figures["podman_pull_s"] = round(percentile(bare, 50), 2)
    figures["sendo_pull_overhead_pct"] = pct(figures["sendo_pull_s"], figures["podman_pull_s"])
    log(f"pull of {size['pull_mb']} MB (median of {size['pull_rounds']}): sendo {figures['sendo_pull_s']} s "
        f"(Running after {figures['sendo_pull_to_running_s']} s), podman pull {figures['podman_pull_s']} s")


def start_agent(c, agent_dir: str, log_path: str, net_args: tuple[str, ...]) -> Proc:
    """`sendo agent --runtime docker` as a process of its own (it prints to stderr: the
    caller waits for its node to be Ready)."""
    with open(log_path, "wb") as out:
        p = subprocess.Popen(SENDO + ["agent", "--server", c.url, "--token", c.node_token, "--ca-cert",
                                      os.path.join(c.data_dir, "server", "tls", "ca.crt"), "--node-name", "bench",
                                      "--data-dir", agent_dir, "--runtime", "docker", "--no-ingress", "--stop-pods",
                                      *net_args], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Proc(p, log_path)


async def node_ready(client) -> bool:
    node = await client.get_or_none(kind("nodes"), None, "bench")
    conds = ((node or {}).get("status") or {}).get("conditions") or []
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conds)


async def run(size: dict, only: list[str], root: str) -> dict:
    figures: dict = {}
    storage = ct.own_storage(Path(root) / "storage")
    os.environ.update(storage)  # for podman here and the engine the agent starts
    ct.setup_engine()
    reg = ct.start_registry(Path(root) / "registry")
    cidr, svc_cidr, net_args = ct.container_cidrs()
    data = os.path.join(root, "data")
    os.makedirs(data)
    c = start_server(data)
    agent_dir = os.path.join(root, "agent")
    os.makedirs(agent_dir)
    agent = start_agent(c, agent_dir, os.path.join(root, "agent.log"), net_args)
    agent.data_dir = Path(agent_dir)
    client = c.client()
    cluster = SimpleNamespace(data_dir=Path(agent_dir))
    try:
        await wait_for(lambda: node_ready(client), 120, "the bench node Ready", interval=0.2)
        image = build_image(reg.address, os.path.join(root, "img"), "sleeper")
        await start_pods(client, image, "warm", 1)  # the network and the sandbox image made
        await delete_pods(client, "warm")
        if not only or "start" in only:
            log("== start")
            await bench_start(c, client, image, ct.network_name(cluster), size, figures)
        if not only or "idle" in only:
            log("== idle")
            await bench_idle(agent, client, image, size, figures)
        if not only or "pull" in only:
            log("== pull")
            big = build_image(reg.address, os.path.join(root, "big"), "big", size["pull_mb"])
            await bench_pull(client, big, size, figures)
    finally:
        await client.close()
        agent.stop(120)
        c.server.stop()
        ct.cleanup_engine(cluster, cidr, svc_cidr)
        ct.empty_storage(storage)
        reg.stop()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, to check the harness works")
    ap.add_argument("--only", nargs="*", default=[], help="start, idle, pull")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sendo-bench-ctr-", ignore_cleanup_errors=True) as root:
        figures = asyncio.run(run(TINY if a.tiny else FULL, a.only, root))
    print("| figure | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in figures.items()))
    report(figures, GOALS, None if a.tiny or a.only else "containers")


if __name__ == "__main__":
    main()
