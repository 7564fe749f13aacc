"""Health checks and lifecycle hooks through a real `sendo up`, seen with the real kubectl:
readiness gates Ready, liveness restarts, startup holds the others back, postStart
comes before Ready, preStop runs before SIGTERM and within the grace period.

Pods are a tiny Python HTTP server bound to their own pod IP (loopback) on a port of
the test's own; every file the pods and hooks touch is under the test's tmp dir.
"""
from __future__ import annotations

import time
from pathlib import Path

from .harness import Cluster, answers, poll, to_yaml, unique_port

# /ready answers 500 until $READY_FILE exists (200 without one) and counts its hits in
# $READY_HITS (if set), /fail always 500, anything else 200. On SIGTERM it appends "sigterm" to $TERM_LOG (if set) and exits.
SERVER = """
import http.server, os, signal, sys
ip, port = os.environ["POD_IP"], int(os.environ["PORT"])
ready_file, term_log = os.environ.get("READY_FILE"), os.environ.get("TERM_LOG")
ready_hits = os.environ.get("READY_HITS")

def on_term(*_):
    if term_log:
        with open(term_log, "a") as f:
            f.write("sigterm\\n")
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/ready":
            code = 200 if not ready_file or os.path.exists(ready_file) else 500
            if ready_hits:
                with open(ready_hits, "a") as f:
                    f.write("hit\\n")
        elif self.path == "/fail":
            code = 500
        else:
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

http.server.ThreadingHTTPServer((ip, port), H).serve_forever()
"""


def _pod(name: str, port: int, env: dict[str, str] | None = None, grace: int = 5, **container) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": "probes"}},
        "spec": {"terminationGracePeriodSeconds": grace, "containers": [{
            "name": "web", "image": "python:3.11", "command": ["python3", "-c", SERVER],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "PORT", "value": str(port)},
                    *({"name": k, "value": v} for k, v in (env or {}).items())],
            "ports": [{"name": "http", "containerPort": port}],
            **container}]},
    }


def _get(cluster: Cluster, name: str) -> dict:
    return cluster.kubectl_json("get", "pod", name)


def _cs(pod: dict) -> dict:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def _cond(pod: dict, type_: str) -> dict:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def _serving(cluster: Cluster, name: str, port: int) -> dict | None:
    """The pod once its container runs and its server answers on the pod IP."""
    pod = _get(cluster, name)
    ip = (pod.get("status") or {}).get("podIP")
    if "running" in (_cs(pod).get("state") or {}) and ip and answers(ip, port):
        return pod
    return None


def _events(cluster: Cluster, name: str) -> list[dict]:
    items = cluster.kubectl_json("get", "events")["items"]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def _has_event(cluster: Cluster, name: str, reason: str, message: str) -> bool:
    return any(e.get("reason") == reason and e.get("message") == message for e in _events(cluster, name))


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _hold(cond, runs_file: Path, runs: int, what: str) -> None:
    """cond must be true at every sample until a probe has run `runs` more times (each run
    appends a line to runs_file). Counting runs, not seconds, proves the probe was at work:
    a probe that never ran would leave the wait to time out instead of passing."""
    start, broken = _runs(runs_file), []

    def probed() -> bool:
        if not cond():
            broken.append(True)
        return _runs(runs_file) >= start + runs
    poll(probed, 30, interval=0.3, what=f"{runs} more probe runs ({runs_file.name})")
    assert not broken, what


def _counting(command: list[str], runs_file: Path) -> list[str]:
    """An exec probe command that also appends a line to runs_file each time it runs."""
    return ["/bin/sh", "-c", f'echo run >> "{runs_file}"; exec "$@"', "probe", *command]


def test_readiness_probe_gates_ready(cluster: Cluster, tmp_path: Path):
    port, ready_file, hits = unique_port(), tmp_path / "ready", tmp_path / "ready-hits"
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "ready-web", port, env={"READY_FILE": str(ready_file), "READY_HITS": str(hits)},
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1,
                        "failureThreshold": 1})))
    poll(lambda: _serving(cluster, "ready-web", port), 30, what="the server running and answering")

    def not_ready() -> bool:
        pod = _get(cluster, "ready-web")
        return (pod["status"]["phase"] == "Running" and _cs(pod)["ready"] is False
                and _cs(pod)["started"] is True and _cond(pod, "Ready").get("status") == "False"
                and _cond(pod, "ContainersReady").get("status") == "False")
    _hold(not_ready, hits, 3, "a pod whose readiness endpoint answers 500 must stay Ready=False")
    pod = _get(cluster, "ready-web")
    assert _cond(pod, "Ready")["reason"] == "ContainersNotReady"
    assert _cs(pod)["restartCount"] == 0  # readiness never restarts anything
    poll(lambda: _has_event(cluster, "ready-web", "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 500"),
         15, what="the Unhealthy readiness event")

    ready_file.write_text("ok")
    pod = poll(lambda: (p := _get(cluster, "ready-web")) and _cs(p)["ready"] and
               _cond(p, "Ready").get("status") == "True" and p, 15, what="Ready once the file exists")
    assert _cond(pod, "ContainersReady")["status"] == "True"
    out = cluster.kubectl("get", "pod", "ready-web").stdout
    assert "1/1" in out and "Running" in out, out

    ready_file.unlink()  # and back: failureThreshold 1
    poll(lambda: _cond(_get(cluster, "ready-web"), "Ready").get("status") == "False", 15,
         what="not Ready again once the file is gone")
    assert _cs(_get(cluster, "ready-web"))["restartCount"] == 0


