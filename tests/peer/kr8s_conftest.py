"""Our root conftest for kr8s's own tests (their root conftest starts a kind cluster).

`k8s_cluster` is the `sendo up` the peer runner started (`$KUBECONFIG`) with the real
kubectl, shaped like the pytest-kind object the tests use: `--runtime docker`, its images
local busybox stand-ins named like the nginx, ubuntu and pause images the tests ask for
(tests/peer/standins.py), and one pause pod in kube-system as kind's system pods. Every test phase is
bounded by the runner's bounded.py plugin: a test waiting for something sendo lacks fails
instead of hanging the suite.
"""
import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest



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


def _binds(port: int, address: str) -> bool:
    import socket
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((address, port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session", autouse=True)
def port_forward_ports_checked_by_binding():
    """kr8s picks a random local port for a port-forward and checks it is free by connecting
    to it. A port held by a socket that does not listen (an outgoing connection's; thousands
    on a loaded test machine) passes that check, and kr8s's bind then fails (EADDRINUSE, seen
    in a fresh-clone run). The port is checked here by binding it, which is what kr8s does
    next; the client's port-forward itself is unchanged."""
    import random

    from kr8s._portforward import PortForward

    def find(self) -> int:
        while True:
            port = random.randint(10000, 60000)
            if all(_binds(port, a) for a in self.address):
                return port
    original = PortForward._find_available_port
    PortForward._find_available_port = find
    yield
    PortForward._find_available_port = original
