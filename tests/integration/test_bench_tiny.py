"""The benchmark harness runs end to end at a toy size (figures are not asserted: timing
is measured by `make bench`, never by tests)."""
import json
import os
import subprocess
import sys

from bench.run import REQUIRED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_benchmark_produces_its_figure():
    out = subprocess.run([sys.executable, "-m", "bench.run", "--tiny"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(REQUIRED) <= set(result["figures"])
    for k in REQUIRED:
        assert isinstance(result["figures"][k], (int, float)), k
    assert result["machine"]["cpus"] >= 1
