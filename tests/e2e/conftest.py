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


@pytest.fixture(scope="session")
def container_image(tmp_path_factory):
    """The engine installed (scripts/setup-containers.sh), a local registry on loopback and
    the test image built here and pushed to it: (image, registry). Never skipped: if the
    set-up fails, the container tests fail and say why."""
    from . import containers
    containers.setup_engine()
    reg = containers.start_registry(tmp_path_factory.mktemp("registry"))
    try:
        image = containers.build_and_push(reg, tmp_path_factory.mktemp("image"))
        yield image, reg
    finally:
        containers.remove_images_of(reg)
        reg.stop()
