"""Function controller: runs sendo.dev/v1alpha1 Functions (see docs/architecture.md, "Functions").

For a Function ``<name>`` it keeps, all owned by the Function (so deleting it deletes them):

* a Deployment ``fn-<name>`` whose pods run the invoker (`python -m sendo.functions.invoker`)
  with the source in ``FUNCTION_SOURCE`` (inline, or from a ConfigMap key); its template
  carries the function's version (a hash of the spec minus scaling and triggers), so a new
  source or spec rolls out like any Deployment change;
* a Service ``<name>`` (port 80 → the invoker's 8080) and, with an ``http`` trigger (the
  default), an Ingress routing ``/functions/<namespace>/<name>`` to it;
* the **activator**: while the function has no ready instance, or is about to be scaled to
  zero, an EndpointSlice of the Service points at a listener of this controller (one
  loopback port per function). A request reaching it is *held*: it counts as demand, the
  autoscaler asks for an instance at once, and the request is forwarded when one is ready.

Every ``tick`` seconds the controller reads each ready instance's ``/_sendo/stats``
(in-flight, invocations) and feeds `sendo.functions.autoscale` (Knative's model), then sets
the Deployment's replicas to what it wants. Status: version, readyVersion, instances,
readyInstances, inFlight, url, the trigger bookmarks and counters.

Triggers: a **cron** trigger (CronJob's schedule rules, `@every` included, in ``timeZone``)
fires the latest missed tick once after an outage (``status.cron[i]`` holds the last tick);
an **event** trigger watches its kind and invokes once per event, in order, with a
CloudEvents 1.0 dict, writing the event's resourceVersion to ``status.eventResourceVersions[i]``
only after the invocation succeeded or was given up — at least once, resumed after a restart.
A failed cron/event invocation is retried with exponential back-off (``retries``, default 3);
then a Warning Event ``InvocationFailed`` is recorded and ``status.failedInvocations`` grows.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import logging
import random
import sys
import time
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..client import ApiError, kind
from ..client.events import EventRecorder
from ..kinds.function import FILES_KEY, FILES_LABEL, FUNCTION_RESOURCE, version_of
from ..kinds.base import Resource
from ..kinds.meta import rfc3339
from ..kinds.printing import parse_timestamp
from ..kinds.registry import builtin_registry
from ..functions.autoscale import Autoscaler, Settings
from ..functions.events import cluster_event, cron_event
from ..functions.invoker import SPECIALIZED_HEADER
from .base import Controller, owner_key, split_key
from .cronjob import Schedule, unmet_time
from .podutil import controller_ref, is_ready

log = logging.getLogger(__name__)
Obj = dict[str, Any]

LABEL = "sendo.dev/function"
VERSION_LABEL = "sendo.dev/function-version"
INVOKER_PORT = 8080
SERVICE_PORT = 80
POOL_NS = "kube-system"
POOL_NAME = "sendo-function-pool"  # the DaemonSet: one generic worker per node
WORKER_LABEL = "sendo.dev/function-worker"  # on every warm-pool pod, generic or specialised
POOL_LABEL = "sendo.dev/function-pool"  # only on generic ones (the pool DaemonSet's selector)
BRIDGE_LABEL = "sendo.dev/function-bridge"  # <namespace>.<name> of the function a worker now runs
FINALIZER = "sendo.dev/function"  # the controller deletes the Service, Ingress and slices it made first
ACTIVATOR_MANAGED_BY = "function-activator.sendo.dev"
SLICE_RECHECK = 0.2  # seconds between looks for the endpoints controller's slice, while the activator waits for it
HOLD_DEADLINE = 120.0  # how long the activator holds a request for an instance to be ready
DEFAULT_RETRIES = 3
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}

DEPLOYMENTS = kind("deployments", "apps")
DAEMONSETS = kind("daemonsets", "apps")
SERVICES = kind("services")
INGRESSES = kind("ingresses", "networking.k8s.io")
SLICES = kind("endpointslices", "discovery.k8s.io")
PODS = kind("pods")
CONFIGMAPS = kind("configmaps")


def deployment_name(fn_name: str) -> str:
    return f"fn-{fn_name}"


def function_path(ns: str, name: str) -> str:
    return f"/functions/{ns}/{name}"


def http_enabled(spec: Obj) -> bool:
    triggers = [t for t in spec.get("triggers") or [] if isinstance(t, dict)]
    return not triggers or any("http" in t for t in triggers)


def service_port(spec: Obj) -> int:
    """The Service's port: the http trigger's ``port`` (80 unless set)."""
    for t in spec.get("triggers") or []:
        if isinstance(t, dict) and isinstance(t.get("http"), dict) and t["http"].get("port"):
            return int(t["http"]["port"])
    return SERVICE_PORT


FILES_MOUNT = "/var/run/sendo-function/files"  # where a packed source's ConfigMap is mounted in an instance


def source_env(spec: Obj) -> Obj:
    """How an instance finds its code: the source text, a directory on its node, or the archive of a
    packed directory (a ConfigMap volume, see `desired_deployment`)."""
    src = spec.get("source") or {}
    if isinstance(src.get("inline"), str):
        return {"name": "FUNCTION_SOURCE", "value": src["inline"]}
    files = src.get("files") or {}
    if isinstance(files.get("path"), str):
        return {"name": "FUNCTION_FILES", "value": files["path"]}
    if files.get("configMapRef"):
        return {"name": "FUNCTION_FILES_ZIP", "value": f"{FILES_MOUNT}/{FILES_KEY}"}
    ref = src.get("configMapRef") or {}
    module = str(spec.get("handler", "main.handle")).rpartition(".")[0]
    return {"name": "FUNCTION_SOURCE", "valueFrom": {"configMapKeyRef": {
        "name": ref.get("name", ""), "key": ref.get("key") or f"{module}.py"}}}


def files_configmap(spec: Obj) -> str | None:
    """The ConfigMap holding a packed source directory, if the source is one."""
    ref = ((spec.get("source") or {}).get("files") or {}).get("configMapRef") or {}
    return ref.get("name") or None


def desired_deployment(fn: Obj, replicas: int) -> Obj:
    m, spec = fn["metadata"], fn["spec"]
    version = version_of(spec)
    labels = {LABEL: m["name"]}
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "FUNCTION_NAME", "value": m["name"]},
           {"name": "FUNCTION_NAMESPACE", "value": m["namespace"]},
           {"name": "FUNCTION_VERSION", "value": version},
           {"name": "FUNCTION_HANDLER", "value": spec["handler"]},
           {"name": "FUNCTION_CONCURRENCY", "value": str(spec.get("concurrency", 10))},
           {"name": "FUNCTION_QUEUE_DEPTH", "value": str(spec.get("queueDepth", 100))},
           {"name": "FUNCTION_TIMEOUT", "value": str(spec.get("timeoutSeconds", 30))},
           {"name": "FUNCTION_PORT", "value": str(INVOKER_PORT)},
           {"name": "FUNCTION_PATH_PREFIX", "value": function_path(m["namespace"], m["name"])},
           {"name": "PYTHONUNBUFFERED", "value": "1"},
           {"name": "FUNCTION_REQUIREMENTS", "value": orjson.dumps(spec.get("requirements") or []).decode()},
           source_env(spec), *[e for e in spec.get("env") or [] if isinstance(e, dict)]]
    out: Obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment_name(m["name"]), "namespace": m["namespace"], "labels": dict(labels),
                     "ownerReferences": [controller_ref(fn)]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {
                     "metadata": {"labels": {**labels, VERSION_LABEL: version}},
                     "spec": {"terminationGracePeriodSeconds": int(spec.get("timeoutSeconds", 30)) + 5,
                              "containers": [{
                                  "name": "function", "image": "sendo/python-function",
                                  "command": [sys.executable, "-m", "sendo.functions.invoker"],
                                  "env": env,
                                  "ports": [{"name": "http", "containerPort": INVOKER_PORT}],
                                  "readinessProbe": {"httpGet": {"path": "/_sendo/stats", "port": INVOKER_PORT},
                                                     "periodSeconds": 1, "failureThreshold": 3},
                                  "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}}}
    packed = files_configmap(spec)
    if packed:
        pod = out["spec"]["template"]["spec"]
        pod["volumes"] = [{"name": "function-files", "configMap": {"name": packed}}]
        pod["containers"][0]["volumeMounts"] = [{"name": "function-files", "mountPath": FILES_MOUNT,
                                                 "readOnly": True}]
    return out


def desired_service(fn: Obj) -> Obj:
    m = fn["metadata"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": m["name"], "namespace": m["namespace"], "labels": {LABEL: m["name"]},
                         "ownerReferences": [controller_ref(fn)]},
            "spec": {"selector": {LABEL: m["name"]},
                     "ports": [{"name": "http", "port": service_port(fn["spec"]), "targetPort": INVOKER_PORT}]}}


def desired_ingress(fn: Obj) -> Obj:
    m = fn["metadata"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": deployment_name(m["name"]), "namespace": m["namespace"],
                         "labels": {LABEL: m["name"]}, "ownerReferences": [controller_ref(fn)]},
            "spec": {"rules": [{"http": {"paths": [{
                "path": function_path(m["namespace"], m["name"]), "pathType": "Prefix",
                "backend": {"service": {"name": m["name"], "port": {"number": service_port(fn["spec"])}}}}]}}]}}


def activator_slice(fn: Obj, port: int) -> Obj:
    m = fn["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{m['name']}-activator", "namespace": m["namespace"],
                         "labels": {"kubernetes.io/service-name": m["name"],
                                    "endpointslice.kubernetes.io/managed-by": ACTIVATOR_MANAGED_BY, LABEL: m["name"]},
                         "ownerReferences": [controller_ref(fn)]},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True, "serving": True}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def pool_daemonset() -> Obj:
    """A generic worker on every node: a cold start takes the one on a node, whose DaemonSet
    then starts the next one there (Fission's pool, per node as the issue asks)."""
    labels = {POOL_LABEL: "true", WORKER_LABEL: "true"}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": POOL_NAME, "namespace": POOL_NS, "labels": {WORKER_LABEL: "true"}},
            "spec": {"selector": {"matchLabels": {POOL_LABEL: "true"}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 5,
                         "runtimeClassName": "process",  # the node's own Python, not an image
                         "containers": [{
                             "name": "worker", "image": "sendo/python-function",
                             "command": [sys.executable, "-m", "sendo.functions.invoker"],
                             "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                     {"name": "FUNCTION_GENERIC", "value": "1"},
                                     {"name": "FUNCTION_PORT", "value": str(INVOKER_PORT)},
                                     {"name": "PYTHONUNBUFFERED", "value": "1"}],
                             "ports": [{"name": "http", "containerPort": INVOKER_PORT}],
                             "readinessProbe": {"httpGet": {"path": "/_sendo/stats", "port": INVOKER_PORT},
                                                "periodSeconds": 1},
                             "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}}}


def specialize_env(fn: Obj, archive: str | None = None) -> dict[str, str] | None:
    """What a warm worker is given to become this function: its container's env when every value
    is plain (a ``valueFrom`` needs the kubelet, so such a function starts its own pods only); a
    packed source travels in the request (``archive``: the ConfigMap's base64 zip) instead of a volume."""
    env = desired_deployment(fn, 1)["spec"]["template"]["spec"]["containers"][0]["env"]
    out = {}
    for e in env:
        if e["name"] == "POD_IP":
            continue
        if "value" not in e:
            return None
        out[e["name"]] = str(e["value"])
    if "FUNCTION_FILES_ZIP" in out:
        if archive is None:
            return None
        del out["FUNCTION_FILES_ZIP"]
        out["FUNCTION_FILES_ZIP_DATA"] = archive
    return out


def backoff_delays(retries: int, base: float = 0.5, cap: float = 30.0) -> list[float]:
    """The waits between attempts: exponential, capped, with up to 10 % jitter."""
    return [min(cap, base * 2 ** i) * (1 + random.random() / 10) for i in range(retries)]


@dataclass
class FirstCall:
    """A held HTTP request, sent along with a warm worker's specialise call (one round trip)."""

    request: Obj  # method, path, query, headers, body (base64)
    timeout: float
    answer: tuple[int, dict[str, str], bytes] | None = None


@dataclass
class State:
    """What the controller keeps in memory about one function."""

    uid: str
    scaler: Autoscaler
    held: int = 0  # requests the activator holds now
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    seen_invocations: dict[str, int] = field(default_factory=dict)  # pod uid -> invocations counter
    in_flight: int = 0
    cold_starts: int = 0
    warm_starts: int = 0  # cold starts served by a warm-pool worker
    invoked: dict[str, int] = field(default_factory=dict)  # "cron/ok", "event/failed", …
    activator: web.AppRunner | None = None
    activator_port: int = 0
    triggers: dict[str, asyncio.Task] = field(default_factory=dict)  # trigger identity -> task
    rr: int = 0
    bridge: Obj | None = None  # a warm-pool worker specialised as this function, until it retires
    bridge_version: str = ""  # the function version it was given
    claiming: bool = False
    bridge_misses: int = 0  # ticks in a row its stats did not answer


class FunctionController(Controller):
    name = "function"
    workers = 2

    def __init__(self, client, informers, tick: float = 1.0, now: Callable[[], float] = time.monotonic,
                 pool_size: int = 1):
        self.tick = tick
        self.pool_size = pool_size
        self._pool_applied: bool | None = None
        self._claimed: set[str] = set()  # workers specialised whose pool label is not yet off
        self._background: set[asyncio.Task] = set()
        self.now = now
        self.state: dict[str, State] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task | None = None
        self.kinds = builtin_registry()
        super().__init__(client, informers)

    # ---------------------------------------------------------------- wiring
    def setup(self) -> None:
        self.fn_inf = self.informers.get(FUNCTION_RESOURCE)
        self.deploy_inf = self.informers.get(DEPLOYMENTS, label_selector=LABEL)
        self.pod_inf = self.informers.get(PODS, label_selector=LABEL)
        self.fn_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.deploy_inf.add_handler(self._on_owned)
        self.pod_inf.add_handler(self._on_pod)
        self.worker_inf = self.informers.get(PODS, POOL_NS, label_selector=WORKER_LABEL)
        self.recorder = EventRecorder(self.client, "function-controller")

    def _on_owned(self, typ: str, obj: Obj, old: Obj | None) -> None:
        key = owner_key(obj, "Function")
        if key:
            self.queue.add(key)

    def _on_pod(self, typ: str, pod: Obj, old: Obj | None) -> None:
        m = pod["metadata"]
        key = f"{m.get('namespace')}/{(m.get('labels') or {}).get(LABEL, '')}"
        st = self.state.get(key)
        if st is not None and self.ready_pods(key):
            st.ready_event.set()
        if (old is None or is_ready(old) != is_ready(pod)) or typ == "DELETED":
            self.queue.add(key)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=2),
                                              trust_env=False)
        await super().start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="function-autoscaler")

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(BaseException):
                await self._ticker
        for key in list(self.state):
            await self._forget(key, retire=False)  # a warm worker in use is cleared by the next start
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await super().stop()
        await self.recorder.close()
        if self._session:
            await self._session.close()

    def ready_pods(self, key: str) -> list[Obj]:
        ns, name = split_key(key)
        return sorted((p for p in self.pod_inf.list()
                       if p["metadata"].get("namespace") == ns
                       and (p["metadata"].get("labels") or {}).get(LABEL) == name
                       and not p["metadata"].get("deletionTimestamp") and is_ready(p)
                       and (p.get("status") or {}).get("podIP")),
                      key=lambda p: p["metadata"]["name"])

    def _pods_of(self, key: str) -> list[Obj]:
        ns, name = split_key(key)
        return [p for p in self.pod_inf.list() if p["metadata"].get("namespace") == ns
                and (p["metadata"].get("labels") or {}).get(LABEL) == name]

    # ---------------------------------------------------------------- reconcile
    async def reconcile(self, key: str) -> float | None:
        await self._ensure_pool()
        fn = self.fn_inf.get(key)
        if fn is None:
            await self._forget(key)
            return None
        if fn["metadata"].get("deletionTimestamp"):
            await self._forget(key)
            await self._finalize(fn)
            return None
        if FINALIZER not in (fn["metadata"].get("finalizers") or []):
            await self.client.patch(FUNCTION_RESOURCE, fn["metadata"]["namespace"], fn["metadata"]["name"],
                                    {"metadata": {"finalizers": [*(fn["metadata"].get("finalizers") or []), FINALIZER],
                                                  "resourceVersion": fn["metadata"]["resourceVersion"]}})
            return None  # the update comes back through the informer
        fn = {"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function", **fn}
        ns, name = split_key(key)
        spec = fn.get("spec") or {}
        st = self.state.get(key)
        if st is None or st.uid != fn["metadata"]["uid"]:
            if st is not None:
                await self._forget(key)
            st = self.state[key] = State(fn["metadata"]["uid"], Autoscaler(Settings.from_spec(spec)))
            st.scaler.wanted = max(int(spec.get("minScale") or 0), len(self.ready_pods(key)))
        st.scaler.settings = Settings.from_spec(spec)
        if st.bridge is not None and st.bridge_version != version_of(spec):
            await self._retire(st)  # it runs the old code: the next request gets a worker with the new
        await self._ensure_activator(key, st)
        ready = self.ready_pods(key)
        wanted = st.scaler.wanted if st.held == 0 else max(1, st.scaler.wanted)
        # the activator is in the path whenever no instance is (or soon will be) there to answer
        kept = await self._ensure_slice(fn, st, present=not ready or wanted == 0)
        # a warm-pool worker serving as this function (or being given its code) counts as one of its instances
        await self._ensure_deployment(fn, max(0, wanted - (1 if st.bridge is not None or st.claiming else 0)))
        await self._ensure(SERVICES, desired_service(fn))
        if http_enabled(spec):
            await self._ensure(INGRESSES, desired_ingress(fn))
        else:
            await self.client.delete(INGRESSES, ns, deployment_name(name))
        self._ensure_triggers(key, fn, st)
        await self._write_status(fn, st, ready)
        return SLICE_RECHECK if kept else None

    async def _ensure(self, r, want: Obj) -> Obj:
        m = want["metadata"]
        have = await self.client.get_or_none(r, m["namespace"], m["name"])
        if have is None:
            return await self.client.create(r, want)
        if not any(ref.get("uid") == m["ownerReferences"][0]["uid"] for ref in have["metadata"].get("ownerReferences") or []):
            log.warning("function: %s %s/%s exists and is not the function's: left alone", r.kind,
                        m["namespace"], m["name"])
            return have
        spec = want["spec"]
        if r is SERVICES:  # the server fills in clusterIP, ports' protocol, …: compare what we set
            ports = [{k: p.get(k) for k in ("name", "port", "targetPort")} for p in have["spec"].get("ports") or []]
            if ports == spec["ports"] and have["spec"].get("selector") == spec["selector"]:
                return have
            spec = {"ports": spec["ports"], "selector": spec["selector"]}
        elif have.get("spec") == {**(have.get("spec") or {}), **spec}:
            return have
        return await self.client.patch(r, m["namespace"], m["name"], {"spec": spec})

    async def _ensure_deployment(self, fn: Obj, replicas: int) -> None:
        want = desired_deployment(fn, replicas)
        m = want["metadata"]
        have = self.deploy_inf.get(f"{m['namespace']}/{m['name']}")
        if have is None:
            have = await self.client.get_or_none(DEPLOYMENTS, m["namespace"], m["name"])
        if have is None:
            await self.client.create(DEPLOYMENTS, want)
            return
        hs = have.get("spec") or {}
        old_version = ((hs.get("template") or {}).get("metadata") or {}).get("labels", {}).get(VERSION_LABEL)
        new_version = want["spec"]["template"]["metadata"]["labels"][VERSION_LABEL]
        if hs.get("replicas") != replicas or old_version != new_version:
            patch = {"spec": {"replicas": replicas}}
            if old_version != new_version:
                patch["spec"]["template"] = want["spec"]["template"]
            await self.client.patch(DEPLOYMENTS, m["namespace"], m["name"], patch)

    async def _ensure_slice(self, fn: Obj, st: State, present: bool) -> bool:
        """The activator's EndpointSlice in or out of the Service; True when it stays only until the
        endpoints controller lists a ready instance (out before that, the Service would have no
        endpoint for a moment and the node's proxy would refuse connections)."""
        want = activator_slice(fn, st.activator_port)
        m = want["metadata"]
        have = await self.client.get_or_none(SLICES, m["namespace"], m["name"])
        if not present:
            if have is None:
                return False
            if not await self._instances_listed(m["namespace"], fn["metadata"]["name"]):
                return True
            await self.client.delete(SLICES, m["namespace"], m["name"])
            return False
        if have is None:
            await self.client.create(SLICES, want)
        elif have.get("ports") != want["ports"]:
            have.update(endpoints=want["endpoints"], ports=want["ports"])
            await self.client.update(SLICES, have)
        return False

    async def _instances_listed(self, ns: str, service: str) -> bool:
        """Whether a slice of the Service other than the activator's has a ready endpoint."""
        slices = await self.client.list(SLICES, ns, labelSelector=f"kubernetes.io/service-name={service}")
        return any(sl["metadata"]["name"] != f"{service}-activator"
                   and any(e.get("addresses") and (e.get("conditions") or {}).get("ready") is not False
                           for e in sl.get("endpoints") or [])
                   for sl in slices.get("items") or [])

    async def _write_status(self, fn: Obj, st: State, ready: list[Obj]) -> None:
        ns, name = fn["metadata"]["namespace"], fn["metadata"]["name"]
        version = version_of(fn.get("spec") or {})
        versions = {(p["metadata"].get("labels") or {}).get(VERSION_LABEL) for p in ready}
        if st.bridge is not None:
            versions.add(st.bridge_version)
        bridged = 1 if st.bridge is not None else 0  # a warm-pool worker serving as an instance
        status = {"observedGeneration": fn["metadata"].get("generation"), "version": version,
                  "url": function_path(ns, name) if http_enabled(fn.get("spec") or {}) else None,
                  "instances": len([p for p in self._pods_of(f"{ns}/{name}")
                                    if not p["metadata"].get("deletionTimestamp")]) + bridged,
                  "readyInstances": len(ready) + bridged, "desiredInstances": st.scaler.wanted,
                  "warmWorker": st.bridge["metadata"]["name"] if st.bridge is not None else None,
                  "inFlight": st.in_flight + st.held, "coldStarts": st.cold_starts,
                  "warmStarts": st.warm_starts}
        if versions == {version}:
            status["readyVersion"] = version
        elif not versions:
            status["readyVersion"] = (fn.get("status") or {}).get("readyVersion")
        old = fn.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            await self._patch_status(ns, name, status)

    async def _patch_status(self, ns: str, name: str, status: Obj) -> None:
        with contextlib.suppress(ApiError):
            await self.client.patch(FUNCTION_RESOURCE, ns, name, {"status": status}, sub="status")

    async def _finalize(self, fn: Obj) -> None:
        """Delete what the function owns (the garbage collector does not watch Services, Ingresses or
        EndpointSlices), then let the function go."""
        m = fn["metadata"]
        ns, name = m["namespace"], m["name"]
        for r, obj_name in ((INGRESSES, deployment_name(name)), (SLICES, f"{name}-activator"), (SERVICES, name),
                            (DEPLOYMENTS, deployment_name(name))):
            have = await self.client.get_or_none(r, ns, obj_name)
            if have is not None and any(ref.get("uid") == m["uid"] for ref in have["metadata"].get("ownerReferences") or []):
                await self.client.delete(r, ns, obj_name, propagationPolicy="Background")
        for cm in (await self.client.list(CONFIGMAPS, ns, labelSelector=f"{FILES_LABEL}={name}")).get("items") or []:
            if any(ref.get("uid") == m["uid"] for ref in cm["metadata"].get("ownerReferences") or []):
                await self.client.delete(CONFIGMAPS, ns, cm["metadata"]["name"])
        if FINALIZER in (m.get("finalizers") or []):
            await self.client.patch(FUNCTION_RESOURCE, ns, name, {"metadata": {
                "finalizers": [f for f in m["finalizers"] if f != FINALIZER], "resourceVersion": m["resourceVersion"]}})

    async def _forget(self, key: str, retire: bool = True) -> None:
        st = self.state.pop(key, None)
        if st is None:
            return
        for t in st.triggers.values():
            t.cancel()
        for t in st.triggers.values():
            with contextlib.suppress(BaseException):
                await t
        if st.activator is not None:
            await st.activator.cleanup()
        if retire:
            await self._retire(st)

    # ---------------------------------------------------------------- autoscaling
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            for key in list(self.state):
                try:
                    await self._observe(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("function: observing %s failed", key)

    async def _stats(self, pod: Obj, timeout: float = 2.0) -> Obj | None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://{pod['status']['podIP']}:{INVOKER_PORT}/_sendo/stats",
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return orjson.loads(await r.read()) if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
            return None

    async def _observe(self, key: str) -> None:
        st = self.state.get(key)
        if st is None:
            return
        ready = self.ready_pods(key)
        stats = await asyncio.gather(*(self._stats(p) for p in ready))
        in_flight, active = 0, False
        seen: dict[str, int] = {}
        for pod, s in zip(ready, stats):
            if not s:
                continue
            in_flight += int(s.get("inFlight") or 0)
            uid = pod["metadata"]["uid"]
            seen[uid] = int(s.get("invocations") or 0)
            if seen[uid] != st.seen_invocations.get(uid, 0):
                active = True
        if st.bridge is not None:
            s = await self._stats(st.bridge)
            bridge_busy = int((s or {}).get("inFlight") or 0)
            in_flight += bridge_busy
            n = int((s or {}).get("invocations") or 0)
            seen["bridge"] = n
            active = active or n != st.seen_invocations.get("bridge", 0)
            # retire once idle and either the function's own instances cover what is wanted or nothing is
            st.bridge_misses = st.bridge_misses + 1 if s is None else 0
            if st.bridge_misses >= 3 or (s is not None and not bridge_busy
                                         and (len(ready) >= max(1, st.scaler.wanted) or st.scaler.wanted == 0)):
                await self._retire(st)
                self.queue.add(key)
        st.seen_invocations = seen
        st.in_flight = in_flight
        st.scaler.record(self.now(), in_flight + st.held, active or st.held > 0)
        before = st.scaler.wanted
        want = st.scaler.desired(self.now(), len(ready) + (1 if st.bridge is not None else 0))
        fn = self.fn_inf.get(key)
        if want != before or (fn and (fn.get("status") or {}).get("inFlight") != in_flight + st.held):
            self.queue.add(key)

    # ---------------------------------------------------------------- the activator
    async def _ensure_activator(self, key: str, st: State) -> None:
        if st.activator is not None:
            return
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", functools.partial(self._activate, key))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        st.activator = runner
        st.activator_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def wait_ready_instance(self, key: str, deadline: float,
                                  later: Callable[[Callable[[], Any]], None] | None = None,
                                  first: FirstCall | None = None) -> Obj | None:
        """A ready instance of the function, asking for one when there is none (held ≤ deadline).
        ``later`` takes what can wait until the held request is answered (API writes that would
        otherwise compete with it on this loop and the API server's); ``first``, the held request,
        travels with a warm worker's specialise call and comes back answered in ``first.answer``."""
        st = self.state.get(key)
        if st is None:
            return None
        defer = later or (lambda f: f())
        st.held += 1
        try:
            cold = not self.ready_pods(key) and st.bridge is None
            if cold:
                st.cold_starts += 1
                st.scaler.record(self.now(), st.held, True)
                st.scaler.desired(self.now(), 0)
                if not self._pool_ready():  # no warm worker to take: an instance of its own, now
                    self.queue.add(key)
                    cold = False
            end = time.monotonic() + deadline
            while True:
                pods = self.ready_pods(key) or await self._answering_pods(key)
                if pods:
                    st.rr += 1
                    return pods[st.rr % len(pods)]
                if st.bridge is not None:
                    return st.bridge
                starting = [p for p in self._pods_of(key) if not p["metadata"].get("deletionTimestamp")]
                if not st.claiming and not starting:  # an instance of its own on the way is waited for
                    st.claiming = True
                    try:
                        st.bridge = await self._claim_worker(key, defer, first)
                    finally:
                        st.claiming = False
                    if st.bridge is not None:
                        st.warm_starts += 1
                        defer(lambda: self.queue.add(key))  # status; the Deployment wants one fewer
                        return st.bridge
                if cold:  # no warm worker after all
                    self.queue.add(key)
                    cold = False
                left = end - time.monotonic()
                if left <= 0:
                    return None
                st.ready_event.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(st.ready_event.wait(), min(left, 0.05))
        finally:
            st.held -= 1

    # ---------------------------------------------------------------- the warm pool
    async def _ensure_pool(self) -> None:
        """Generic workers in kube-system, one per node, while any Function exists (none in a
        cluster without one)."""
        want = bool(self.pool_size and self.fn_inf.list())
        if want == self._pool_applied:
            return
        if self._pool_applied is None:  # first pass: specialised workers of a previous run serve no one now
            for pod in self.worker_inf.list():
                if (pod["metadata"].get("labels") or {}).get(BRIDGE_LABEL):
                    await self.client.delete(PODS, POOL_NS, pod["metadata"]["name"])
            if await self.client.get_or_none(DEPLOYMENTS, POOL_NS, POOL_NAME) is not None:
                await self.client.delete(DEPLOYMENTS, POOL_NS, POOL_NAME)  # the pool of older versions
        have = await self.client.get_or_none(DAEMONSETS, POOL_NS, POOL_NAME)
        if have is None and want:
            await self.client.create(DAEMONSETS, pool_daemonset())
        elif have is not None and not want:
            await self.client.delete(DAEMONSETS, POOL_NS, POOL_NAME)
        self._pool_applied = want

    def _pool_ready(self) -> list[Obj]:
        return sorted((p for p in self.worker_inf.list()
                       if (p["metadata"].get("labels") or {}).get(POOL_LABEL) == "true" and is_ready(p)
                       and p["metadata"]["name"] not in self._claimed
                       and not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("podIP")),
                      key=lambda p: p["metadata"]["name"])

    async def _claim_worker(self, key: str, later: Callable[[Callable[[], Any]], None],
                            first: FirstCall | None = None) -> Obj | None:
        """Take a generic worker out of the pool (its DaemonSet makes a new one) and give it this
        function's code; None when none is ready or the function cannot run on one."""
        fn = self.fn_inf.get(key)
        if fn is None or not self.pool_size:
            return None
        archive = None
        packed = files_configmap(fn.get("spec") or {})
        if packed:
            cm = await self.client.get_or_none(CONFIGMAPS, split_key(key)[0], packed)
            archive = ((cm or {}).get("binaryData") or {}).get(FILES_KEY)
        payload = specialize_env(fn, archive)
        if payload is None:
            return None
        assert self._session is not None
        ns, name = split_key(key)
        for pod in self._pool_ready():
            # the worker's own answer is the claim: it takes one function and refuses (409) any
            # other, so the API write that takes it out of the pool comes after the answer
            pod_name = pod["metadata"]["name"]
            try:
                body = {"env": payload, "request": first.request} if first is not None else payload
                async with self._session.post(f"http://{pod['status']['podIP']}:{INVOKER_PORT}/_sendo/specialize",
                                              data=orjson.dumps(body),
                                              timeout=aiohttp.ClientTimeout(total=first.timeout if first else 30)) as r:
                    if r.headers.get(SPECIALIZED_HEADER) == "1":
                        if first is not None:  # the function's own answer to the held request
                            first.answer = (r.status, {k: v for k, v in r.headers.items()
                                                       if k.lower() not in HOP_BY_HOP and k.lower() != SPECIALIZED_HEADER.lower()},
                                            await r.read())
                        log.info("function %s: warm worker %s specialised", key, pod_name)
                        self._claimed.add(pod_name)
                        st = self.state.get(key)
                        if st is not None:
                            st.bridge_version = payload.get("FUNCTION_VERSION", "")
                        later(lambda: self._spawn(self._take_from_pool(pod_name, f"{ns}.{name}")))
                        return pod
                    if r.status == 409:  # taken by an earlier claim whose write is not seen yet
                        continue
                    log.warning("function %s: worker %s refused to specialise: %s", key, pod_name,
                                (await r.text()).strip())
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("function %s: worker %s: %s", key, pod_name, e)
                if first is not None:  # it may have run: answered, never sent again
                    first.answer = (502, {}, f"the warm worker did not answer: {e}\n".encode())
            with contextlib.suppress(ApiError):
                await self.client.delete(PODS, POOL_NS, pod_name)
            return None
        return None

    async def _take_from_pool(self, pod_name: str, bridge: str) -> None:
        """Label a specialised worker as the function's and take it from the pool's ReplicaSet,
        which then starts a replacement."""
        try:
            await self.client.patch(PODS, POOL_NS, pod_name, {"metadata": {
                "labels": {POOL_LABEL: None, BRIDGE_LABEL: bridge}, "ownerReferences": []}})
        except ApiError as e:
            log.warning("function: taking worker %s from the pool: %s", pod_name, e)
        finally:
            self._claimed.discard(pod_name)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retire(self, st: State) -> None:
        bridge, st.bridge, st.bridge_misses = st.bridge, None, 0
        if bridge is not None:
            with contextlib.suppress(ApiError):
                await self.client.delete(PODS, POOL_NS, bridge["metadata"]["name"])

    async def _answering_pods(self, key: str) -> list[Obj]:
        """Started instances whose invoker answers, before the kubelet's next readiness probe says so
        (the probe runs once a second; a held request need not wait for it)."""
        started = [p for p in self._pods_of(key) if (p.get("status") or {}).get("podIP")
                   and not p["metadata"].get("deletionTimestamp")]
        stats = await asyncio.gather(*(self._stats(p, timeout=0.5) for p in started))
        return [p for p, s in zip(started, stats) if s is not None]

    async def _activate(self, key: str, request: web.Request) -> web.StreamResponse:
        deferred: list[Callable[[], Any]] = []
        try:
            resp = await self._forward(key, request, deferred.append)
            await resp.prepare(request)
            await resp.write_eof()
            return resp
        finally:  # the API writes a cold start causes go out once it is answered
            for f in deferred:
                f()

    async def _forward(self, key: str, request: web.Request,
                       later: Callable[[Callable[[], Any]], None]) -> web.Response:
        body = await request.read()
        headers = {str(k): v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        fn = self.fn_inf.get(key) or {}
        timeout = float((fn.get("spec") or {}).get("timeoutSeconds") or 30) + 10
        first = FirstCall({"method": request.method, "path": request.path,
                           "query": {str(k): v for k, v in request.query.items()},
                           "headers": headers, "body": base64.b64encode(body).decode()}, timeout)
        pod = await self.wait_ready_instance(key, HOLD_DEADLINE, later, first)
        if first.answer is not None:  # a warm worker took it with the function's code: one round trip
            status, out, data = first.answer
            return web.Response(status=status, body=data, headers=out)
        if pod is None:
            return web.Response(status=503, text="no instance of the function became ready in time\n")
        assert self._session is not None
        try:
            async with self._session.request(request.method, f"http://{pod['status']['podIP']}:{INVOKER_PORT}"
                                             f"{request.path_qs}", data=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                data = await r.read()
                out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=r.status, body=data, headers=out)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return web.Response(status=502, text=f"the function's instance did not answer: {e}\n")

    # ---------------------------------------------------------------- triggers
    def _ensure_triggers(self, key: str, fn: Obj, st: State) -> None:
        wanted: dict[str, Callable[[], Any]] = {}
        for i, t in enumerate((fn.get("spec") or {}).get("triggers") or []):
            if not isinstance(t, dict):
                continue
            ident = f"{i}:{orjson.dumps(t, option=orjson.OPT_SORT_KEYS).decode()}"
            if "cron" in t:
                wanted[ident] = lambda i=i, t=t: self._run_cron(key, i, t)
            elif "event" in t:
                wanted[ident] = lambda i=i, t=t: self._run_events(key, i, t)
        for ident in list(st.triggers):
            if ident not in wanted or st.triggers[ident].done():
                st.triggers.pop(ident).cancel()
        for ident, make in wanted.items():
            if ident not in st.triggers:
                st.triggers[ident] = asyncio.create_task(make(), name=f"function-trigger {key} {ident[:40]}")

    async def invoke_event(self, key: str, event: Obj, trigger: str, retries: int) -> bool:
        """POST a CloudEvent to an instance, retried with back-off; False once given up."""
        assert self._session is not None
        st = self.state.get(key)
        fn = self.fn_inf.get(key) or {}
        timeout = float((fn.get("spec") or {}).get("timeoutSeconds") or 30) + 5
        why = ""
        for attempt, delay in enumerate([0.0, *backoff_delays(retries)]):
            await asyncio.sleep(delay)
            pod = await self.wait_ready_instance(key, HOLD_DEADLINE)
            if pod is None:
                why = "no instance became ready"
                continue
            try:
                async with self._session.post(f"http://{pod['status']['podIP']}:{INVOKER_PORT}/_sendo/event",
                                              data=orjson.dumps(event), timeout=aiohttp.ClientTimeout(total=timeout),
                                              headers={"Content-Type": "application/cloudevents+json"}) as r:
                    await r.read()
                    if r.status < 400:
                        if st:
                            st.invoked[f"{trigger}/ok"] = st.invoked.get(f"{trigger}/ok", 0) + 1
                        return True
                    why = f"HTTP {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                why = str(e) or type(e).__name__
            log.info("function %s: %s invocation %s attempt %d failed: %s", key, trigger, event.get("id"),
                     attempt + 1, why)
        if st:
            st.invoked[f"{trigger}/failed"] = st.invoked.get(f"{trigger}/failed", 0) + 1
        if fn:
            self.recorder.emit({"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function", **fn}, "Warning",
                               "InvocationFailed", f"{trigger} event {event.get('id')} given up after "
                               f"{retries + 1} attempts: {why}")
            failed = int((fn.get("status") or {}).get("failedInvocations") or 0) + 1
            ns, name = split_key(key)
            await self._patch_status(ns or "", name, {"failedInvocations": failed})
        return False

    async def _run_cron(self, key: str, index: int, trigger: Obj) -> None:
        cron = trigger["cron"]
        ns, name = split_key(key)
        tz = zoneinfo.ZoneInfo(cron["timeZone"]) if cron.get("timeZone") else dt.timezone.utc
        schedule = Schedule(cron["schedule"], tz)
        retries = int(trigger.get("retries", DEFAULT_RETRIES))
        while True:
            fn = self.fn_inf.get(key)
            if fn is None:
                return
            last_text = ((fn.get("status") or {}).get("cron") or {}).get(str(index))
            last = parse_timestamp(last_text) or parse_timestamp(fn["metadata"].get("creationTimestamp")) or _utcnow()
            now = _utcnow()
            tick, _missed = unmet_time(schedule, last, now)
            if tick is not None:
                await self.invoke_event(key, cron_event(ns or "", name, cron["schedule"], tick), "cron", retries)
                await self._patch_status(ns or "", name, {"cron": {str(index): rfc3339(tick)}})
                await self._wait_status(key, lambda s: (s.get("cron") or {}).get(str(index)) == rfc3339(tick))
                continue
            wait = (schedule.next_after(max(last, now)) - now).total_seconds()
            await asyncio.sleep(max(0.05, min(wait, 60.0)))

    async def _wait_status(self, key: str, ok: Callable[[Obj], bool], deadline: float = 10.0) -> None:
        """Until the informer shows our own status write (so the next read is not stale)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            fn = self.fn_inf.get(key)
            if fn is None or ok(fn.get("status") or {}):
                return
            await asyncio.sleep(0.05)

    async def _run_events(self, key: str, index: int, trigger: Obj) -> None:
        ev = trigger["event"]
        ns, name = split_key(key)
        api_version = ev.get("apiVersion") or "v1"
        r, told = None, False
        while r is None:  # a custom kind may be served only later (its CRD applied after the function)
            r = await self.resolve_kind(api_version, ev["kind"])
            if r is None:
                fn = self.fn_inf.get(key)
                if fn is None:
                    return
                if not told:
                    self.recorder.emit({"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function", **fn},
                                       "Warning", "UnknownKind", f"event trigger {index}: the API serves no kind "
                                       f"{ev['kind']} in {api_version} (yet); looking again every 5 s")
                    told = True
                await asyncio.sleep(5.0)
        types = set(ev.get("types") or ["ADDED", "MODIFIED", "DELETED"])
        retries = int(trigger.get("retries", DEFAULT_RETRIES))
        watch_ns = ev.get("namespace") if r.namespaced else None
        source = f"/apis/{r.group}/{r.version}/{r.plural}" if r.group else f"/api/{r.version}/{r.plural}"
        while True:
            fn = self.fn_inf.get(key)
            if fn is None:
                return
            rv = ((fn.get("status") or {}).get("eventResourceVersions") or {}).get(str(index))
            try:
                if not rv:
                    lst = await self.client.list(r, watch_ns, labelSelector=ev.get("labelSelector"), limit=1)
                    rv = lst["metadata"]["resourceVersion"]
                    await self._mark(key, index, rv)
                async for typ, obj in self.client.watch(r, watch_ns, resourceVersion=rv,
                                                        labelSelector=ev.get("labelSelector"),
                                                        allowWatchBookmarks=True):
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if typ in types:
                        await self.invoke_event(key, cluster_event(typ, obj, source), "event", retries)
                    if new_rv:
                        rv = new_rv
                        await self._mark(key, index, rv)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status == 410:  # compacted past our bookmark: start again from now, say so
                    log.warning("function %s: event trigger %d: resourceVersion %s expired", key, index, rv)
                    fn = self.fn_inf.get(key)
                    if fn:
                        self.recorder.emit({"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function", **fn},
                                           "Warning", "EventsExpired",
                                           f"event trigger {index}: resumed from now; events after {rv} were compacted")
                    await self._mark(key, index, "")
                else:
                    log.warning("function %s: event trigger %d: %s", key, index, e)
                    await asyncio.sleep(1.0)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("function %s: event trigger %d: watch broke: %s", key, index, e)
                await asyncio.sleep(1.0)

    async def resolve_kind(self, api_version: str, kind_name: str) -> Resource | None:
        """The resource of a kind: a built-in one, else what discovery says the API serves (a
        CustomResourceDefinition's kind, an aggregated API's); None when nothing serves it now."""
        r = self.kinds.by_kind(api_version, kind_name)
        if r is not None:
            return r
        group, _, version = api_version.rpartition("/")
        try:
            doc = await self.client.request("GET", f"/apis/{api_version}" if group else f"/api/{api_version}")
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError):
            return None
        for res in (doc or {}).get("resources") or []:
            if res.get("kind") == kind_name and "/" not in res.get("name", "") and "watch" in (res.get("verbs") or []):
                return Resource(group, version, kind_name, res["name"], bool(res.get("namespaced")), custom=True)
        return None

    async def _mark(self, key: str, index: int, rv: str) -> None:
        ns, name = split_key(key)
        await self._patch_status(ns or "", name, {"eventResourceVersions": {str(index): rv}})
        await self._wait_status(key, lambda s: (s.get("eventResourceVersions") or {}).get(str(index)) == rv)

    # ---------------------------------------------------------------- metrics
    def collectors(self) -> list[Any]:
        return [_FunctionCollector(self)]


class _FunctionCollector:
    def __init__(self, c: FunctionController):
        self.c = c

    def collect(self):
        labels = ["namespace", "function"]
        g_inflight = GaugeMetricFamily("sendo_function_in_flight", "Invocations running or queued, held included",
                                       labels=labels)
        g_held = GaugeMetricFamily("sendo_function_activator_held", "Requests the activator holds", labels=labels)
        g_ready = GaugeMetricFamily("sendo_function_ready_instances", "Ready instances", labels=labels)
        g_want = GaugeMetricFamily("sendo_function_desired_instances", "Instances the autoscaler wants",
                                   labels=labels)
        c_cold = CounterMetricFamily("sendo_function_cold_starts", "Requests that found no ready instance",
                                     labels=labels)
        c_warm = CounterMetricFamily("sendo_function_warm_starts", "Cold starts served by a warm-pool worker",
                                     labels=labels)
        c_trig = CounterMetricFamily("sendo_function_trigger_invocations", "Cron and event invocations by outcome",
                                     labels=labels + ["trigger", "outcome"])
        for key, st in list(self.c.state.items()):
            ns, name = split_key(key)
            lv = [ns or "", name]
            g_inflight.add_metric(lv, st.in_flight + st.held)
            g_held.add_metric(lv, st.held)
            g_ready.add_metric(lv, len(self.c.ready_pods(key)))
            g_want.add_metric(lv, st.scaler.wanted)
            c_cold.add_metric(lv, st.cold_starts)
            c_warm.add_metric(lv, st.warm_starts)
            for k, n in st.invoked.items():
                trig, _, outcome = k.partition("/")
                c_trig.add_metric(lv + [trig, outcome], n)
        yield from (g_inflight, g_held, g_ready, g_want, c_cold, c_warm, c_trig)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)

