"""Probes and lifecycle hooks that run processes: exec probes and hooks (exit codes, env,
timeouts, clean-up of leftovers) and real PodWorkers on the process runtime.

Every server here listens on 127.0.0.1 on a free port; nothing leaves the machine.
"""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from sendo.agent import hooks, probes
from sendo.agent.probes import FAILURE, SUCCESS, UNKNOWN, Outcome
from tests.conftest import wait_until
from tests.probe_helpers import ENV, http_server, target


# ----------------------------------------------------------------------------- exec

async def test_exec_exit_codes_and_output():
    t = target()
    assert (await probes.exec_command({"command": ["true"]}, t, 1)).result == SUCCESS
    o = await probes.exec_command({"command": ["/bin/sh", "-c", "exit 1"]}, t, 1)
    assert o.result == FAILURE and "exited with code 1" in o.message
    o = await probes.exec_command({"command": ["/bin/sh", "-c", "echo not healthy >&2; exit 3"]}, t, 1)
    assert o == Outcome(FAILURE, "not healthy")
    o = await probes.exec_command({"command": ["no-such-command-here"]}, t, 1)
    assert o.result == FAILURE and "executable file not found" in o.message


async def test_exec_uses_the_container_env_and_working_dir(tmp_path):
    (tmp_path / "marker").write_text("x")
    t = target(cwd=str(tmp_path), env={**ENV, "FOO": "bar"})
    assert (await probes.exec_command({"command": ["/bin/sh", "-c", 'test "$FOO" = bar']}, t, 1)).ok
    assert (await probes.exec_command({"command": ["test", "-f", "marker"]}, t, 1)).ok
    assert (await probes.exec_command({"command": ["test", "$(FOO)", "=", "bar"]}, t, 1)).ok  # $(VAR)
    assert not (await probes.exec_command({"command": ["test", "-f", "other"]}, t, 1)).ok
    # exactly the container's env: nothing of the agent's leaks in
    os.environ["SENDO_PROBE_TEST_LEAK"] = "1"
    try:
        o = await probes.exec_command({"command": ["/bin/sh", "-c", 'test -z "$SENDO_PROBE_TEST_LEAK"']}, t, 1)
        assert o.ok
    finally:
        del os.environ["SENDO_PROBE_TEST_LEAK"]


async def test_exec_timeout_kills_the_command(tmp_path):
    pidfile = tmp_path / "pid"
    o = await asyncio.wait_for(probes.exec_command(  # the command alone takes 30 s and then succeeds
        {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}, target(), 0.3), 20)
    assert o.result == FAILURE and "timed out" in o.message
    pid = int(pidfile.read_text())
    await wait_until(lambda: not _alive(pid), 5, what="the timed-out command killed")


async def test_exec_leftovers_are_killed_when_the_command_exits(tmp_path):
    pidfile = tmp_path / "bg"
    o = await probes.exec_command(
        {"command": ["/bin/sh", "-c", f"sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}"]},
        target(), 2)
    assert o.ok
    pid = int(pidfile.read_text())
    await wait_until(lambda: not _alive(pid), 5, what="the background child killed")


async def test_exec_probes_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "EXEC_CONCURRENCY", 2)
    probes._limiters.clear()
    running = tmp_path / "running"
    running.mkdir()
    peak = tmp_path / "peak"
    # ($$ would be Kubernetes' escape for a literal $: the command is expanded like a container's)
    script = f'f=$(mktemp -p {running}); ls {running} | wc -l >> {peak}; sleep 0.2; rm "$f"'

    results = await asyncio.gather(*[probes.exec_command({"command": ["/bin/sh", "-c", script]}, target(), 5)
                                     for _ in range(6)])
    assert all(r.ok for r in results)
    counts = [int(x) for x in peak.read_text().split()]
    assert len(counts) == 6 and max(counts) <= 2


async def test_exec_probe_cancelled_kills_the_command(tmp_path):
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(probes.exec_command(
        {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}, target(), 30))
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, what="command started")
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: not _alive(pid), 5, what="cancelled command killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- dispatch

