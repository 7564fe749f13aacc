"""bench/jobs.py runs end to end at a toy size (its Job figure only: the CronJob figure
waits for a minute boundary, which `make bench` does). Figures are not asserted."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_job_benchmark_produces_its_figures():
    out = subprocess.run([sys.executable, "-m", "bench.jobs", "--tiny", "--only", "job"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])["figures"]
    for k in ("job_completions_per_s", "job_cpu_seconds_per_1000_completions"):
        assert isinstance(figures[k], (int, float)) and figures[k] > 0, k
