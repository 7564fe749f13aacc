"""One sendo per data directory (sendo/cli/datadir.py): a second `sendo up`/`sendo server`
on a data dir in use ends at once, naming the PID that holds it; the lock goes with its
process."""
import os
import subprocess
import sys

import pytest

from sendo.cli.datadir import DataDirInUse, lock_data_dir

HOLD = "import sys, time; from sendo.cli.datadir import lock_data_dir; lock_data_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_the_lock_goes_with_its_process(tmp_path):
    d = str(tmp_path / "data")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse) as e:
            lock_data_dir(d)
        assert f"{d} is in use by another sendo (pid {holder.pid})" in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    lock_data_dir(d)  # free again once its holder is gone (even by SIGKILL)
    assert open(os.path.join(d, "lock")).read().strip() == str(os.getpid())


def test_the_cli_ends_with_the_message_and_writes_nothing(tmp_path):
    d = str(tmp_path / "data")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "server", "--data-dir", d, "--port", "0"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
        assert r.returncode == 1
        assert f"is in use by another sendo (pid {holder.pid})" in r.stdout + r.stderr
        assert sorted(os.listdir(d)) == ["lock"]  # no store, no kubeconfig, no certificates
    finally:
        holder.kill()
        holder.wait()
