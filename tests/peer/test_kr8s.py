"""kr8s's own API and object tests against `sendo up`."""
from .conftest import run_suite


def test_kr8s_suite(tmp_path):
    run_suite("kr8s", tmp_path)
