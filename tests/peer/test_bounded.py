"""The per-phase alarm (bounded.py) a suite's child pytest loads: a test that swallows
the first TestTimeout is still stopped, and a quick test is not touched."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SWALLOWS_ONE = '''
import time

def test_swallows_the_first_timeout():
    for _ in range(2):
        try:
            time.sleep(300)
        except Exception:
            pass  # a library retrying around its I/O
    time.sleep(300)

def test_quick():
    assert True
'''


def test_a_test_that_swallows_its_timeout_is_stopped_by_the_repeat(tmp_path):
    shutil.copy(HERE / "bounded.py", tmp_path / "peer_bounded.py")
    (tmp_path / "test_slow.py").write_text(SWALLOWS_ONE)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "-p", "no:randomly", "-p", "peer_bounded", "test_slow.py"],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path), "PEER_TEST_TIMEOUT": "1",
                            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                       timeout=120)  # unbounded, the slow test would take 900 s
    assert "1 failed, 1 passed" in r.stdout, r.stdout + r.stderr
    assert "TestTimeout: test phase ran past 1s" in r.stdout
