"""kr8s's own API and object tests against `sendo up`."""
import pytest

from .conftest import run_suite


@pytest.mark.timeout(1800)  # a whole peer suite, on a loaded machine
def test_kr8s_suite(tmp_path):
    run_suite("kr8s", tmp_path)
