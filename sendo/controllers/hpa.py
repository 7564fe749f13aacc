"""HorizontalPodAutoscaler: every sync period, read the target's scale subresource and its
pods' usage (metrics.k8s.io), compute the replicas Kubernetes' algorithm would, bound the
change by `behavior`, write the scale, and report status, conditions and Events.

The algorithm is Kubernetes' replica calculator:

* ratio = (sum of the ready pods' usage / sum of their requests) / target utilization
  (or average usage / target averageValue); within the tolerance (0.1) of 1 nothing
  changes; otherwise ceil(ratio * pods with metrics);
* pods without metrics count as using 100 % of their request when scaling down and 0 %
  when scaling up, not-ready pods as 0 % when scaling up (so a scale-up is never made
  larger by pods that are still starting); if that flips the direction, nothing changes;
* several metrics: the largest proposal wins;
* stabilization: the proposal is held between the lowest recommendation of the scale-up
  window and the highest of the scale-down window;
* rate: the policies of the direction limit how many replicas may be added or removed
  within their period, counted from the scale events this controller made (selectPolicy
  Max takes the policy allowing the largest change, Min the smallest, Disabled none);
* finally minReplicas..maxReplicas.

The pure functions below are the algorithm; `HPAController` is the loop around it.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from ..client import ApiError, kind
from ..client.events import EventRecorder
from ..kinds.autoscaling import effective_behavior
from ..kinds.meta import SelectorError, make_filter, now_rfc3339, set_status_condition
from ..kinds.quantity import QuantityError, parse_quantity
from .base import Controller, split_key

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DEFAULT_SYNC_PERIOD = 15.0
TOLERANCE = 0.1
METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"


# ============================================================================ the algorithm

@dataclass
class PodSample:
    """A pod matched by the target's selector, with its request and usage of one resource."""

    name: str
    ready: bool
    request: float | None  # sum over containers, in the resource's unit (cores or bytes); None if any lacks one
    usage: float | None  # None: no metrics for this pod


def replicas_for_utilization(current: int, pods: list[PodSample], target_percent: int,
                             tolerance: float = TOLERANCE) -> tuple[int, int]:
    """(proposed replicas, current utilization %) for a Utilization target; ValueError if
    no pod has metrics or a pod lacks a request."""
    return _replicas(current, pods, target_percent / 100.0, tolerance, utilization=True)


def replicas_for_average(current: int, pods: list[PodSample], target_value: float,
                         tolerance: float = TOLERANCE) -> tuple[int, float]:
    """(proposed replicas, current average usage) for an AverageValue target."""
    return _replicas(current, pods, target_value, tolerance, utilization=False)


def _replicas(current: int, pods: list[PodSample], target: float, tolerance: float,
              utilization: bool) -> tuple[int, Any]:
    with_metrics = [p for p in pods if p.usage is not None]
    if not with_metrics:
        raise ValueError("did not receive metrics for targeted pods (pods might be unready)")
    if utilization and any(p.request is None or p.request <= 0 for p in pods):
        missing = next(p.name for p in pods if p.request is None or p.request <= 0)
        raise ValueError(f"missing request for the resource on pod {missing}")
    ready = [p for p in with_metrics if p.ready]
    unready = [p for p in with_metrics if not p.ready]
    missing = [p for p in pods if p.usage is None]
    basis = ready or with_metrics  # every pod unready: use them rather than nothing

    def ratio_of(group: list[PodSample], extra_usage: float = 0.0, extra_request: float = 0.0,
                 extra_pods: int = 0) -> float:
        usage = sum(p.usage or 0.0 for p in group) + extra_usage
        if utilization:
            request = sum(p.request or 0.0 for p in group) + extra_request
            return (usage / request) / target
        return (usage / (len(group) + extra_pods)) / target

    ratio = ratio_of(basis)
    shown = _shown(basis, utilization)
    if not missing and (not unready or basis is with_metrics):
        if abs(1.0 - ratio) <= tolerance:
            return current, shown
        return math.ceil(ratio * len(basis)), shown
    # fill in the pods we know nothing about, against the direction of the change
    extra_usage = extra_request = 0.0
    extra_pods = 0
    if ratio < 1.0:  # scaling down: missing pods use all of their request (or the target)
        for p in missing:
            extra_usage += (p.request or 0.0) if utilization else target
            extra_request += p.request or 0.0
            extra_pods += 1
    else:  # scaling up: missing and unready pods use nothing
        for p in missing + (unready if basis is ready else []):
            extra_request += p.request or 0.0
            extra_pods += 1
    new_ratio = ratio_of(basis, extra_usage, extra_request, extra_pods)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0) != (new_ratio < 1.0):
        return current, shown
    proposed = math.ceil(new_ratio * (len(basis) + extra_pods))
    if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
        return current, shown
    return proposed, shown


