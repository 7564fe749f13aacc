"""Values an add-on's templates need that come from the cluster, not from its config.

A generator is a pure function ``(values, facts) -> value``: ``values`` are the add-on's
options (defaults and config), ``facts`` what the add-on controller found in the cluster
(``components``: every sendo component's metrics endpoint; ``python``: the interpreter
sendo runs under). Entries name generators in their ``generate`` map; ``FACTS`` says
which facts each one reads, so the controller gathers only those.
"""
from __future__ import annotations

from typing import Any, Callable

import yaml

Obj = dict[str, Any]


def _target(c: Obj) -> str:
    host = str(c["host"])
    return f"[{host}]:{c['port']}" if ":" in host else f"{host}:{c['port']}"


def prometheus_scrape_config(values: Obj, facts: Obj) -> str:
    """prometheus.yml with one job per kind of component and one target per endpoint.

    The API server's /metrics wants a bearer token and speaks TLS with the cluster CA;
    the agents' want the node token over plain HTTP; the controllers' is open HTTP on
    loopback. Which files hold the token and CA is the add-on's config: Prometheus
    reads them where it runs."""
    jobs: dict[str, list[Obj]] = {}
    for c in sorted(facts.get("components") or [], key=lambda c: (c["component"], c.get("node") or "", _target(c))):
        jobs.setdefault(c["component"], []).append(c)
    scrape_configs = []
    auth = {"apiserver": {"authorization": {"credentials_file": values["apiTokenFile"]},
                          "tls_config": {"ca_file": values["caFile"]}},
            "agent": {"authorization": {"credentials_file": values["nodeTokenFile"]}}}
    for component, found in sorted(jobs.items()):
        targets = []
        for c in found:
            labels = {"component": component, **({"node": c["node"]} if c.get("node") else {})}
            targets.append({"targets": [_target(c)], "labels": labels})
        job = {"job_name": f"{values['jobPrefix']}{component}", "scheme": found[0]["scheme"],
               "metrics_path": "/metrics", **auth.get(component, {}), "static_configs": targets}
        scrape_configs.append(job)
        if component == "agent" and values.get("resourceMetrics"):  # the kubelet-style usage figures
            scrape_configs.append({**job, "job_name": f"{values['jobPrefix']}agent-resource",
                                   "metrics_path": "/metrics/resource"})
    doc = {"global": {"scrape_interval": values["scrapeInterval"]}, "scrape_configs": scrape_configs}
    return yaml.safe_dump(doc, sort_keys=False)


def log_shipper_command(values: Obj, facts: Obj) -> list[str]:
    """The shipper's argv (``sendo.addons.logship``, run by the process runtime)."""
    argv = [str(facts["python"]), "-m", "sendo.addons.logship"]
    if values.get("file"):
        argv += ["--file", str(values["file"])]
    if values.get("url"):
        argv += ["--url", str(values["url"])]
    for ns in values.get("namespaces") or []:
        argv += ["--namespace", ns]
    return argv


GENERATORS: dict[str, Callable[[Obj, Obj], Any]] = {
    "prometheus-scrape-config": prometheus_scrape_config,
    "log-shipper-command": log_shipper_command,
}
FACTS: dict[str, frozenset[str]] = {
    "prometheus-scrape-config": frozenset({"components"}),
    "log-shipper-command": frozenset({"python"}),
}
