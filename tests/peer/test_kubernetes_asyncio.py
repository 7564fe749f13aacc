"""kubernetes_asyncio's own cluster-backed tests (dynamic client, discovery) against `sendo up`."""
import pytest

from .conftest import run_suite


@pytest.mark.timeout(1800)  # a whole peer suite, on a loaded machine
def test_kubernetes_asyncio_suite(tmp_path):
    run_suite("kubernetes_asyncio", tmp_path)
