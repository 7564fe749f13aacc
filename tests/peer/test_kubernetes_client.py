"""The official `kubernetes` client's own cluster-backed tests (sync and aio dynamic
client, discovery) against `sendo up`."""
import pytest

from .conftest import run_suite


@pytest.mark.timeout(1800)  # a whole peer suite, on a loaded machine
def test_kubernetes_client_suite(tmp_path):
    run_suite("kubernetes", tmp_path)
