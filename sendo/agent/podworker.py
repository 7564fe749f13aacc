"""One worker per pod on this node: start its containers, restart them by policy,
probe them, report status, and stop everything when the pod is deleted.

The worker is level-triggered too: every pass compares the pod spec with what runs
and acts; container exits, probe results and pod updates only wake it up.

Health (Kubernetes semantics, see probes.py and hooks.py):

* after a container starts, its postStart hook runs (if any); until it returns the
  container is reported Waiting/ContainerCreating, and if it fails the container is
  killed (Event FailedPostStartHook) and restarted by policy;
* then its probes run, one task each, for as long as this run of the container
  lives: the startup probe first (liveness and readiness wait for it), readiness
  drives `ready` (a container without one is ready once started), and a liveness or
  startup probe that fails past its threshold kills the container (Events
  Unhealthy, Killing) — the normal exit path then restarts it with back-off;
* stopping a container (pod deletion, probe kill) runs its preStop hook first, within
  the grace period, then SIGTERM with what is left of it (at least 2 s once a hook ran).

Before anything starts, the prestart hooks (`prestart/`) run: the pod's directory, its
sandbox in the runtime its RuntimeClass names (which gives the pod IP), its token; then
before every start of a container, its ContainerSpec is filled in by the container
hooks. The worker knows its node only through `host.PodHost`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..client import ApiError, kind
from ..kinds.meta import rfc3339
from ..tasks import wait_event
from . import hooks, probes
from .host import PodHost
from .logs import container_log_path
from .prestart import CONTAINER_HOOKS, POD_HOOKS, HookError
from .volumes import Volume, unmount_all
from .runtime import (
    ContainerHandle,
    ContainerSpec,
    ExitInfo,
    Runtime,
    Sandbox,
    StartError,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long starts its back-off afresh
MIN_GRACE_AFTER_PRESTOP = 2.0  # the kubelet's minimal shutdown window after a preStop hook
PREPARE_RETRY_MIN, PREPARE_RETRY_MAX = 1.0, 30.0  # back-off of failed pod prestart steps
CONFIG_RETRY = 2.0  # a container whose configuration failed is tried again after this
STATUS_RETRY = 1.0  # a status the API did not take is posted again after this
PULL_ERRORS = ("ErrImagePull", "ErrImageNeverPull")
# prober_probe_total's result label, as the kubelet spells it, per probe outcome
PROBE_RESULTS = {probes.SUCCESS: "successful", probes.WARNING: "successful", probes.FAILURE: "failed",
                 probes.UNKNOWN: "unknown"}
PULL_BACKOFF_SHOWN_AFTER = 1.0  # ErrImagePull is reported, then ImagePullBackOff until the next pull


@dataclass
class Container:
    name: str
    spec: Obj
    init: bool = False
    handle: ContainerHandle | None = None
    waiter: asyncio.Task | None = None
    exit: ExitInfo | None = None  # the current terminated state, when not running
    exit_started_at: float = 0.0
    last: tuple[ExitInfo, float] | None = None  # lastState: the previous termination
    restarts: int = 0
    attempts: int = 0  # starts so far (log file numbering)
    next_start: float = 0.0
    backoff: float = 0.0  # the delay before the next restart after this one
    delay: float = 0.0  # the delay of the restart being waited for now
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    ever_started: bool = False
    state_unknown: bool = False  # started before an agent restart, and not running now
    # health of the current run
    post_start_pending: bool = False  # its postStart hook has not completed: not Running yet
    started: bool = False  # its startup probe succeeded (or it has none) after postStart
    ready: bool = False  # its readiness probe's state (without one, ready = started)
    gate: asyncio.Event | None = None  # set once started: liveness and readiness may run
    tasks: list[asyncio.Task] = field(default_factory=list)  # probes and postStart of this run
    killing: asyncio.Task | None = None  # this run is being stopped (failed probe or hook)
    pre_stopped: ContainerHandle | None = None  # the run whose preStop hook has run
    image_id: str = ""  # of the last run that started (containerStatuses[].imageID)
    pull_failures: int = 0  # image pulls failed in a row: their back-off
    pull_backoff_at: float = 0.0  # when ErrImagePull turns into ImagePullBackOff

    @property
    def running(self) -> bool:
        return self.handle is not None

    @property
    def up(self) -> bool:
        """Running as the API sees it: started, and its postStart hook done."""
        return self.handle is not None and not self.post_start_pending

    @property
    def is_ready(self) -> bool:
        if not self.up or self.init or not self.started:
            return False
        return self.ready if isinstance(self.spec.get("readinessProbe"), dict) else True


class PodWorker:
    def __init__(self, host: PodHost, pod: Obj, adopted: list[ContainerHandle], runtime: Runtime | None = None):
        """`adopted`: containers of this pod found running by `runtime` after an agent restart."""
        self.host = host
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.wake = asyncio.Event()
        self.gone = False  # the pod object no longer exists in the API
        self.runtime = runtime  # chosen by the sandbox hook unless the pod already runs somewhere
        self.sandbox: Sandbox | None = None
        self.prepare_at = 0.0  # when the pod prestart steps may be tried (again)
        self.prepare_failures = 0
        self.status_retry_at = 0.0  # a status post failed: post again at this time
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self.last_status: Obj | None = None
        # when this pass's decisions want another pass (a container in back-off or whose
        # configuration failed), even if that time passes before the worker sleeps
        self.due: list[float] = []
        self.terminating = False  # probes and hooks no longer act once stopping began
        self.volumes: dict[str, Volume] = {}  # set by the volumes prestart hook
        self.evicted: str | None = None  # the eviction message: the pod failed, its containers stop
        # the node's AgentMetrics (agent/metrics.py); a test's stand-in host may have none
        self.metrics = getattr(host, "metrics", None)
        self.seen_at = time.monotonic()  # for kubelet_pod_start_duration_seconds
        self.start_observed = bool(adopted)  # an adopted pod started under an earlier agent
        self.containers = self._containers(pod, adopted)
        self.task = asyncio.create_task(self._run(), name=f"pod-{self.ns}/{self.name}")

    def describe(self) -> str:
        """One line per container of what this worker holds: for the SIGUSR1 dump."""
        now = time.time()
        lines = [f"pod {self.ns}/{self.name} uid={self.uid} gone={self.gone} wake={self.wake.is_set()} "
                 f"sandbox={self.sandbox.id if self.sandbox else None} prepare_in={self.prepare_at - now:.1f}s "
                 f"status_retry_at={self.status_retry_at} posted={bool(self.last_status)} "
                 f"phase={(self.last_status or {}).get('phase')}"]
        for c in self.containers.values():
            lines.append(f"  container {c.name}: running={c.running} waiting={c.waiting} exit={c.exit} "
                         f"next_start_in={c.next_start - now:.1f}s restarts={c.restarts} attempts={c.attempts}")
        return "\n".join(lines)

    # ----------------------------------------------------------------- inputs
    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def removed(self) -> None:
        self.gone = True
        self.wake.set()

    def _containers(self, pod: Obj, adopted: list[ContainerHandle]) -> dict[str, Container]:
        by_name = {h.spec.container_name: h for h in adopted}
        old = {c.get("name"): c for key in ("initContainerStatuses", "containerStatuses")
               for c in (pod.get("status") or {}).get(key) or []}
        out: dict[str, Container] = {}
        spec = pod.get("spec") or {}
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                st = old.get(c["name"]) or {}
                ct = Container(c["name"], c, init=init, restarts=st.get("restartCount", 0))
                h = by_name.get(c["name"])
                ct.attempts = (h.spec.attempt + 1) if h else ct.restarts + (1 if st.get("state") else 0)
                state = st.get("state") or {}
                if h is not None:
                    ct.handle, ct.waiting, ct.ever_started, ct.image_id = h, None, True, h.image_id
                    ct.waiter = asyncio.create_task(self._wait(ct, h))  # runtime: the one that adopted h
                    # what the probes had found before the agent restarted holds until they
                    # run again (at once): an adopted pod does not flap to not-ready
                    ct.started = "running" in state and bool(st.get("started"))
                    ct.ready = "running" in state and bool(st.get("ready"))
                elif "terminated" in state and init:
                    t = state["terminated"]
                    ct.exit = ExitInfo(t.get("exitCode", 0), t.get("signal"), time.time(), t.get("reason", ""))
                    ct.ever_started = True
                elif "running" in state or "terminated" in state:
                    ct.state_unknown = True  # it ran before this agent started; it is not running now
                    ct.ever_started = True
                out[c["name"]] = ct
        return out

    # ----------------------------------------------------------------- main loop
    async def _run(self) -> None:
        try:
            self.start_time = self.start_time or rfc3339(time.time())
            while True:
                if self.gone or self.pod["metadata"].get("deletionTimestamp"):
                    await self._terminate()
                    return
                self.due = []
                if self.evicted is not None:
                    await self._evict()
                elif await self._prepared():
                    await self._sync()
                await self._post_status()
                await self._sleep()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s failed", self.ns, self.name)
            for c in self.containers.values():  # the replacement worker waits for them instead
                if c.waiter is not None:
                    c.waiter.cancel()
            self.host.worker_failed(self)
        finally:
            for c in self.containers.values():
                self._cancel_tasks(c, killing=True)

    def evict(self, message: str) -> None:
        """The node evicts the pod (an emptyDir over its sizeLimit): its containers stop and
        the pod is Failed with reason Evicted, as the kubelet's eviction manager leaves it."""
        if self.evicted is None:
            self.evicted = message
            self.host.event(self.pod, "Warning", "Evicted", message)
            self.wake.set()

    async def _evict(self) -> None:
        if any(c.running for c in self.containers.values()):
            await self.stop_containers(self._grace())

    async def _prepared(self) -> bool:
        """Run the pod prestart steps until they have all passed once; False while one fails."""
        if self.sandbox is not None:
            return True
        if time.time() < self.prepare_at:
            return False
        try:
            for hook in POD_HOOKS:
                await hook(self)
        except HookError as e:
            self.prepare_failures += 1
            self.prepare_at = time.time() + min(PREPARE_RETRY_MAX, PREPARE_RETRY_MIN * 2 ** (self.prepare_failures - 1))
            for c in self.containers.values():
                if not c.running:
                    c.waiting = (e.reason, e.message)
            if e.event:
                self.host.event(self.pod, "Warning", e.event, e.message)
            return False
        for c in self.containers.values():
            if c.waiting and c.waiting[0] == "ContainerCreating":
                c.waiting = ("ContainerCreating", "")
            if c.handle is not None and not c.init:  # adopted: probe it again
                self._start_probes(c, c.handle)
        return True

    async def _sleep(self) -> None:
        now = time.time()
        # a time that passed while the status was posted (a slow API) means "now", never "never"
        pending = [max(t - now, 0.0) for t in self.due]
        if self.sandbox is None and self.prepare_at:
            pending.append(max(self.prepare_at - now, 0.0))
        pending += [max(c.pull_backoff_at - now, 0.0) for c in self.containers.values()
                    if c.pull_backoff_at and c.waiting and c.waiting[0] == "ErrImagePull"]
        if self.status_retry_at:
            pending.append(max(self.status_retry_at - now, 0.0))
        timeout = min(pending) if pending else None
        await wait_event(self.wake, timeout)
        self.wake.clear()

    @property
    def pod_dir(self) -> str:
        return os.path.join(self.host.pods_dir, self.uid)

    @property
    def pod_ip(self) -> str | None:
        return self.sandbox.ip if self.sandbox else None

    @property
    def restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy", "Always")

    # ----------------------------------------------------------------- reconcile
    async def _sync(self) -> None:
        now = time.time()
        for c in self.containers.values():
            if c.waiting and c.waiting[0] == "ErrImagePull" and 0 < c.pull_backoff_at <= now < c.next_start:
                image = c.spec.get("image", "")
                c.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}": {c.waiting[1]}')
                c.pull_backoff_at = 0.0
                self.host.event(self.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
        inits = [c for c in self.containers.values() if c.init]
        for c in inits:
            if c.exit is not None and c.exit.exit_code == 0 and not c.running:
                continue
            if c.running:
                return
            if c.exit is not None and self.restart_policy == "Never":
                return  # failed init container: the pod has failed
            await self._maybe_start(c)
            return
        for c in self.containers.values():
            if c.init or c.running:
                continue
            if c.exit is not None or c.state_unknown:
                code = 137 if c.state_unknown else c.exit.exit_code
                if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
                    continue
            await self._maybe_start(c)

    async def _maybe_start(self, c: Container) -> None:
        now = time.time()
        if c.next_start > now:
            self.due.append(c.next_start)
            return  # in back-off; the worker wakes when it ends
        if c.state_unknown:
            c.last = (ExitInfo(137, None, now, "ContainerStatusUnknown",
                               "The container could not be located when the pod was restarted"), now)
            c.state_unknown = False
            c.restarts += 1
        try:
            spec = await self._container_spec(c)
        except HookError as e:
            c.waiting = (e.reason, e.message)
            c.next_start = now + CONFIG_RETRY
            if e.event:  # as the kubelet's "Error: ..." Events
                self.host.event(self.pod, "Warning", e.event, f"Error: {e.message}")
            if e.reason in PULL_ERRORS:  # retried with back-off, shown as ImagePullBackOff meanwhile
                base, cap = self.host.backoff
                c.next_start = now + min(cap, base * 2 ** c.pull_failures)
                c.pull_failures += 1
                c.pull_backoff_at = now + PULL_BACKOFF_SHOWN_AFTER
            self.due.append(c.next_start)
            return
        c.pull_failures, c.pull_backoff_at = 0, 0.0
        if c.exit is not None:
            c.last = (c.exit, c.exit_started_at)
            c.restarts += 1
            c.exit = None
        c.attempts += 1
        t0 = time.perf_counter()
        try:
            h = await self.runtime.start(spec)
        except StartError as e:
            self._runtime_op("start_container", t0, ok=False)
            c.exit = ExitInfo(128, None, time.time(), "StartError", str(e))
            c.exit_started_at = 0.0
            self._schedule_restart(c, ran=0.0)
            self.due.append(c.next_start)
            self.host.event(self.pod, "Warning", "Failed", f"Error: {e}")
            return
        self._runtime_op("start_container", t0)
        c.handle, c.waiting, c.image_id = h, None, h.image_id
        c.waiter = asyncio.create_task(self._wait(c, h))
        self.host.event(self.pod, "Normal", "Started", f"Started container {c.name}")
        self._after_start(c, h)

    async def _container_spec(self, c: Container) -> ContainerSpec:
        """The next run of `c`, as the container prestart hooks fill it in."""
        spec = ContainerSpec(self.uid, self.ns, self.name, c.name, c.attempts, [], {}, None,
                             container_log_path(self.host.logs_dir, self.ns, self.name, self.uid, c.name,
                                                c.attempts),
                             sandbox_id=self.sandbox.id if self.sandbox else "")
        for hook in CONTAINER_HOOKS:
            await hook(self, c.spec, spec)
        return spec

    async def _wait(self, c: Container, h: ContainerHandle) -> None:
        info = await self.runtime.wait(h)
        if c.handle is not h:
            return
        c.handle = None
        self._end_run(c)
        c.exit, c.exit_started_at = info, h.started_at
        await self.runtime.forget(h)
        self._schedule_restart(c, ran=info.finished_at - h.started_at)
        self.wake.set()

    def _schedule_restart(self, c: Container, ran: float) -> None:
        """Back-off: the first restart is immediate, then base, 2×base, … up to the cap."""
        base, cap = self.host.backoff
        if ran >= BACKOFF_RESET_AFTER:
            c.backoff = 0.0
        c.delay = c.backoff
        c.next_start = time.time() + c.backoff
        c.backoff = min(cap, c.backoff * 2 if c.backoff else base)

    def downward_view(self) -> Obj:
        """The pod as the downward API sees it: with its sandbox's IP and the node's."""
        host = self.host.node_address
        status = {**(self.pod.get("status") or {}), "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
                  "hostIP": host, "hostIPs": [{"ip": host}]}
        return {**self.pod, "status": status}

    def retry_prepare(self) -> None:
        """Something a failed prestart step needed may have changed: try it again now."""
        if self.sandbox is None and self.prepare_at:
            self.prepare_at = 0.0
            self.wake.set()

    def running(self) -> list[ContainerHandle]:
        """The containers running now: a worker that replaces this one adopts them."""
        return [c.handle for c in self.containers.values() if c.handle is not None]

    def token_ready(self) -> None:
        """The pod's token is on disk: containers whose configuration failed (for want of it,
        or because getting it failed) start now, not after the configuration back-off."""
        for c in self.containers.values():
            if not c.running and c.waiting and c.waiting[0] == "CreateContainerConfigError":
                c.next_start = 0.0
        self.wake.set()

    # ----------------------------------------------------------------- termination
    async def _terminate(self) -> None:
        self.terminating = True
        grace = self._grace()
        running = [c for c in self.containers.values() if c.running]
        if running:
            self.host.event(self.pod, "Normal", "Killing",
                            ", ".join(f"Stopping container {c.name}" for c in running))
        await self.stop_containers(grace)
        if not self.gone:
            # the final status first (containers terminated, Ready False, a terminal phase), as
            # the kubelet's status manager posts it before the pod goes: a client waiting for
            # Ready=False on a deleted pod sees it
            await self._post_status()
        # its resources go before the pod object does, as the kubelet waits for them to be
        # reclaimed: once `kubectl delete --wait` returns, no tmpfs of the pod is mounted
        await self.release()
        if not self.gone:
            try:
                await self.host.client.delete(kind("pods"), self.ns, self.name, gracePeriodSeconds=0,
                                               preconditions={"uid": self.uid})
            except ApiError as e:
                if e.status != 409:  # 409: a newer pod of the same name; ours is gone already
                    raise
        self.remove_logs()

    async def stop_containers(self, grace: float) -> None:
        """Stop every container (preStop hook, SIGTERM, grace, SIGKILL), all at once."""
        self.terminating = True

        async def stop(c: Container) -> None:
            self._cancel_tasks(c, killing=True)
            h = c.handle
            if h is None:
                return
            c.handle = None
            self._end_run(c)
            info = await self._stop_run(c, h, grace)
            if info is not None:
                c.exit, c.exit_started_at = info, h.started_at
            await self.runtime.forget(h)
        await asyncio.gather(*[stop(c) for c in self.containers.values()])
        for c in self.containers.values():
            if c.waiter:
                c.waiter.cancel()

    def _grace(self, probe: Obj | None = None) -> float:
        """The grace period to stop a container with: the deletion's, else the probe's own
        (liveness / startup kills), else the pod's terminationGracePeriodSeconds."""
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None and probe is not None:
            grace = probe.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return float(grace) if isinstance(grace, (int, float)) and grace > 0 else 0.0

    async def _stop_run(self, c: Container, h: ContainerHandle, grace: float) -> ExitInfo | None:
        """preStop hook (once per run, bounded by the grace period), then SIGTERM with the
        grace left, then SIGKILL. None if the runtime no longer knows the container."""
        pre = (c.spec.get("lifecycle") or {}).get("preStop") if not c.init else None
        if isinstance(pre, dict) and grace > 0 and c.pre_stopped is not h:
            c.pre_stopped = h
            began = time.monotonic()
            try:
                err = await asyncio.wait_for(
                    hooks.run_handler(pre, self._target(c, h), hook="PreStop", container=c.name,
                                      pod=f"{self.ns}/{self.name}"), grace)
            except asyncio.TimeoutError:
                err = None
                log.info("preStop hook of %s/%s/%s did not complete within %gs",
                         self.ns, self.name, c.name, grace)
            if err:
                log.warning("%s", err)
                self.host.event(self.pod, "Warning", "FailedPreStopHook", f"PreStopHook failed: {err}")
            grace = max(grace - (time.monotonic() - began), MIN_GRACE_AFTER_PRESTOP)
        try:
            return await self.runtime.stop(h, grace)
        except KeyError:  # it exited and was forgotten meanwhile
            return None

    # ----------------------------------------------------------------- health
    def _target(self, c: Container, h: ContainerHandle) -> probes.Target:
        run = None
        runtime = self.runtime
        if runtime is not None and runtime.name != "process":  # exec handlers run inside the container
            run = probes.in_container(lambda argv: runtime.exec(h, argv, stdin=False, tty=False))
        return probes.Target(self.pod_ip or "", c.spec, h.spec.env, h.spec.working_dir, run)

    def _after_start(self, c: Container, h: ContainerHandle) -> None:
        """A new run began: its postStart hook, then its probes."""
        c.started = c.ready = False
        post = (c.spec.get("lifecycle") or {}).get("postStart") if not c.init else None
        if isinstance(post, dict):
            c.post_start_pending = True
            c.tasks.append(asyncio.create_task(self._post_start(c, h, post),
                                               name=f"postStart-{self.ns}/{self.name}/{c.name}"))
            return
        c.ever_started = True
        if not c.init:
            self._start_probes(c, h)

    async def _post_start(self, c: Container, h: ContainerHandle, handler: Obj) -> None:
        err = await hooks.run_handler(handler, self._target(c, h), hook="PostStart", container=c.name,
                                      pod=f"{self.ns}/{self.name}")
        if c.handle is not h or self.terminating:
            return
        c.ever_started = True
        if err:
            # stays ContainerCreating until it is gone: it never was Running
            log.warning("%s", err)
            self.host.event(self.pod, "Warning", "FailedPostStartHook", f"PostStartHook failed: {err}")
            self._kill(c, h, f"Container {c.name} failed postStart hook, will be stopped")
            return
        c.post_start_pending = False
        self._start_probes(c, h)

    def _start_probes(self, c: Container, h: ContainerHandle) -> None:
        c.gate = asyncio.Event()
        target = self._target(c, h)
        startup = c.spec.get("startupProbe")
        if isinstance(startup, dict) and not c.started:
            self._probe_task(c, h, probes.STARTUP, startup, target, None, None)
        else:
            c.started = True
            c.gate.set()
        for kind_, key in ((probes.LIVENESS, "livenessProbe"), (probes.READINESS, "readinessProbe")):
            probe = c.spec.get(key)
            if isinstance(probe, dict):
                initial = c.ready if kind_ == probes.READINESS else True
                self._probe_task(c, h, kind_, probe, target, c.gate, initial)
        self.wake.set()

    def _probe_task(self, c: Container, h: ContainerHandle, kind_: str, probe: Obj, target: probes.Target,
                    gate: asyncio.Event | None, initial: bool | None) -> None:
        async def check() -> probes.Outcome:
            outcome = await probes.run_probe(probe, target, loop.timeout)
            if self.metrics is not None:
                self.metrics.probe_result(kind_.capitalize(), PROBE_RESULTS.get(outcome.result, "unknown"), c.name,
                                          self.name, self.ns)
            return outcome
        loop = probes.ProbeLoop(
            kind_, probe, check, started_at=h.started_at,
            on_result=lambda k, ok: self._on_probe(c, h, k, ok, probe),
            on_event=self._probe_event,
            gate=gate, initial=initial)
        c.tasks.append(asyncio.create_task(loop.run(), name=f"{kind_}-probe-{self.ns}/{self.name}/{c.name}"))

    def _runtime_op(self, operation: str, t0: float, ok: bool = True) -> None:
        if self.metrics is not None:
            self.metrics.runtime_op(operation, time.perf_counter() - t0, ok)

    def _probe_event(self, type_: str, reason: str, message: str) -> None:
        if not self.terminating:
            self.host.event(self.pod, type_, reason, message)

    def _on_probe(self, c: Container, h: ContainerHandle, kind_: str, ok: bool, probe: Obj) -> None:
        """A probe's state changed (past its threshold)."""
        if c.handle is not h or self.terminating:
            return
        if kind_ == probes.READINESS:
            c.ready = ok
        elif kind_ == probes.STARTUP and ok:
            c.started = True
            if c.gate is not None:
                c.gate.set()
        elif not ok:  # liveness or startup failed: kill, the exit path restarts it by policy
            self._kill(c, h, f"Container {c.name} failed {kind_} probe, will be restarted", probe)
        self.wake.set()  # status is patched promptly on every change

    def _kill(self, c: Container, h: ContainerHandle, message: str, probe: Obj | None = None) -> None:
        if c.handle is not h or (c.killing is not None and not c.killing.done()):
            return
        self.host.event(self.pod, "Normal", "Killing", message)
        c.ready = False
        self._cancel_tasks(c)
        c.killing = asyncio.create_task(self._stop_run(c, h, self._grace(probe)),
                                        name=f"kill-{self.ns}/{self.name}/{c.name}")
        self.wake.set()

    def _cancel_tasks(self, c: Container, killing: bool = False) -> None:
        me = asyncio.current_task()
        for t in c.tasks:
            if t is not me:
                t.cancel()
        c.tasks = []
        if killing and c.killing is not None and c.killing is not me:
            c.killing.cancel()
            c.killing = None

    def _end_run(self, c: Container) -> None:
        """The current run is over (exited or being stopped): its probes and hooks end."""
        self._cancel_tasks(c, killing=True)
        c.post_start_pending = c.started = c.ready = False
        c.gate = None

    async def release(self) -> None:
        """The pod's containers are stopped: its sandbox (and IP) is released, its volumes
        unmounted and its files removed. Safe to call again."""
        if self.sandbox is not None and self.runtime is not None:
            await self.runtime.remove_pod_sandbox(self.sandbox.id)
            self.sandbox = None
        await unmount_all(self.pod_dir)  # tmpfs emptyDirs, before their files go
        shutil.rmtree(self.pod_dir, ignore_errors=True)

    def remove_logs(self) -> None:
        """The pod is gone (and `release` has freed the rest): its logs go too."""
        shutil.rmtree(os.path.join(self.host.logs_dir, f"{self.ns}_{self.name}_{self.uid}"), ignore_errors=True)

    # ----------------------------------------------------------------- status
    def _container_status(self, c: Container) -> Obj:
        st: Obj = {"name": c.name, "image": c.spec.get("image", ""), "imageID": c.image_id,
                   "restartCount": c.restarts, "ready": False, "started": False}
        last = {"terminated": self._terminated(*c.last)} if c.last else {}
        if c.running and c.post_start_pending:
            st["state"] = {"waiting": {"reason": "ContainerCreating"}}  # postStart still running
        elif c.running:
            h = c.handle
            st["state"] = {"running": {"startedAt": rfc3339(h.started_at)}}
            st["containerID"] = f"{self.runtime.name}://{h.id}"
            st["ready"] = c.is_ready
            st["started"] = c.started or c.init
        elif c.exit is not None and c.waiting and c.waiting[0] == "CreateContainerConfigError":
            st["state"] = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
            last = {"terminated": self._terminated(c.exit, c.exit_started_at)}
        elif c.exit is not None and self._will_restart(c) and c.next_start > time.time():
            st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                       f"back-off {int(c.delay)}s restarting failed container={c.name} "
                                       f"pod={self.name}_{self.ns}({self.uid})"}}
            last = {"terminated": self._terminated(c.exit, c.exit_started_at)}
        elif c.exit is not None:
            st["state"] = {"terminated": self._terminated(c.exit, c.exit_started_at)}
        else:
            reason, msg = c.waiting or ("ContainerCreating", "")
            st["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        st["lastState"] = last
        return st

    def _will_restart(self, c: Container) -> bool:
        if self.evicted is not None or self.terminating:
            return False
        if c.exit is None:
            return True
        p = self.restart_policy
        return p == "Always" or (p == "OnFailure" and c.exit.exit_code != 0)

    @staticmethod
    def _terminated(info: ExitInfo, started_at: float) -> Obj:
        t: Obj = {"exitCode": info.exit_code, "reason": info.reason, "finishedAt": rfc3339(info.finished_at)}
        if started_at:
            t["startedAt"] = rfc3339(started_at)
        if info.signal:
            t["signal"] = info.signal
        if info.message:
            t["message"] = info.message
        return t

    def _phase(self) -> str:
        inits = [c for c in self.containers.values() if c.init]
        apps = [c for c in self.containers.values() if not c.init]
        policy = self.restart_policy
        for c in inits:
            if c.exit is not None and c.exit.exit_code != 0 and policy == "Never":
                return "Failed"
            if not (c.exit is not None and c.exit.exit_code == 0):
                return "Pending"
        if any(c.up for c in apps):
            return "Running"
        if not any(c.ever_started or c.exit for c in apps):
            return "Pending"
        if all(c.exit is not None and not self._will_restart(c) for c in apps):
            return "Succeeded" if all(c.exit.exit_code == 0 for c in apps) else "Failed"
        return "Running"

    def _status(self) -> Obj:
        statuses = [self._container_status(c) for c in self.containers.values() if not c.init]
        init_statuses = [self._container_status(c) for c in self.containers.values() if c.init]
        phase = self._phase()
        initialized = all(c.exit is not None and c.exit.exit_code == 0
                          for c in self.containers.values() if c.init)
        ready = initialized and phase == "Running" and all(s["ready"] for s in statuses)
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        conds = []
        for type_, ok in (("PodReadyToStartContainers", True), ("Initialized", initialized),
                          ("Ready", ready), ("ContainersReady", ready)):
            status = "True" if ok else "False"
            prev = old.get(type_)
            since = prev["lastTransitionTime"] if prev and prev.get("status") == status else rfc3339(time.time())
            c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
            if not ok and type_ in ("Ready", "ContainersReady"):
                not_ready = [s["name"] for s in statuses if not s["ready"]]
                if not_ready:
                    c["reason"] = "ContainersNotReady"
                    c["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
            conds.append(c)
        if "PodScheduled" in old:
            conds.append(old["PodScheduled"])
        host_ip = self.host.node_address
        st: Obj = {"phase": phase, "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "startTime": self.start_time, "containerStatuses": statuses}
        if self.pod_ip:
            st.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        if init_statuses:
            st["initContainerStatuses"] = init_statuses
        if self.evicted is not None:
            st.update(phase="Failed", reason="Evicted", message=self.evicted)
        return st

    def _status_failed(self, e: Exception) -> None:
        """The API did not take the status (overloaded, restarting): the containers are
        fine, so the worker goes on and posts it again shortly, as the kubelet's status
        manager does."""
        log.warning("status of pod %s/%s not posted, retrying: %s", self.ns, self.name, e)
        self.status_retry_at = time.time() + STATUS_RETRY

    async def _post_status(self) -> None:
        st = self._status()
        if st == self.last_status:
            return
        try:
            pod = await self.host.client.patch(kind("pods"), self.ns, self.name, {"status": st}, sub="status")
        except ApiError as e:
            if e.status == 404:
                self.gone = True
                self.wake.set()
                return
            self._status_failed(e)
            return
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self._status_failed(e)
            return
        self.status_retry_at = 0.0
        if st.get("phase") == "Running" and not self.start_observed:
            self.start_observed = True
            if self.metrics is not None:
                self.metrics.pod_start.observe(time.monotonic() - self.seen_at)
        if pod["metadata"].get("uid") != self.uid:
            return
        self.last_status = st
        self.pod = pod
