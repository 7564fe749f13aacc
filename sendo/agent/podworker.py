"""One worker per pod on this node: start its containers, restart them by policy,
report status, and stop everything when the pod is deleted.

The worker is level-triggered too: every pass compares the pod spec with what runs
and acts; container exits and pod updates only wake it up.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import ApiError, kind
from .env import ConfigError, build_env, command_line
from .logs import container_log_path
from .runtime import ContainerHandle, ContainerSpec, ExitInfo, StartError

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)
Obj = dict[str, Any]
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long starts its back-off afresh


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    @property
    def running(self) -> bool:
        return self.handle is not None


class PodWorker:
    def __init__(self, agent: "Agent", pod: Obj, adopted: list[ContainerHandle]):
        self.agent = agent
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.wake = asyncio.Event()
        self.gone = False  # the pod object no longer exists in the API
        self.pod_ip: str | None = None
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self.last_status: Obj | None = None
        self.containers = self._containers(pod, adopted)
        self.task = asyncio.create_task(self._run(), name=f"pod-{self.ns}/{self.name}")

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
                    ct.handle, ct.waiting, ct.ever_started = h, None, True
                    ct.waiter = asyncio.create_task(self._wait(ct, h))
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
            self.pod_ip = self.agent.ips.assign(self.uid, (self.pod.get("status") or {}).get("podIP"))
            os.makedirs(self.pod_dir, exist_ok=True)
            self.start_time = self.start_time or rfc3339(time.time())
            while True:
                if self.gone or self.pod["metadata"].get("deletionTimestamp"):
                    await self._terminate()
                    return
                await self._sync()
                await self._post_status()
                await self._sleep()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s failed", self.ns, self.name)
            self.agent.worker_failed(self)

    async def _sleep(self) -> None:
        now = time.time()
        pending = [c.next_start - now for c in self.containers.values()
                   if not c.running and c.next_start > now]
        timeout = min(pending) if pending else None
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self.wake.clear()

    @property
    def pod_dir(self) -> str:
        return os.path.join(self.agent.pods_dir, self.uid)

    @property
    def restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy", "Always")

    # ----------------------------------------------------------------- reconcile
    async def _sync(self) -> None:
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
            return  # in back-off; the worker wakes when it ends
        if c.state_unknown:
            c.last = (ExitInfo(137, None, now, "ContainerStatusUnknown",
                               "The container could not be located when the pod was restarted"), now)
            c.state_unknown = False
            c.restarts += 1
        try:
            env = await build_env(self._downward_view(), c.spec, self.agent.base_env(self.pod, self.pod_ip),
                                  self._lookup)
        except ConfigError as e:
            c.waiting = ("CreateContainerConfigError", str(e))
            c.next_start = now + 2.0
            return
        except ApiError as e:
            c.waiting = ("CreateContainerConfigError", e.body.get("message", str(e)))
            c.next_start = now + 2.0
            return
        argv = command_line(c.spec, env)
        wd = c.spec.get("workingDir") or self.pod_dir
        os.makedirs(wd, exist_ok=True)
        spec = ContainerSpec(self.uid, self.ns, self.name, c.name, c.attempts, argv, env, wd,
                             container_log_path(self.agent.logs_dir, self.ns, self.name, self.uid, c.name,
                                                c.attempts))
        if c.exit is not None:
            c.last = (c.exit, c.exit_started_at)
            c.restarts += 1
            c.exit = None
        c.attempts += 1
        try:
            if not argv:
                raise StartError("no command specified: the process runtime needs command or args")
            h = await self.agent.runtime.start(spec)
        except StartError as e:
            c.exit = ExitInfo(128, None, time.time(), "StartError", str(e))
            c.exit_started_at = 0.0
            self._schedule_restart(c, ran=0.0)
            self.agent.event(self.pod, "Warning", "Failed", f"Error: {e}")
            return
        c.handle, c.waiting, c.ever_started = h, None, True
        c.waiter = asyncio.create_task(self._wait(c, h))
        self.agent.event(self.pod, "Normal", "Started", f"Started container {c.name}")

    async def _wait(self, c: Container, h: ContainerHandle) -> None:
        info = await self.agent.runtime.wait(h)
        if c.handle is not h:
            return
        c.handle = None
        c.exit, c.exit_started_at = info, h.started_at
        await self.agent.runtime.forget(h)
        self._schedule_restart(c, ran=info.finished_at - h.started_at)
        self.wake.set()

    def _schedule_restart(self, c: Container, ran: float) -> None:
        """Back-off: the first restart is immediate, then base, 2×base, … up to the cap."""
        base, cap = self.agent.cfg.backoff_base, self.agent.cfg.backoff_max
        if ran >= BACKOFF_RESET_AFTER:
            c.backoff = 0.0
        c.delay = c.backoff
        c.next_start = time.time() + c.backoff
        c.backoff = min(cap, c.backoff * 2 if c.backoff else base)

    def _downward_view(self) -> Obj:
        """The pod as the downward API sees it: with the IPs this worker assigned."""
        host = self.agent.cfg.address
        status = {**(self.pod.get("status") or {}), "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
                  "hostIP": host, "hostIPs": [{"ip": host}]}
        return {**self.pod, "status": status}

    async def _lookup(self, plural: str, ns: str, name: str) -> Obj | None:
        return await self.agent.client.get_or_none(kind(plural), ns, name)

    # ----------------------------------------------------------------- termination
    async def _terminate(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        running = [c for c in self.containers.values() if c.running]
        if running:
            self.agent.event(self.pod, "Normal", "Killing",
                                   ", ".join(f"Stopping container {c.name}" for c in running))
        await self.stop_containers(float(grace or 0))
        if not self.gone:
            try:
                await self.agent.client.delete(kind("pods"), self.ns, self.name, gracePeriodSeconds=0,
                                               preconditions={"uid": self.uid})
            except ApiError as e:
                if e.status != 409:  # 409: a newer pod of the same name; ours is gone already
                    raise
        self.cleanup()

    async def stop_containers(self, grace: float) -> None:
        async def stop(c: Container) -> None:
            h = c.handle
            if h is None:
                return
            c.handle = None
            info = await self.agent.runtime.stop(h, grace)
            c.exit, c.exit_started_at = info, h.started_at
            await self.agent.runtime.forget(h)
        await asyncio.gather(*[stop(c) for c in self.containers.values()])
        for c in self.containers.values():
            if c.waiter:
                c.waiter.cancel()

    def cleanup(self) -> None:
        self.agent.ips.release(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        shutil.rmtree(os.path.join(self.agent.logs_dir, f"{self.ns}_{self.name}_{self.uid}"), ignore_errors=True)

    # ----------------------------------------------------------------- status
    def _container_status(self, c: Container) -> Obj:
        st: Obj = {"name": c.name, "image": c.spec.get("image", ""), "imageID": "",
                   "restartCount": c.restarts, "ready": False, "started": False}
        last = {"terminated": self._terminated(*c.last)} if c.last else {}
        if c.running:
            h = c.handle
            st["state"] = {"running": {"startedAt": rfc3339(h.started_at)}}
            st["containerID"] = f"process://{h.id}"
            st["ready"] = not c.init
            st["started"] = True
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
        if any(c.running for c in apps):
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
        host_ip = self.agent.cfg.address
        st: Obj = {"phase": phase, "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}], "startTime": self.start_time,
                   "containerStatuses": statuses}
        if init_statuses:
            st["initContainerStatuses"] = init_statuses
        return st

    async def _post_status(self) -> None:
        st = self._status()
        if st == self.last_status:
            return
        try:
            pod = await self.agent.client.patch(kind("pods"), self.ns, self.name, {"status": st}, sub="status")
        except ApiError as e:
            if e.status == 404:
                self.gone = True
                self.wake.set()
                return
            raise
        if pod["metadata"].get("uid") != self.uid:
            return
        self.last_status = st
        self.pod = pod
