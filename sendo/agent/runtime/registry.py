"""Container runtimes by name: what `sendo agent --runtime NAME` and a RuntimeClass's
`handler` pick from.

Adding a runtime is one module that defines a class implementing `base.Runtime`
(constructed as `cls(state_dir, **options)`) and one line below. Modules are imported
only when their runtime is opened, so a runtime's client library costs nothing to
agents that do not use it.
"""
from __future__ import annotations

import importlib
import os

from .base import Runtime

RUNTIMES: dict[str, str] = {
    "process": "sendo.agent.runtime.process:ProcessRuntime",
}
DEFAULT = "process"


class UnknownRuntime(ValueError):
    """A runtime name that is not in the registry; the message lists the known ones."""


def known() -> list[str]:
    return sorted(RUNTIMES)


def check(name: str) -> str:
    if name not in RUNTIMES:
        raise UnknownRuntime(f'unknown container runtime "{name}": known runtimes are {", ".join(known())}')
    return name


def open_runtime(name: str, state_root: str, **options: str) -> Runtime:
    """A runtime instance keeping its state under `<state_root>/<name>` (the process
    runtime keeps the `containers` directory of agents from before runtimes had names)."""
    module, _, cls = RUNTIMES[check(name)].partition(":")
    state_dir = os.path.join(state_root, "containers" if name == "process" else name)
    return getattr(importlib.import_module(module), cls)(state_dir, **options)
