"""Our root conftest for kr8s's own tests (their root conftest starts a kind cluster).

`k8s_cluster` is the `sendo up` the peer runner started (`$KUBECONFIG`) with the real
kubectl, shaped like the pytest-kind object the tests use: `--runtime docker`, its images
local busybox stand-ins named like the nginx, ubuntu and pause images the tests ask for
(tests/peer/standins.py), and one pause pod in kube-system as kind's system pods. Every test is bounded
(`PEER_TEST_TIMEOUT` s per phase, by SIGALRM): a test waiting for something sendo lacks fails
instead of hanging the suite.
"""
import gc
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PEER_TEST_TIMEOUT = int(os.environ.get("PEER_TEST_TIMEOUT", "20"))


class SendoCluster:
    def __init__(self) -> None:
        self.kubeconfig_path = Path(os.environ["KUBECONFIG"])
        self.kubectl_path = Path(shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl")

    def kubectl(self, *args: str) -> str:
        r = subprocess.run([str(self.kubectl_path), *args], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout


def pytest_addoption(parser):
    parser.addoption("--keep-cluster", action="store_true", default=False)


@pytest.fixture
def ensure_gc():
    """Collect garbage around a test (the dynamic-class tests count live objects)."""
    gc.collect()
    yield
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def k8s_cluster():
    if not os.environ.get("KUBECONFIG"):
        raise RuntimeError("KUBECONFIG is not set: the peer runner must point it at a running sendo")
    return SendoCluster()


class TestTimeout(Exception):
    pass


def _expire(signum, frame):
    raise TestTimeout(f"test ran past {PEER_TEST_TIMEOUT}s")


def _bounded():
    """Arm the alarm for one phase only: it must never fire while pytest itself reports.
    It repeats every few seconds after the first expiry: a library that catches every
    exception around its I/O (and retries) can swallow one TestTimeout, and a one-shot
    alarm then never fires again (a CI run hung 20 minutes in test_deployment_scale)."""
    old = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, PEER_TEST_TIMEOUT, 2)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _bounded())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _bounded())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _bounded())
