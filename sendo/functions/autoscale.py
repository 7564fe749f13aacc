"""How many instances a function wants: Knative's concurrency model (KPA), as pure maths.

Every tick the controller records the function's observed concurrency: the in-flight
invocations of all its instances plus the requests the activator holds. Then:

* target per instance = ``concurrency × targetUtilization`` (0.7);
* stable = ceil(average over the stable window (60 s) / target);
* panic = ceil(average over the panic window (6 s) / target);
* panic mode starts when the panic-window average reaches ``panicThreshold`` (2.0) times
  what the ready instances can take at target (or any demand at zero instances) and lasts
  one stable window past the last time that held; in panic the wanted count is the panic
  one and never lower than what is there (no scale down while a burst is on);
* scale to zero only after ``scaleToZeroAfterSeconds`` without any activity (no
  invocation started, none in flight, none held); until then at least one instance stays,
  and from then on the count is zero even while the windows still average older demand
  (and panic mode ends);
* the result is kept within [minScale, maxScale].
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    concurrency: int = 10
    target_utilization: float = 0.7
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    min_scale: int = 0
    max_scale: int = 10
    scale_to_zero_after: float = 60.0

    @property
    def target(self) -> float:
        return max(self.concurrency * self.target_utilization, 0.01)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Settings":
        a = spec.get("autoscaling") if isinstance(spec.get("autoscaling"), dict) else {}
        return cls(concurrency=int(spec.get("concurrency") or 10),
                   target_utilization=float(a.get("targetUtilization") or 0.7),
                   stable_window=float(a.get("stableWindowSeconds") or 60),
                   panic_window=float(a.get("panicWindowSeconds") or 6),
                   panic_threshold=float(a.get("panicThreshold") or 2.0),
                   min_scale=int(spec.get("minScale") or 0), max_scale=int(spec.get("maxScale") or 10),
                   scale_to_zero_after=float(spec.get("scaleToZeroAfterSeconds") or 60))


@dataclass
class Autoscaler:
    settings: Settings
    samples: deque = field(default_factory=deque)  # (time, observed concurrency)
    last_active: float = -math.inf
    panic_until: float = -math.inf
    wanted: int = 0

    def record(self, t: float, concurrency: float, active: bool) -> None:
        """One observation; ``active`` when anything started or ran since the last one."""
        self.samples.append((t, concurrency))
        horizon = t - max(self.settings.stable_window, self.settings.panic_window)
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        if active or concurrency > 0:
            self.last_active = t

    def _average(self, t: float, window: float) -> float:
        vals = [c for (s, c) in self.samples if s >= t - window]
        return sum(vals) / len(vals) if vals else 0.0

    def in_panic(self, t: float) -> bool:
        return t < self.panic_until

    def desired(self, t: float, ready: int) -> int:
        s = self.settings
        stable = math.ceil(self._average(t, s.stable_window) / s.target)
        panic_avg = self._average(t, s.panic_window)
        panic = math.ceil(panic_avg / s.target)
        capacity = ready * s.target
        if (capacity == 0 and panic_avg > 0) or (capacity > 0 and panic_avg / capacity >= s.panic_threshold):
            self.panic_until = t + s.stable_window
        want = max(panic, ready, self.wanted) if self.in_panic(t) else stable
        if t - self.last_active >= s.scale_to_zero_after:
            # idle that long: nothing to serve, whatever the windows still average (a user who
            # asks for zero after 10 s sees it after 10 s, not after a 60 s stable window)
            want, self.panic_until = 0, -math.inf
        elif want == 0:
            want = 1
        self.wanted = max(s.min_scale, min(s.max_scale, want))
        return self.wanted
