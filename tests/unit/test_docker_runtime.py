"""The docker runtime's pure parts: Kubernetes quantities in the engine's units, engine
timestamps, image references, and the sandbox's pause program (run here for real)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from sendo.agent.runtime import docker, engine


@pytest.mark.parametrize("q,n", [("64Mi", 64 * 2**20), ("1G", 10**9), ("128974848", 128974848),
                                 ("129e6", 129 * 10**6), ("1.5Gi", 3 * 2**29), ("1000m", 1)])
def test_memory_quantities_in_bytes(q, n):
    assert docker.parse_bytes(q) == n


@pytest.mark.parametrize("q,n", [("500m", 500), ("1", 1000), ("0.25", 250), ("2.5", 2500)])
def test_cpu_quantities_in_millicores(q, n):
    assert docker.parse_millicores(q) == n


def test_bad_quantities_say_which():
    with pytest.raises(ValueError, match='invalid memory quantity "lots"'):
        docker.parse_bytes("lots")
    with pytest.raises(ValueError, match='invalid cpu quantity "fast"'):
        docker.parse_millicores("fast")


def test_engine_timestamps_with_nanoseconds():
    assert docker._parse_time("2026-12-03T08:34:43.598593359Z") == pytest.approx(1796286883.598593)
    assert docker._parse_time("0001-01-01T00:00:00Z") is None  # the engine's "never"


@pytest.mark.parametrize("ref,loop", [("127.0.0.1:5000/a:1", True), ("localhost:5000/a", True),
                                      ("registry.example/a:1", False), ("busybox", False)])
def test_registries_on_loopback(ref, loop):
    assert docker._on_loopback(ref) is loop


def test_exit_info_reports_oom_kills_and_signals():
    oom = docker._exit_info({"State": {"ExitCode": 137, "OOMKilled": False, "FinishedAt": ""}}, oom=True)
    assert (oom.exit_code, oom.reason) == (137, "OOMKilled")
    killed = docker._exit_info({"State": {"ExitCode": 143}})
    assert (killed.exit_code, killed.signal, killed.reason) == (143, 15, "Error")
    assert docker._exit_info({"State": {"ExitCode": 0}}).reason == "Completed"
    assert docker._exit_info(None).reason == "ContainerStatusUnknown"


def test_the_pause_program_pauses_until_killed(tmp_path):
    path = tmp_path / "pause"
    path.write_bytes(engine.pause_program())
    os.chmod(path, 0o755)
    p = subprocess.Popen([str(path)])
    try:
        deadline = time.monotonic() + 10
        while "(sleeping)" not in open(f"/proc/{p.pid}/status").read():  # blocked in pause(2)
            assert p.poll() is None and time.monotonic() < deadline, "the pause program did not pause"
            time.sleep(0.01)  # poll interval of a deadline-bounded wait
    finally:
        p.send_signal(signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM


def test_a_bad_pod_cidr_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at most /23"):
        docker.DockerRuntime(str(tmp_path), pod_cidr="10.9.9.0/24")
    rt = docker.DockerRuntime(str(tmp_path), pod_cidr="10.9.0.0/16")
    assert (str(rt.subnet), rt.gateway) == ("10.9.0.0/24", "10.9.0.1")


def test_a_gone_process_is_told_apart_from_a_missing_memory_controller():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(docker.CgroupGone):
        docker._memory_cgroup(p.pid)


def test_podman_is_waited_on_through_its_own_endpoint_with_an_interval(tmp_path):
    """Podman's Docker-compatible wait polls without pause (~90 % of a core for 100 idle
    containers); its own endpoint polls every PODMAN_WAIT_INTERVAL. Docker keeps its wait."""
    rt = docker.DockerRuntime(str(tmp_path), pod_cidr="10.9.0.0/16")
    rt._podman = True
    path, params = rt._wait_query("abc")
    assert path == (f"libpod/containers/abc/wait?condition=stopped&condition=exited"
                    f"&interval={docker.PODMAN_WAIT_INTERVAL}") and params is None
    rt._podman = False
    assert rt._wait_query("abc") == ("containers/abc/wait", None)
