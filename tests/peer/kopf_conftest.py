"""Our root conftest for kopf's end-to-end tests: tests/e2e/test_examples.py of its sdist
(every example operator without tests of its own) and the examples' own tests
(examples/*/test_*.py), as kopf's CI runs them with `--only-e2e`.

Their own root conftest (tests/conftest.py) serves kopf's unit tests: it needs mocking
packages and skips e2e tests unless asked. The e2e tests need only two fixtures of it,
given here: `settings` (fresh operator settings) and an autouse `registry` that gives
each test a new global registry of the kind `registry_factory` names (their
tests/e2e/conftest.py asks for SmartOperatorRegistry, which logs in from the kubeconfig,
as the examples' own tests get by default).

The tests run `kubectl` through a shell from the extracted tree: the venv's kubectl
(the real binary) comes first on PATH, `$KUBECONFIG` is the runner's `sendo up`.
"""
import os
import sys
from pathlib import Path

import kopf
import pytest
from kopf._cogs.configs.configuration import OperatorSettings
from kopf._core.intents.registries import SmartOperatorRegistry

if not os.environ.get("KUBECONFIG"):
    raise RuntimeError("KUBECONFIG is not set: the peer runner must point it at a running sendo")
os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))


@pytest.fixture()
def settings():
    return OperatorSettings()


@pytest.fixture()
def registry_factory():
    return SmartOperatorRegistry  # what `kopf run` itself starts with (login handlers included)


@pytest.fixture(autouse=True)
def registry(registry_factory):
    previous = kopf.get_default_registry()
    kopf.set_default_registry(fresh := registry_factory())
    yield fresh
    kopf.set_default_registry(previous)