def _shown(pods: list[PodSample], utilization: bool) -> Any:
    usage = sum(p.usage or 0.0 for p in pods)
    if utilization:
        request = sum(p.request or 0.0 for p in pods)
        return int(usage * 100 / request) if request else 0
    return usage / len(pods)


@dataclass
class History:
    """What one HPA remembers between syncs (as the Kubernetes controller does, in memory)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)  # (time, proposed replicas)
    scale_up: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas added)
    scale_down: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas removed)


def stabilize(history: History, now: float, current: int, proposed: int, behavior: Obj) -> tuple[int, str]:
    """The proposal held within the stabilization windows; records it. (replicas, reason)"""
    up_window = behavior["scaleUp"]["stabilizationWindowSeconds"]
    down_window = behavior["scaleDown"]["stabilizationWindowSeconds"]
    up, down = proposed, proposed
    for at, rec in history.recommendations:
        if at > now - up_window:
            up = min(up, rec)
        if at > now - down_window:
            down = max(down, rec)
    result, reason = current, "ScaleUpStabilized" if proposed > current else "ScaleDownStabilized"
    if result < up:
        result = up
    if result > down:
        result = down
    if result == proposed:
        reason = "ReadyForNewScale"
    keep = max(up_window, down_window)
    history.recommendations = [(at, r) for at, r in history.recommendations if at > now - keep]
    history.recommendations.append((now, proposed))
    return result, reason


def _changed_within(events: list[tuple[float, int]], now: float, period: float) -> int:
    return sum(n for at, n in events if at > now - period)


def _limit(current: int, history: History, now: float, rules: Obj, up: bool) -> int:
    """The most replicas (up) or the fewest (down) the rules allow now: each policy allows
    a change counted from the replicas at the start of its period (what this controller's
    scale events within the period changed); selectPolicy Max takes the policy allowing the
    largest change, Min the smallest, Disabled none."""
    if rules.get("selectPolicy") == "Disabled":
        return current
    largest_change = rules.get("selectPolicy") != "Min"
    pick = max if largest_change == up else min
    proposals = []
    for pol in rules.get("policies") or []:
        period = pol["periodSeconds"]
        start = current - _changed_within(history.scale_up, now, period) + \
            _changed_within(history.scale_down, now, period)
        if pol["type"] == "Pods":
            proposals.append(start + pol["value"] if up else start - pol["value"])
        elif up:
            proposals.append(math.ceil(start * (1 + pol["value"] / 100.0)))
        else:
            proposals.append(int(start * (1 - pol["value"] / 100.0)))
    return pick(proposals) if proposals else current


def scale_up_limit(current: int, history: History, now: float, rules: Obj) -> int:
    return _limit(current, history, now, rules, up=True)


def scale_down_limit(current: int, history: History, now: float, rules: Obj) -> int:
    return _limit(current, history, now, rules, up=False)


def bound(history: History, now: float, current: int, desired: int, low: int, high: int,
          behavior: Obj) -> tuple[int, str, str]:
    """desired limited by the scaling policies and by min/max: (replicas, reason, message)
    for the ScalingLimited condition (reason DesiredWithinRange when nothing limited it)."""
    if desired > current:
        limit = max(scale_up_limit(current, history, now, behavior["scaleUp"]), current)
        if limit < high and desired > limit:
            return limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum " \
                "scale rate"
        if desired > high:
            return high, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    elif desired < current:
        limit = min(scale_down_limit(current, history, now, behavior["scaleDown"]), current)
        if limit > low and desired < limit:
            return limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum " \
                "scale rate"
        if desired < low:
            return low, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > high:
        return high, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    if desired < low:
        return low, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def record_scale(history: History, now: float, current: int, new: int, behavior: Obj) -> None:
    longest = max([p["periodSeconds"] for r in behavior.values() for p in r.get("policies") or []] or [0])
    if new > current:
        history.scale_up.append((now, new - current))
    elif new < current:
        history.scale_down.append((now, current - new))
    history.scale_up = [(t, n) for t, n in history.scale_up if t > now - longest]
    history.scale_down = [(t, n) for t, n in history.scale_down if t > now - longest]


# ============================================================================ pods and usage

def _cpu_or_bytes(resource: str, q: Any) -> float:
    """A quantity as cores (cpu) or bytes (anything else)."""
    return float(parse_quantity(q))


def pod_samples(pods: list[Obj], metrics: dict[str, Obj], resource: str, container: str | None = None) \
        -> list[PodSample]:
    """The pods that count (not deleted, not failed or succeeded) with their request and usage."""
    out = []
    for p in pods:
        meta, spec, status = p["metadata"], p.get("spec") or {}, p.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Failed", "Succeeded"):
            continue
        request: float | None = 0.0
        for c in spec.get("containers") or []:
            if container is not None and c.get("name") != container:
                continue
            q = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if q is None:
                request = None
                break
            try:
                request += _cpu_or_bytes(resource, q)  # type: ignore[operator]
            except QuantityError:
                request = None
                break
        ready = status.get("phase") == "Running" and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        usage = None
        m = metrics.get(meta["name"])
        if m is not None:
            usage = 0.0
            for c in m.get("containers") or []:
                if container is not None and c.get("name") != container:
                    continue
                q = (c.get("usage") or {}).get(resource)
                if q is not None:
                    usage += _cpu_or_bytes(resource, q)
        out.append(PodSample(meta["name"], ready, request, usage))
    return out


def format_average(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{math.ceil(value * 1000)}m"
    return str(int(value))


# ============================================================================ the loop

def set_condition(status: Obj, typ: str, value: bool, reason: str, message: str) -> None:
    set_status_condition(status, typ, "True" if value else "False", reason, message)


class HPAController(Controller):
    name = "horizontalpodautoscaling"
    workers = 2

    def __init__(self, client, informers, *, sync_period: float = DEFAULT_SYNC_PERIOD,
                 tolerance: float = TOLERANCE):
        self.sync_period = sync_period
        self.tolerance = tolerance
        self.history: dict[str, History] = {}
        self._plurals: dict[tuple[str, str], str] = {}  # (apiVersion, kind) -> plural, from discovery
        super().__init__(client, informers)

    def setup(self) -> None:
        self.r = kind("horizontalpodautoscalers", "autoscaling", "v2")
        self.hpas = self.informers.get(self.r)
        self.hpas.add_handler(self._on_hpa)
        self.pods = self.informers.get(kind("pods"))
        self.recorder = EventRecorder(self.client, "horizontal-pod-autoscaler")

    async def start(self) -> None:
        await self.informers.start(self.hpas, self.pods)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def _on_hpa(self, typ: str, hpa: Obj, old: Obj | None) -> None:
        if typ == "DELETED":
            self.history.pop(f"{hpa['metadata']['namespace']}/{hpa['metadata']['name']}", None)
            return
        if old is None or old.get("spec") != hpa.get("spec"):
            self.enqueue(hpa)

    async def _plural(self, api_version: str, kind_name: str) -> str:
        """The resource a scaleTargetRef names, found through discovery (custom resources too)."""
        key = (api_version, kind_name)
        if key not in self._plurals:
            url = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            doc = await self.client.request("GET", url)
            for res in doc.get("resources") or []:
                if "/" not in res["name"]:
                    self._plurals[(api_version, res["kind"])] = res["name"]
            if key not in self._plurals:
                raise LookupError(f"no resource of kind {kind_name} in {api_version}")
        return self._plurals[key]

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        hpa = self.hpas.get(key)
        if hpa is None:
            self.history.pop(key, None)
            return None
        await self._sync(ns or "default", name, hpa)
        return self.sync_period

    async def _sync(self, ns: str, name: str, hpa: Obj) -> None:
        spec = hpa.get("spec") or {}
        status: Obj = {k: v for k, v in (hpa.get("status") or {}).items() if k != "currentMetrics"}
        status["conditions"] = [dict(c) for c in status.get("conditions") or []]
        ref = spec.get("scaleTargetRef") or {}
        ref_text = f"{ref.get('kind')}/{ref.get('name')}"
        try:
            plural = await self._plural(ref.get("apiVersion") or "v1", ref.get("kind", ""))
            scale_url = self._scale_url(ref.get("apiVersion") or "v1", plural, ns, ref["name"])
            scale = await self.client.request("GET", scale_url)
        except (ApiError, LookupError) as e:
            msg = f"the HPA controller was unable to get the target's current scale: {e}"
            set_condition(status, "AbleToScale", False, "FailedGetScale", msg)
            self.recorder.emit(hpa, "Warning", "FailedGetScale", str(e))
            await self._write_status(hpa, status)
            return
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        low, high = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        status["currentReplicas"] = int((scale.get("status") or {}).get("replicas") or 0)
        behavior = effective_behavior(spec)
        history = self.history.setdefault(f"{ns}/{name}", History())
        now = time.monotonic()
        metric_reason = ""
        current_metrics: list[Obj] = []
        if current == 0 and low != 0:
            desired = 0
            set_condition(status, "ScalingActive", False, "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero")
        else:
            proposed, current_metrics, metric_reason, error = await self._propose(ns, hpa, scale, current)
            if error is not None:
                reason, msg = error
                set_condition(status, "AbleToScale", True, "SucceededGetScale",
                              "the HPA controller was able to get the target's current scale")
                set_condition(status, "ScalingActive", False, reason, msg)
                self.recorder.emit(hpa, "Warning", reason, msg)
                if current_metrics:
                    status["currentMetrics"] = current_metrics
                if low <= current <= high:  # nothing to compute from: leave the scale alone
                    status["desiredReplicas"] = current
                    await self._write_status(hpa, status)
                    return
                proposed = current
            else:
                set_condition(status, "ScalingActive", True, "ValidMetricFound",
                              f"the HPA was able to successfully calculate a replica count from {metric_reason}")
            stabilized, stab_reason = stabilize(history, now, current, proposed, behavior)
            desired, limit_reason, limit_msg = bound(history, now, current, stabilized, low, high, behavior)
            set_condition(status, "ScalingLimited", limit_reason != "DesiredWithinRange", limit_reason, limit_msg)
            if desired == current:
                msg = "recommended size matches current size" if stab_reason == "ReadyForNewScale" else \
                    "recent recommendations were " + ("lower" if stab_reason == "ScaleUpStabilized" else "higher") + \
                    " than current one, applying the " + ("lowest" if stab_reason == "ScaleUpStabilized"
                                                          else "highest") + " recent recommendation"
                set_condition(status, "AbleToScale", True, stab_reason if stab_reason != "ReadyForNewScale"
                              else "ReadyForNewScale", msg)
        if desired != current:
            try:
                await self.client.request("PATCH", scale_url, body={"spec": {"replicas": desired}},
                                          content_type="application/merge-patch+json")
            except ApiError as e:
                set_condition(status, "AbleToScale", False, "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e}")
                self.recorder.emit(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {e}")
                await self._write_status(hpa, status)
                return
            record_scale(history, now, current, desired, behavior)
            why = (f"{metric_reason} above target" if desired > current else
                   "All metrics below target") if metric_reason else "Current number of replicas out of range"
            if current == 0 and low != 0:
                why = "scaling disabled"
            self.recorder.emit(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}")
            set_condition(status, "AbleToScale", True, "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}")
            status["lastScaleTime"] = now_rfc3339()
        status["desiredReplicas"] = desired
        if current_metrics:
            status["currentMetrics"] = current_metrics
        await self._write_status(hpa, status)
        log.info("hpa %s/%s (%s): current %d, desired %d", ns, name, ref_text, current, desired)

    @staticmethod
    def _scale_url(api_version: str, plural: str, ns: str, name: str) -> str:
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        return f"{base}/namespaces/{ns}/{plural}/{name}/scale"

    async def _propose(self, ns: str, hpa: Obj, scale: Obj, current: int) \
            -> tuple[int, list[Obj], str, tuple[str, str] | None]:
        """(replicas, currentMetrics, what decided, error (reason, message) or None)."""
        selector = (scale.get("status") or {}).get("selector")
        if not selector:
            return current, [], "", ("InvalidSelector", "the HPA target's scale is missing a selector")
        try:
            match = make_filter(selector, None)
        except SelectorError as e:
            return current, [], "", ("InvalidSelector", f"the HPA target's selector cannot be parsed: {e}")
        pods = [p for p in self.pods.list() if p["metadata"].get("namespace") == ns and (match is None or match(p))]
        try:
            got = await self.client.request("GET", METRICS_PATH.format(ns=ns), params={"labelSelector": selector})
        except ApiError as e:
            return current, [], "", ("FailedGetResourceMetric",
                                     f"unable to get metrics for resource: unable to fetch metrics from resource "
                                     f"metrics API: {e}")
        metrics = {m["metadata"]["name"]: m for m in got.get("items") or []}
        best, best_reason, currents, errors = -1, "", [], []
        for m in (hpa.get("spec") or {}).get("metrics") or []:
            typ = m.get("type")
            if typ not in ("Resource", "ContainerResource"):
                errors.append(("InvalidMetricSourceType", f"the {typ} metric source type is not supported by sendo "
                               "(Resource and ContainerResource are)"))
                continue
            field_ = "resource" if typ == "Resource" else "containerResource"
            source = m.get(field_) or {}
            resource, target = source.get("name"), source.get("target") or {}
            samples = pod_samples(pods, metrics, resource, source.get("container"))
            try:
                if target.get("type") == "Utilization":
                    proposal, util = replicas_for_utilization(current, samples, int(target["averageUtilization"]),
                                                              self.tolerance)
                    avg = sum(s.usage or 0 for s in samples if s.usage is not None) / \
                        max(1, sum(1 for s in samples if s.usage is not None))
                    cur = {"averageUtilization": util, "averageValue": format_average(resource, avg)}
                    reason = f"{resource} resource utilization (percentage of request)"
                else:
                    value = float(parse_quantity(target.get("averageValue")))
                    proposal, avg = replicas_for_average(current, samples, value, self.tolerance)
                    cur = {"averageValue": format_average(resource, avg)}
                    reason = f"{resource} resource"
            except (ValueError, KeyError, TypeError) as e:
                errors.append(("FailedGetResourceMetric", f"failed to get {resource} utilization: {e}"))
                continue
            entry = {"name": resource, "current": cur}
            if typ == "ContainerResource":
                entry["container"] = source.get("container")
            currents.append({"type": typ, field_: entry})
            if proposal > best:
                best, best_reason = proposal, reason
        if best < 0:
            reason, msg = errors[0] if errors else ("FailedGetResourceMetric", "no metrics")
            return current, currents, "", ("FailedGetResourceMetric" if reason != "InvalidMetricSourceType"
                                           else reason, f"the HPA was unable to compute the replica count: {msg}")
        return best, currents, best_reason, None

    async def _write_status(self, hpa: Obj, status: Obj) -> None:
        """A merge patch of the whole status (lists replaced, a field left out removed), so
        a sync never fails on a resourceVersion the cache has not caught up with."""
        status["observedGeneration"] = hpa["metadata"].get("generation")
        if status == hpa.get("status"):
            return
        body = {**status, **{k: None for k in (hpa.get("status") or {}) if k not in status}}
        m = hpa["metadata"]
        await self.client.patch(self.r, m["namespace"], m["name"], {"status": body}, sub="status")
