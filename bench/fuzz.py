"""Fuzz the API from its own OpenAPI documents with schemathesis; print what answered 5xx.

    python -m bench.fuzz [--requests 50000] [--seed 0]

Starts `sendo server` on loopback (a temp data dir, a free port), reads every
`/openapi/v3` group-version document, merges them into one, and sends schemathesis'
generated requests (in the namespace `default`, so that bodies reach validation) to every operation: valid ones (positive) and ones that break the
schema (negative), the same number per operation, from a fixed seed. A request must
never get a 5xx, never lose its connection and never hang (30 s). Watches and
`follow=true` log streams are not requested: an open stream is not a failure.

`tests/fuzz` runs the same at a few hundred requests inside `make test`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

STREAMS = ("watch", "follow")  # query parameters that turn a request into an open stream
# Values the server accepts for these query parameters (the documents say "string", as
# Kubernetes' do): valid requests then get past option parsing to the body.
ENUMS = {"dryRun": ["All"], "fieldValidation": ["Ignore", "Warn", "Strict"],
         "propagationPolicy": ["Orphan", "Background", "Foreground"],
         "resourceVersionMatch": ["Exact", "NotOlderThan"]}
REQUEST_TIMEOUT = 30.0


@dataclass
class Finding:
    method: str
    path: str
    status: int | str
    detail: str


@dataclass
class Report:
    sent: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    server_errors: list[Finding] = field(default_factory=list)
    dropped: list[Finding] = field(default_factory=list)
    unsendable: int = 0  # cases schemathesis could not serialise (e.g. YAML apply bodies)

    def line(self) -> str:
        classes = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_class.items()))
        return (f"{self.sent} requests ({classes}); 5xx: {len(self.server_errors)}; "
                f"dropped connections: {len(self.dropped)}; not sendable: {self.unsendable}")


def openapi(base_url: str, session: requests.Session) -> dict[str, Any]:
    """Every group-version document of /openapi/v3 merged into one."""
    root = session.get(base_url + "/openapi/v3", timeout=REQUEST_TIMEOUT).json()
    merged: dict[str, Any] = {"openapi": "3.0.0", "info": {"title": "sendo", "version": "v1"}, "paths": {},
                              "components": {"schemas": {}}}
    for entry in root["paths"].values():
        doc = session.get(base_url + entry["serverRelativeURL"], timeout=120).json()
        merged["info"] = doc["info"]
        merged["paths"].update(doc["paths"])
        merged["components"]["schemas"].update(doc["components"]["schemas"])
    for item in merged["paths"].values():
        for p in item.get("parameters", []):
            if p["name"] == "namespace":  # an existing namespace, so bodies get past routing to validation
                p["schema"] = {"type": "string", "enum": ["default"]}
        for op in item.values():  # no open streams
            if isinstance(op, dict) and isinstance(op.get("parameters"), list):
                op["parameters"] = [p for p in op["parameters"] if p.get("name") not in STREAMS]
                for p in op["parameters"]:
                    if p["name"] in ENUMS:
                        p["schema"] = {"type": "string", "enum": ENUMS[p["name"]]}
    return merged


def fuzz(base_url: str, token: str, ca_file: str, total: int, seed: int = 0,
         log: Callable[[str], None] = print) -> Report:
    """Send about `total` generated requests, spread evenly over every operation and both modes."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from schemathesis import GenerationMode

    session = requests.Session()
    session.verify = ca_file
    session.trust_env = False  # loopback only: never a proxy
    session.headers["Authorization"] = f"Bearer {token}"
    schema = schemathesis.openapi.from_dict(openapi(base_url, session))
    ops = [r.ok() for r in schema.get_all_operations()]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    per_op = max(1, total // (len(ops) * len(modes)))
    log(f"{len(ops)} operations, {per_op} requests each per mode")
    report = Report()

    def send(case) -> None:
        method = case.operation.method.upper()
        try:
            response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT, verify=ca_file)
        except schemathesis.errors.SerializationNotPossible:
            report.unsendable += 1
            return
        except requests.RequestException as e:  # dropped, reset or hung: the server failed this request
            report.sent += 1
            report.dropped.append(Finding(method, case.formatted_path, type(e).__name__, str(e)[:300]))
            return
        report.sent += 1
        cls = f"{response.status_code // 100}xx"
        report.by_class[cls] = report.by_class.get(cls, 0) + 1
        if response.status_code >= 500:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            report.server_errors.append(Finding(method, case.formatted_path, response.status_code,
                                                f"{message[:300]} (query: {str(case.query)[:200]})"))

    started = time.monotonic()
    for i, op in enumerate(ops):
        for mode in modes:
            strategy = op.as_strategy(generation_mode=mode)

            @hypothesis.seed(seed)
            @hypothesis.settings(max_examples=per_op, database=None, deadline=None, phases=[Phase.generate],
                                 suppress_health_check=list(HealthCheck), derandomize=False)
            @hypothesis.given(strategy)
            def one(case) -> None:
                send(case)

            try:
                one()
            except Exception as e:  # a strategy schemathesis cannot build for this operation
                log(f"  {op.method.upper()} {op.path} ({mode.value}): not generated: "
                    f"{type(e).__name__}: {str(e)[:200]}")
        if (i + 1) % 25 == 0:
            log(f"  {i + 1}/{len(ops)} operations, {report.line()}, {time.monotonic() - started:.0f}s")
    return report


def causes(findings: list[Finding]) -> dict[str, list[Finding]]:
    """Findings grouped by their answer's message with the variable parts blunted."""
    import re
    out: dict[str, list[Finding]] = {}
    for f in findings:
        message = f.detail.split(" (query: ")[0]
        key = f"{f.method} {f.status} " + re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "…", message))[:160]
        out.setdefault(key, []).append(f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from bench.harness import start_server
    with tempfile.TemporaryDirectory(prefix="sendo-fuzz-") as d:
        c = start_server(d)
        try:
            ca = os.path.join(d, "server", "tls", "ca.crt")
            report = fuzz(c.url, c.admin_token, ca, a.requests, a.seed, log=lambda m: print(m, file=sys.stderr))
            alive = c.server.popen.poll() is None
        except Exception:
            traceback.print_exc()
            raise
        finally:
            c.server.stop()
        print(report.line() + ("" if alive else "; the server died"))
        for key, found in causes(report.server_errors + report.dropped).items():
            f = found[0]
            print(f"  {len(found)} × {key}\n      e.g. {f.method} {f.path}: {f.detail}")
        print(f"5xx: {len(report.server_errors)}")


if __name__ == "__main__":
    main()
