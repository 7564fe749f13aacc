"""`--controllers` reaches the `sendo controllers` child that the server supervises."""
import psutil

from sendo.client import Client, kind
from sendo.server import Server, ServerConfig, free_port
from tests.waiting import wait_until


async def test_server_passes_its_selection_to_the_controllers_child(tmp_path):
    cfg = ServerConfig(data_dir=str(tmp_path / "data"), port=free_port(), controller_names="*,-nodelifecycle")
    s = Server(cfg)
    await s.start()
    c = Client(cfg.url, s.admin_token, s.ca_pem)
    try:
        argv = psutil.Process(s.control.proc.pid).cmdline()
        assert argv[argv.index("--controllers") + 1] == "*,-nodelifecycle"
        # the child runs the loops that stayed on: a new namespace gets its default ServiceAccount
        await c.create(kind("namespaces"), {"metadata": {"name": "flagged"}})

        async def account():
            return await c.get_or_none(kind("serviceaccounts"), "flagged", "default")
        await wait_until(account, timeout=30, what="the serviceaccount loop of the child")
    finally:
        await c.close()
        await s.stop()
    assert s.control.proc.returncode is not None  # stopped with the server
