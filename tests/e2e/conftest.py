"""The `cluster` fixture: a real `sendo up` per test (see harness.py)."""
from __future__ import annotations

import pytest

from .harness import Cluster


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the tail of its sendo up log."""
    rep = yield
    if rep.failed and rep.when in ("call", "teardown"):
        c = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(c, Cluster):
            rep.sections.append(("sendo up log (tail)", c.log_tail(150)))
    return rep


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c._cleanup()