async def test_run_probe_dispatch_and_grpc_unsupported():
    with http_server() as (port, seen):
        assert (await probes.run_probe({"httpGet": {"port": port, "path": "/ok"}}, target())).ok
    assert (await probes.run_probe({"exec": {"command": ["true"]}}, target())).ok
    o = await probes.run_probe({"grpc": {"port": 9000}}, target())
    assert o.result == UNKNOWN and "grpc" in o.message
    assert (await probes.run_probe({}, target())).result == UNKNOWN


# ----------------------------------------------------------------------------- hooks

async def test_exec_hook(tmp_path):
    t = target(cwd=str(tmp_path), env={**ENV, "WHO": "hook", "TOKEN": "s3cr3t-value"})
    ok = await hooks.run_handler({"exec": {"command": ["/bin/sh", "-c", "echo $WHO > out"]}}, t,
                                 hook="PostStart", container="web", pod="default/p")
    assert ok is None and (tmp_path / "out").read_text() == "hook\n"
    err = await hooks.run_handler({"exec": {"command": ["/bin/sh", "-c", "echo $TOKEN; exit 2"]}}, t,
                                  hook="PreStop", container="web", pod="default/p")
    assert err and "exited with code 2" in err and "web" in err
    assert "s3cr3t-value" not in err  # command output stays out of messages that become Events


async def test_hook_cancelled_kills_its_process(tmp_path):
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(hooks.run_handler(
        {"exec": {"command": ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]}}, target(),
        hook="PreStop", container="web", pod="default/p"))
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, what="hook started")
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: not _alive(pid), 5, what="hook process killed")


# ----------------------------------------------------------------------------- the pod worker

# A tiny server on $POD_IP:$PORT: /ready answers 500 until the file `ready` exists in its
# working dir. On SIGTERM it appends "sigterm" to the file `lifecycle` and exits.
POD_SERVER = """
import http.server, os, signal
def term(*_):
    with open("lifecycle", "a") as f:
        f.write("sigterm\\n")
    os._exit(0)
signal.signal(signal.SIGTERM, term)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        self.send_response(200 if self.path != "/ready" or os.path.exists("ready") else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()
http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"""


class _StubClient:
    def __init__(self, pod: dict):
        self.pod = pod
        self.statuses: list[dict] = []
        self.deleted = False

    async def patch(self, _kind, ns, name, body, sub=None):
        self.statuses.append(body["status"])
        self.pod = {**self.pod, "status": body["status"]}
        return self.pod

    async def get_or_none(self, *a):
        return None

    async def delete(self, *a, **kw):
        self.deleted = True


class _StubAgent:
    """A PodHost for a real PodWorker: a real process runtime, the rest recorded."""

    def __init__(self, tmp, pod: dict):
        import random

        from sendo.agent.runtime import ProcessRuntime
        self.node_address = "127.0.0.1"
        self.backoff = (0.5, 1.0)
        self.pods_dir, self.logs_dir = str(tmp / "pods"), str(tmp / "logs")
        self.runtime = ProcessRuntime(str(tmp / "containers"))
        self.cidr = f"127.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        self.client = _StubClient(pod)
        self.events: list[tuple[str, str, str]] = []
        self.failed = False

    def runtime_for(self, pod):
        return self.runtime

    def base_env(self, pod, ip):
        return {"PATH": os.environ.get("PATH", os.defpath)}

    async def prepare_pod(self, pod):
        """The real agent waits for the pod's ServiceAccount token here; the stub has none."""

    def event(self, pod, type_, reason, message):
        self.events.append((type_, reason, message))

    def worker_failed(self, w):
        self.failed = True


def _worker_pod(port: int, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "w", "namespace": "default", "uid": "uid-probes-1"},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 3, "containers": [{
                "name": "web", "image": "python:3.11", "command": ["python3", "-c", POD_SERVER],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "PORT", "value": str(port)}],
                "ports": [{"name": "http", "containerPort": port}], **container}]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


