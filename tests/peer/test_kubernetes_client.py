"""The official `kubernetes` client's own cluster-backed tests (sync and aio dynamic
client, discovery) against `sendo up`."""
from .conftest import run_suite


def test_kubernetes_client_suite(tmp_path):
    run_suite("kubernetes", tmp_path)
