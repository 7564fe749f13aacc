"""kubernetes_asyncio's own cluster-backed tests (dynamic client, discovery) against `sendo up`."""
from .conftest import run_suite


def test_kubernetes_asyncio_suite(tmp_path):
    run_suite("kubernetes_asyncio", tmp_path)