async def test_pod_worker_readiness_liveness_and_hooks(tmp_path):
    from sendo.agent.podworker import PodWorker
    port = _free_port()
    pod = _worker_pod(port,
                      readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0.2,
                                      "failureThreshold": 1},
                      livenessProbe={"exec": {"command": ["/bin/sh", "-c", "test ! -f sick"]},
                                     "periodSeconds": 0.2, "failureThreshold": 2},
                      lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", "echo poststart >> lifecycle"]}},
                                 "preStop": {"exec": {"command": ["/bin/sh", "-c", "echo prestop >> lifecycle"]}}})
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    try:
        def cs() -> dict:
            return (agent.client.statuses[-1]["containerStatuses"] if agent.client.statuses else [{}])[0]

        def cond(t: str) -> str | None:
            st = agent.client.statuses[-1] if agent.client.statuses else {}
            return next((c["status"] for c in st.get("conditions", []) if c["type"] == t), None)
        await wait_until(lambda: "running" in cs().get("state", {}), 10, what="running")
        assert cs()["ready"] is False and cs()["started"] is True and cond("Ready") == "False"
        await wait_until(lambda: ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with "
                                  "statuscode: 500") in agent.events, 10, what="readiness failure event")
        # nothing reported Running before postStart completed
        first_running = next(i for i, s in enumerate(agent.client.statuses)
                             if "running" in s["containerStatuses"][0]["state"])
        assert all(s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
                   for s in agent.client.statuses[:first_running])
        pod_dir = tmp_path / "pods" / "uid-probes-1"
        assert (pod_dir / "lifecycle").read_text() == "poststart\n"

        (pod_dir / "ready").write_text("")
        await wait_until(lambda: cs().get("ready") is True and cond("Ready") == "True", 10, what="ready")

        (pod_dir / "sick").write_text("")
        await wait_until(lambda: ("Normal", "Killing", "Container web failed liveness probe, will be restarted")
                         in agent.events, 10, what="liveness kill")
        assert any(m.startswith("Liveness probe failed: ") for _, r, m in agent.events if r == "Unhealthy")
        (pod_dir / "sick").unlink()
        await wait_until(lambda: cs().get("restartCount") == 1 and cs().get("ready") is True, 15,
                         what="restarted and ready again")
        assert (pod_dir / "lifecycle").read_text().splitlines() == ["poststart", "prestop", "sigterm", "poststart"]
        last = cs()["lastState"]["terminated"]
        assert last["exitCode"] == 0, last
        # the ready flag went down while the old run was killed, and up again after the restart
        readies = [s["containerStatuses"][0]["ready"] for s in agent.client.statuses]
        assert readies.count(True) >= 2 and False in readies[readies.index(True):]

        w.removed()  # the pod is gone: preStop, SIGTERM, clean-up
        await asyncio.wait_for(w.task, 15)
        assert not agent.failed
    finally:
        if not w.task.done():
            w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()


