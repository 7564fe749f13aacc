"""Functions: the runtime pieces of sendo.dev/v1alpha1 Function (see docs/architecture.md, "Functions").

* `invoker`    — the small asyncio HTTP server each function instance runs;
* `autoscale`  — Knative's concurrency autoscaling model, as pure maths;
* `events`     — CloudEvents 1.0 dicts for cron and cluster-event invocations.
"""
