"""Shared fixtures: a real API server (SQLite store, HTTPS, tokens) on a free port."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from sendo.client import Client
from sendo.server import Server, ServerConfig, free_port
from tests.waiting import wait_until  # noqa: F401  (tests import it from here too)

# CI runs on a loaded 2-core machine: property tests must not depend on speed. The "ci"
# profile (the default) has no deadline, no too_slow health check and a fixed seed, so
# a run is repeatable; HYPOTHESIS_PROFILE=dev explores with fresh random seeds.
_NOT_SPEED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile("ci", deadline=None, suppress_health_check=_NOT_SPEED, derandomize=True,
                          print_blob=True)
settings.register_profile("dev", deadline=None, suppress_health_check=_NOT_SPEED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def podman_storage_of_this_process():
    """Podman's image and container store of this test process (one per xdist worker):
    with one store for the machine, one worker's `podman rmi` pulled layers from under
    another worker's concurrent `podman build` ("image not known"). The engine a test
    cluster starts inherits it through the environment. A test may still choose its own.
    Removed, with everything in it, when the session ends."""
    import shutil
    import subprocess
    import tempfile

    if os.environ.get("CONTAINERS_STORAGE_CONF"):  # set by whoever runs us: theirs to manage
        yield
        return
    from tests.e2e.containers import empty_storage, end_leftover_conmons, own_storage
    root = tempfile.mkdtemp(prefix="sendo-test-podman-")  # short: podman puts sockets under it
    env = own_storage(Path(root))
    os.environ.update(env)
    try:
        yield
    finally:
        del os.environ["CONTAINERS_STORAGE_CONF"]
        if shutil.which("podman") and any(Path(root, "graph").iterdir() if Path(root, "graph").exists() else ()):
            empty_storage(env)
            end_leftover_conmons(Path(root))
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                      if line.split()[1].startswith(root + "/")]
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def server(tmp_path):
    """A running API server without controllers; tests start the loops they exercise."""
    s = Server(ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controllers=False))
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def client(server):
    c = Client(server.cfg.url, server.admin_token, server.ca_pem)
    yield c
    await c.close()


@pytest.fixture
async def fake_api():
    """A FakeClient and FakeInformers (tests/fakeapi.py) for reconcile-level tests;
    `fake_api.build(ControllerClass)` makes a controller on them, stopped afterwards."""
    from tests.fakeapi import FakeClient, FakeInformers
    client = FakeClient()
    api = FakeInformers(client)
    made = []

    def build(cls, **options):
        made.append(cls(client, api, **options))
        return made[-1]
    api.build = build
    yield api
    for c in made:
        await c.stop()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    """One etcd member on free loopback ports for this test process (stopped by PID at the end);
    each test that uses it works under a key prefix of its own (``etcd_url``)."""
    from sendo.store.etcd_local import LocalEtcd
    e = LocalEtcd(str(tmp_path_factory.mktemp("etcd"))).start()
    yield e
    e.stop()


@pytest.fixture
def etcd_url(etcd, request):
    """A --datastore URL on the shared etcd whose keys no other test sees."""
    import re
    return f"{etcd.url}/{re.sub(r'[^A-Za-z0-9_.-]', '-', request.node.name)}"


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request, tmp_path):
    """A datastore URL of each kind: the same test runs on SQLite and on etcd."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return request.getfixturevalue("etcd_url")
