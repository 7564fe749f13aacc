"""The pod's ServiceAccount token: wait (bounded) until the agent has written it, so the
first start of a container finds it. A token that never comes is reported by the
environment hook, which needs its directory."""
from __future__ import annotations

from .base import PodView


async def wait_for_token(pod: PodView) -> None:
    await pod.host.prepare_pod(pod.pod)
