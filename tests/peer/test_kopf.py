"""kopf's own end-to-end test: each of its example operators run with `kopf run` against
`sendo up`, reacting to a custom object created and deleted with kubectl."""
import pytest

from .conftest import run_suite


@pytest.mark.timeout(1200)  # a whole peer suite, on a loaded machine
def test_kopf_suite(tmp_path):
    run_suite("kopf", tmp_path)
