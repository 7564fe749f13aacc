"""What every sendo component shows about itself: health checks and Prometheus metrics.

Health follows kube-apiserver's `/healthz`, `/livez` and `/readyz`: each is a set of named
checks; the bare path answers `ok` (200) when all pass, `?verbose` lists every check as
`[+]name ok` / `[-]name failed: reason`, `?exclude=name` skips one, and `/readyz/<name>`
runs one. A failing set answers 500 with the verbose listing. The HTTP framing belongs
to each component (Starlette in the API server, aiohttp in the agent and the controllers);
this module only decides the status and the text.

Metrics use `prometheus_client`, one `CollectorRegistry` per component (never the global
one: `sendo up` runs the server and an agent in one process, and tests run several).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable, Iterable, Mapping, Union

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# A check returns None when healthy, else the reason it is not; it may be async.
Check = Callable[[], Union[str, None, Awaitable[Union[str, None]]]]
HEALTH_PATHS = ("healthz", "livez", "readyz")
CHECK_TIMEOUT = 5.0
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class Health:
    """Named checks for /livez (is the process working at all) and /readyz (can it serve);
    /healthz runs both sets."""

    def __init__(self) -> None:
        self.live: dict[str, Check] = {"ping": lambda: None}
        self.ready: dict[str, Check] = {"ping": lambda: None}

    def add(self, name: str, check: Check, *, live: bool = False, ready: bool = True) -> None:
        if live:
            self.live[name] = check
        if ready:
            self.ready[name] = check

    def checks(self, which: str) -> dict[str, Check]:
        if which == "livez":
            return self.live
        if which == "readyz":
            return self.ready
        return {**self.live, **self.ready}

    async def answer(self, path: str, query: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[int, str]:
        """(HTTP status, body) for /healthz, /livez, /readyz or /<which>/<check>."""
        parts = path.strip("/").split("/")
        which, one = parts[0], (parts[1] if len(parts) > 1 else None)
        checks = self.checks(which)
        items = list(query.items()) if isinstance(query, Mapping) else list(query)
        verbose = any(k == "verbose" for k, _ in items)
        excluded = {v for k, v in items if k == "exclude"}
        if one is not None:
            if one not in checks:
                return 404, f"no check named {one!r} in /{which}\n"
            reason = await run_check(checks[one])
            return (200, "ok") if reason is None else (500, f"internal server error: {reason}\n")
        lines, failed = [], False
        for name, check in checks.items():
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            reason = await run_check(check)
            if reason is None:
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: {reason}")
        for name in sorted(excluded - set(checks)):
            lines.append(f"warn: some health checks cannot be excluded: no matches for \"{name}\"")
        if failed:
            return 500, "\n".join(lines) + f"\n{which} check failed\n"
        if verbose:
            return 200, "\n".join(lines) + f"\n{which} check passed\n"
        return 200, "ok"


async def run_check(check: Check) -> str | None:
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, CHECK_TIMEOUT)
        return result  # type: ignore[return-value]
    except asyncio.TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    except Exception as e:  # a check that breaks is a failed check, never a 500 of its own
        log.warning("health check failed with %s", e)
        return f"{type(e).__name__}: {e}"


def is_health_path(path: str) -> bool:
    head = path.strip("/").split("/")[0]
    return head in HEALTH_PATHS and path.count("/") <= 2


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format (version 0.0.4)."""
    return generate_latest(registry)