def test_liveness_failure_restarts_the_container(cluster: Cluster):
    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "live-web", port, livenessProbe={"httpGet": {"path": "/fail", "port": port}, "periodSeconds": 1,
                                         "failureThreshold": 2})))
    pod = poll(lambda: (p := _get(cluster, "live-web")) and _cs(p).get("restartCount", 0) >= 1 and p,
               40, what="restartCount 1 after the liveness probe failed")
    last = _cs(pod)["lastState"]["terminated"]
    if _cs(pod)["restartCount"] == 1:
        assert last["exitCode"] == 0 and last["reason"] == "Completed", last  # SIGTERM, handled: exit 0
    else:  # on a loaded machine the restarted one can fail its probes and be killed before python
        # installed its SIGTERM handler (exit 143, signal 15): a kill by SIGTERM either way
        assert (last["exitCode"], last["reason"]) in ((0, "Completed"), (143, "Error")), last
    assert _has_event(cluster, "live-web", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")
    assert _has_event(cluster, "live-web", "Killing", "Container web failed liveness probe, will be restarted")
    out = cluster.kubectl("get", "events").stdout
    assert "Unhealthy" in out and "Killing" in out and "Liveness probe failed" in out, out
    # the restarted container runs again (the first restart is immediate)
    poll(lambda: _serving(cluster, "live-web", port), 30, what="the restarted server answering")


def test_startup_probe_holds_readiness_and_liveness_back(cluster: Cluster, tmp_path: Path):
    port, started_file = unique_port(), tmp_path / "started"
    startup_runs, liveness_runs = tmp_path / "startup-runs", tmp_path / "liveness-runs"
    test = ["test", "-f", str(started_file)]
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "slow-web", port,
        startupProbe={"exec": {"command": _counting(test, startup_runs)}, "periodSeconds": 1,
                      "failureThreshold": 120},
        # would kill the container at its first run before the file exists
        livenessProbe={"exec": {"command": _counting(test, liveness_runs)}, "periodSeconds": 1,
                       "failureThreshold": 1},
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1})))
    poll(lambda: _serving(cluster, "slow-web", port), 30, what="the server running and answering")

    def held() -> bool:
        cs = _cs(_get(cluster, "slow-web"))
        return cs["started"] is False and cs["ready"] is False and cs["restartCount"] == 0
    _hold(held, startup_runs, 3, "started and ready must stay false until the startup probe succeeds")
    assert _runs(liveness_runs) == 0  # liveness waited for startup too

    started_file.write_text("ok")
    pod = poll(lambda: (p := _get(cluster, "slow-web")) and _cond(p, "Ready").get("status") == "True" and p,
               15, what="Ready once the startup probe succeeded")
    assert _cs(pod)["started"] is True and _cs(pod)["ready"] is True
    _hold(lambda: _cs(_get(cluster, "slow-web"))["restartCount"] == 0, liveness_runs, 2,
          "liveness passes once started")


def test_post_start_before_ready_and_pre_stop_before_sigterm(cluster: Cluster, tmp_path: Path):
    port, log = unique_port(), tmp_path / "lifecycle.log"
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "hooks-web", port, env={"TERM_LOG": str(log)}, grace=20,
        lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", f"sleep 2; echo poststart >> {log}"]}},
                   "preStop": {"exec": {"command": ["/bin/sh", "-c", f"echo prestop >> {log}"]}}})))

    seen_waiting, wrong = [], []

    def ready() -> bool:
        pod = _get(cluster, "hooks-web")
        cs, done = _cs(pod), log.exists() and "poststart" in log.read_text()
        if _cond(pod, "Ready").get("status") == "True":
            if not done:
                wrong.append(f"Ready before its postStart hook completed: {pod['status']}")
            return True
        if not done:
            if "running" in (cs.get("state") or {}):
                wrong.append(f"reported Running during postStart: {cs}")
            if (cs.get("state") or {}).get("waiting", {}).get("reason") == "ContainerCreating":
                seen_waiting.append(pod["status"]["phase"])
        return False
    poll(ready, 30, what="Ready after postStart")
    assert not wrong, wrong
    assert seen_waiting and set(seen_waiting) == {"Pending"}, seen_waiting
    assert log.read_text().splitlines() == ["poststart"]

    cluster.kubectl("delete", "pod", "hooks-web", "--wait=true", "--timeout=60s")
    assert log.read_text().splitlines() == ["poststart", "prestop", "sigterm"]


def test_pre_stop_counts_against_the_grace_period(cluster: Cluster):
    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "slow-stop", port, grace=3, lifecycle={"preStop": {"sleep": {"seconds": 60}}})))
    poll(lambda: _serving(cluster, "slow-stop", port), 30, what="the server running")
    began = time.monotonic()
    cluster.kubectl("delete", "pod", "slow-stop", "--wait=true", "--timeout=60s")
    took = time.monotonic() - began
    # 3 s of grace for the hook, then at least 2 s more after SIGTERM (the server exits at once);
    # far less than the hook's 60 s, which it would take if the hook did not count
    assert 2.5 <= took < 45, took


def test_failed_post_start_hook_kills_the_container(cluster: Cluster):
    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod(
        "bad-hook", port, lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", "exit 3"]}}})))
    pod = poll(lambda: (p := _get(cluster, "bad-hook")) and _cs(p).get("restartCount", 0) >= 1 and p,
               40, what="the container restarted after its postStart hook failed")
    assert _cond(pod, "Ready").get("status") == "False"
    events = _events(cluster, "bad-hook")
    assert any(e["reason"] == "FailedPostStartHook" and e["type"] == "Warning" for e in events), events
