"""Container lifecycle hooks: postStart and preStop handlers, as the kubelet runs them.

* `exec`: the command runs where exec probes run theirs (a host process with the
  container's environment and working directory, or inside the container for a
  runtime with containers); a non-zero exit is a failure. No timeout of
  its own: a preStop hook is bounded by the termination grace period by the caller,
  a postStart hook holds the container in ContainerCreating until it returns.
* `httpGet`: a GET to the pod IP (or `host`) with `User-Agent: sendo-lifecycle/…`;
  like the kubelet, only a failed request fails the hook — the status code is not
  judged. Redirects are not followed.
* `sleep`: waits `seconds`.
* `tcpSocket` is accepted by the API for compatibility but, as in Kubernetes, fails
  when run.

`run_handler` returns None on success, else a message saying what went wrong.
Cancelling it (deletion, timeout) kills an exec hook's whole process group.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .env import expand
from .probes import ConfigError, Target, http_request, http_url, request_headers

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HTTP_HOOK_TIMEOUT = 30.0  # a hung HTTP hook ends here at the latest (preStop: earlier, by the grace period)


async def run_handler(handler: Obj, target: Target, *, hook: str, container: str, pod: str) -> str | None:
    """Run one LifecycleHandler. `hook` is "PostStart" or "PreStop" (for messages)."""
    if not isinstance(handler, dict):
        return f"{hook} hook of container {container!r} is not a handler"
    if isinstance(handler.get("exec"), dict):
        command = handler["exec"].get("command")
        if not isinstance(command, list) or not command:
            return f"{hook} exec hook of container {container!r} has no command"
        argv = [expand(str(a), target.env) for a in command]
        r = await target.command(argv, None)
        if r.error:
            err = r.error
        elif r.exit_code != 0:
            err = f"command exited with code {r.exit_code}"
        else:
            return None
        # the output stays in the agent's log: like the kubelet, never in an Event (secrets)
        log.info("%s hook of %s/%s failed: %s; output: %r", hook, pod, container, err, r.output[:2048])
        return f"Exec lifecycle hook ({argv}) for Container {container!r} in Pod {pod!r} failed - error: {err}"
    if isinstance(handler.get("httpGet"), dict):
        action = handler["httpGet"]
        try:
            url = http_url(action, target)
        except ConfigError as e:
            return f"Http lifecycle hook ({action.get('path', '/')}) for Container {container!r} " \
                   f"in Pod {pod!r} failed - error: {e}"
        try:
            async with asyncio.timeout(HTTP_HOOK_TIMEOUT):
                await http_request(url, request_headers(action, "lifecycle"))
        except (OSError, ValueError) as e:  # TimeoutError is an OSError
            what = "timed out" if isinstance(e, TimeoutError) else (e.strerror if isinstance(e, OSError)
                                                                     and e.strerror else str(e))
            return (f"Http lifecycle hook ({action.get('path', '/')}) for Container {container!r} "
                    f"in Pod {pod!r} failed - error: Get \"{url}\": {what}")
        return None
    if isinstance(handler.get("sleep"), dict):
        seconds = handler["sleep"].get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            return f"{hook} sleep hook of container {container!r}: invalid seconds {seconds!r}"
        await asyncio.sleep(seconds)  # the sleep action itself
        return None
    if handler.get("tcpSocket") is not None:
        return f"{hook} hook of container {container!r}: tcpSocket is not supported as a lifecycle handler"
    return f"{hook} hook of container {container!r} has no handler (exec, httpGet or sleep)"