async def test_pod_worker_startup_probe_and_failed_post_start(tmp_path):
    from sendo.agent.podworker import PodWorker
    port = _free_port()
    pod = _worker_pod(port,
                      startupProbe={"exec": {"command": ["/bin/sh", "-c", "echo >> startup-runs; test -f started"]},
                                    "periodSeconds": 0.2, "failureThreshold": 100},
                      readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 0.2})
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    runs = tmp_path / "pods" / "uid-probes-1" / "startup-runs"
    try:
        def cs() -> dict:
            return (agent.client.statuses[-1]["containerStatuses"] if agent.client.statuses else [{}])[0]
        await wait_until(lambda: "running" in cs().get("state", {}), 10, what="running")

        ip = next(st["podIP"] for st in agent.client.statuses if st.get("podIP"))

        async def listens():
            try:
                _, w_ = await asyncio.open_connection(ip, port)
            except OSError:
                return False
            w_.close()
            return True
        await wait_until(listens, 10, what="the server listening: a readiness probe would pass")
        before = len(runs.read_text()) if runs.exists() else 0
        # two more startup probes fail while it listens: readiness must still wait for startup
        await wait_until(lambda: runs.exists() and len(runs.read_text()) >= before + 2, 10,
                         what="two more startup probe runs")
        assert cs()["started"] is False and cs()["ready"] is False
        (tmp_path / "pods" / "uid-probes-1" / "started").write_text("")
        await wait_until(lambda: cs().get("started") and cs().get("ready"), 10, what="started and ready")
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()

    port = _free_port()
    pod = _worker_pod(port, lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", "exit 7"]}}})
    agent = _StubAgent(tmp_path / "second", pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    w = PodWorker(agent, pod, [])
    try:
        await wait_until(lambda: any(r == "FailedPostStartHook" for _, r, _ in agent.events), 10,
                         what="FailedPostStartHook")
        await wait_until(lambda: agent.client.statuses and
                         agent.client.statuses[-1]["containerStatuses"][0]["restartCount"] >= 1, 10,
                         what="restarted after the failed hook")
        assert not any("running" in s["containerStatuses"][0]["state"] for s in agent.client.statuses)
        assert all(s["phase"] == "Pending" for s in agent.client.statuses[:1])
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()


async def test_pod_worker_survives_a_status_the_api_did_not_take(tmp_path):
    """An overloaded API (a 500, a timeout) on a status patch must not end the worker: the
    container keeps running and the status is posted again."""
    from sendo.agent.podworker import PodWorker
    from sendo.client import ApiError
    pod = _worker_pod(_free_port())
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    real_patch, failures = agent.client.patch, []

    async def flaky_patch(*a, **kw):
        if len(failures) < 2:
            failures.append(1)
            raise ApiError(500, {"message": "etcdserver: request timed out"} if failures == [1] else "busy")
        return await real_patch(*a, **kw)
    agent.client.patch = flaky_patch
    w = PodWorker(agent, pod, [])
    try:
        await wait_until(lambda: agent.client.statuses and "running" in
                         agent.client.statuses[-1]["containerStatuses"][0]["state"], 15, what="status posted")
        assert len(failures) == 2 and not agent.failed and not w.task.done()
        assert agent.client.statuses[-1]["containerStatuses"][0]["restartCount"] == 0
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()


async def test_pod_worker_starts_a_container_whose_retry_time_passed_during_a_slow_status_post(tmp_path):
    """The burst hang (issue 15): the first start fails for want of the pod's token, the
    status post that follows takes longer than the configuration retry, and the token
    arrives meanwhile. The worker must still start the container, not sleep for ever
    because the retry time it had set was already in the past when it went to sleep."""
    from sendo.agent import podworker
    from sendo.agent.env import ConfigError
    from sendo.agent.podworker import PodWorker
    pod = _worker_pod(_free_port())
    agent = _StubAgent(tmp_path, pod)
    await agent.runtime.update_runtime_config(agent.cidr)
    real_env, real_patch, slow = agent.base_env, agent.client.patch, []

    def env_without_token_once(p, ip):
        if not slow:
            raise ConfigError('cannot get a token of serviceaccount default/default: serviceaccounts '
                              '"default" not found')
        return real_env(p, ip)

    async def slow_first_patch(*a, **kw):
        if not slow:
            slow.append(1)
            await asyncio.sleep(podworker.CONFIG_RETRY + 0.5)  # an API slower than the retry
        return await real_patch(*a, **kw)
    agent.base_env, agent.client.patch = env_without_token_once, slow_first_patch
    w = PodWorker(agent, pod, [])
    try:
        await wait_until(lambda: agent.client.statuses and "running" in
                         agent.client.statuses[-1]["containerStatuses"][0]["state"], 20, what="container running")
        first = agent.client.statuses[0]["containerStatuses"][0]["state"]
        assert first["waiting"]["reason"] == "CreateContainerConfigError", first
    finally:
        w.task.cancel()
        await w.stop_containers(1.0)
        await agent.runtime.close()
