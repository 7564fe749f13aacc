"""bench/podcpu.py at a toy size: the harness works end to end and counts what a pod
costs in API writes (counts, never timings, are asserted)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_podcpu_counts_the_writes_of_each_pod():
    out = subprocess.run([sys.executable, "-m", "bench.podcpu", "--pods", "3", "--rounds", "1", "--idle", "0.5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r["pods"] == 3
    for k in ("up_cpu_ms_per_pod", "controllers_cpu_ms_per_pod", "api_writes_per_pod", "store_writes_per_pod"):
        assert isinstance(r[k], (int, float)), k
    writes = r["api_writes"]
    # one create and one binding per pod, the agent's status write, the Scheduled and Started events
    assert writes["POST pods"] == 1.0 and writes["POST pods/binding"] == 1.0, writes
    assert writes["PATCH pods/status"] >= 1.0 and writes["POST events"] >= 2.0, writes
    assert r["store_writes"]["create pods"] == 1.0, r["store_writes"]
