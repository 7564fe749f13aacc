"""kubectl logs (plain, --tail, -f, --previous) and CrashLoopBackOff as kubectl shows them."""
from __future__ import annotations

import os

from .harness import Cluster, LineReader, poll, to_yaml

# Prints three lines, then waits (bounded) for a file `go` in its working dir (the pod's
# own directory) and prints one more: the test decides when the late line appears.
TALKER = """
import os, sys, time
for i in (1, 2, 3):
    print(f"line-{i}", flush=True)
deadline = time.time() + 120
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.05)
print("late-line", flush=True)
time.sleep(120)
"""

# Counts its own attempts in a file in the pod's directory, prints the attempt, fails.
CRASHER = """
import os, sys
n = len(os.listdir("attempts")) + 1 if os.path.isdir("attempts") else 1
os.makedirs("attempts", exist_ok=True)
open(os.path.join("attempts", str(n)), "w").close()
print(f"attempt-{n}", flush=True)
sys.exit(1)
"""


def _pod(name: str, code: str, restart: str = "Always") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": "logs"}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": "python:3.11",
                                     "command": ["python3", "-c", code]}]}}


def _phase(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout


def test_logs_tail_and_follow(cluster: Cluster):
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod("talker", TALKER)))
    poll(lambda: _phase(cluster, "talker") == "Running", 30, what="talker Running")
    poll(lambda: "line-3" in cluster.kubectl("logs", "talker").stdout, 20, what="three lines logged")

    assert cluster.kubectl("logs", "talker").stdout.splitlines() == ["line-1", "line-2", "line-3"]
    assert cluster.kubectl("logs", "talker", "--tail=1").stdout.splitlines() == ["line-3"]
    assert cluster.kubectl("logs", "talker", "-c", "main", "--tail=2").stdout.splitlines() == ["line-2", "line-3"]

    follow = cluster.kubectl_popen("logs", "-f", "talker")
    try:
        out = LineReader(follow.stdout)
        out.wait_for("line-3", 20)
        assert "late-line" not in out.lines
        (proc,) = cluster.pod_processes(cmdline_contains="late-line")
        open(os.path.join(proc.cwd(), "go"), "w").close()
        out.wait_for("late-line", 20)  # streamed while kubectl logs -f was attached
        assert follow.poll() is None, "kubectl logs -f should keep following"
        assert out.lines == ["line-1", "line-2", "line-3", "late-line"]
    finally:
        follow.terminate()
        follow.wait(10)
    assert cluster.kubectl("logs", "talker", "--tail=1").stdout.splitlines() == ["late-line"]


def test_crash_loop_and_previous_logs(cluster: Cluster):
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod("crasher", CRASHER)))

    def crash_looping():
        row = cluster.kubectl("get", "pods", "crasher", "--no-headers").stdout.split()
        # NAME READY STATUS RESTARTS AGE
        return row if len(row) >= 4 and row[2] == "CrashLoopBackOff" else None
    row = poll(crash_looping, 40, what="CrashLoopBackOff in kubectl get pods")
    assert row[1] == "0/1" and int(row[3]) >= 1, row

    pod = cluster.kubectl_json("get", "pod", "crasher")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff", cs
    assert cs["lastState"]["terminated"]["exitCode"] == 1, cs
    assert cs["ready"] is False

    def consistent_logs():
        # a restart between the two reads would shift the attempts: read until stable
        before = cluster.kubectl_json("get", "pod", "crasher")["status"]["containerStatuses"][0]["restartCount"]
        cur = cluster.kubectl("logs", "crasher").stdout.split()
        prev = cluster.kubectl("logs", "crasher", "--previous").stdout.split()
        after = cluster.kubectl_json("get", "pod", "crasher")["status"]["containerStatuses"][0]["restartCount"]
        return (before, cur, prev) if before == after else None
    restarts, cur, prev = poll(consistent_logs, 40, what="logs read between two restarts")
    assert len(cur) == 1 and len(prev) == 1, (cur, prev)
    n = int(cur[0].removeprefix("attempt-"))
    assert prev == [f"attempt-{n - 1}"], (cur, prev)
    assert n == restarts + 1, (cur, restarts)

    cluster.kubectl("delete", "pod", "crasher", "--timeout=30s")
    assert cluster.pod_processes() == []


def test_previous_logs_of_a_first_attempt(cluster: Cluster):
    cluster.kubectl("apply", "-f", "-", input=to_yaml(_pod("talker", TALKER)))
    poll(lambda: "line-1" in cluster.kubectl("logs", "talker").stdout, 30, what="talker logging")
    r = cluster.kubectl("logs", "talker", "--previous", check=False)
    assert r.returncode != 0
    assert 'previous terminated container "main" in pod "talker" not found' in r.stderr, r.stderr
