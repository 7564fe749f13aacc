"""What RBAC costs on API writes, and what RBAC, the audit log (Metadata level) and Secrets
sealed at rest cost together: the same server, the same client, with them and without
(an allow-all authorizer, no audit, plaintext), runs interleaved (off, on, off, on …) so
drift of the loaded machine hits both alike. The first comparison writes ConfigMaps, the
second Secrets (the kind that is sealed).

The client is a ServiceAccount bound to `edit` in `default` (so every request goes the
whole way through the rule sets, not the system:masters shortcut), among 1,000 other
Roles and RoleBindings and 200 ClusterRoleBindings of other subjects. The load comes
from bench.load in its own process (open-loop ConfigMap creates and patches at a fixed
rate, then a closed loop of writers for throughput). Also printed: one cached decision
and one rebuild of the in-memory state (after an RBAC change), timed in-process.

    python -m bench.rbac [--tiny] [--rounds N]

Every process is started here and stopped by PID; all traffic stays on loopback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

from bench.harness import percentile
from sendo.api.audit import AuditConfig
from sendo.api.options import AllowAll, User
from sendo.api.paths import Target
from sendo.client import Client, kind
from sendo.server import Server, ServerConfig, free_port
from sendo.store.encryption import IDENTITY

RBAC = "rbac.authorization.k8s.io"
FULL = dict(rate=150, count=1500, writers=16, seconds=4, filler=500, cluster_filler=200, rounds=2)
TINY = dict(rate=50, count=60, writers=2, seconds=0.5, filler=5, cluster_filler=2, rounds=1)


def log(msg: str) -> None:
    print(f"[bench.rbac {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _binding(name: str, ns: str | None, role_kind: str, role: str, subject: dict) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"metadata": meta, "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}, "subjects": [subject]}


async def load(mode: str, args: dict) -> dict:
    """bench.load in its own process (the server's loop stays free while it runs)."""
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.load", mode, json.dumps(args),
                                             stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await p.communicate()
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
    if p.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator {mode} failed ({p.returncode})")
    return json.loads(out.splitlines()[-1])


async def setup(client: Client, size: dict) -> str:
    await client.create(kind("namespaces"), {"metadata": {"name": "filler"}})
    rules = [{"apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["get", "list"]}]
    for i in range(size["filler"]):
        await client.create(kind("roles", RBAC), {"metadata": {"name": f"r{i}", "namespace": "filler"},
                                                  "rules": rules})
        await client.create(kind("rolebindings", RBAC), _binding(
            f"b{i}", "filler", "Role", f"r{i}", {"kind": "User", "apiGroup": RBAC, "name": f"user{i}"}))
    for i in range(size["cluster_filler"]):
        await client.create(kind("clusterrolebindings", RBAC), _binding(
            f"cb{i}", None, "ClusterRole", "view", {"kind": "Group", "apiGroup": RBAC, "name": f"group{i}"}))
    await client.create(kind("serviceaccounts"), {"metadata": {"name": "bench", "namespace": "default"}})
    await client.create(kind("rolebindings", RBAC), _binding(
        "bench-edit", "default", "ClusterRole", "edit", {"kind": "ServiceAccount", "name": "bench"}))
    tr = await client.request("POST", "/api/v1/namespaces/default/serviceaccounts/bench/token",
                              body={"spec": {"expirationSeconds": 7200}})
    return tr["status"]["token"]


async def micro(server: Server) -> dict:
    """One cached decision, and one rebuild of the state after an RBAC change."""
    authz = server.api.rbac_authorizer
    user = User("system:serviceaccount:default:bench",
                ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"])
    target = Target("", "v1", "configmaps", "default")
    await authz.check(user, "create", target)
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        await authz.check(user, "create", target)
    decision_us = (time.perf_counter() - t) / n * 1e6
    rebuilds = []
    for _ in range(5):
        server.api.rbac.invalidate()
        t = time.perf_counter()
        await authz.check(user, "create", target)
        rebuilds.append((time.perf_counter() - t) * 1000)
    return {"decision_us": round(decision_us, 2), "rebuild_ms": round(min(rebuilds), 2)}


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
"""


def _set_security(server: Server, on: bool, sealed, auditor) -> None:
    """All of RBAC, the audit log (Metadata level) and Secrets sealed at rest, or none."""
    server.api.authorizer = server.api.rbac_authorizer if on else AllowAll()
    server.api.auditor = auditor if on else None
    server.store.transformer = sealed if on else IDENTITY


async def _compare(name: str, size: dict, args: dict, switch) -> dict:
    """Rounds of (off, on): an open-loop run at a fixed rate, then a closed loop of writers."""
    runs: dict[str, dict[str, list[float]]] = {"off": {"lat": [], "tput": []}, "on": {"lat": [], "tput": []}}
    for r in range(size["rounds"]):
        for mode in ("off", "on"):
            switch(mode == "on")
            run = f"{name}-{mode}{r}"
            out = await load("steady", {**args, "rate": size["rate"], "count": size["count"], "run": run})
            assert out["errors"] == 0, out
            runs[mode]["lat"] += out["latencies_ms"]
            tput = await load("max", {**args, "writers": size["writers"], "seconds": size["seconds"], "run": run})
            assert tput["errors"] == 0, tput
            runs[mode]["tput"].append(tput["writes_per_s"])
            log(f"round {r} {name} {mode}: p99 {percentile(out['latencies_ms'], 99):.1f} ms, "
                f"{tput['writes_per_s']:.0f} writes/s")
    figures: dict = {}
    for mode, v in runs.items():
        figures[f"write_p50_ms_{name}_{mode}"] = round(percentile(v["lat"], 50), 2)
        figures[f"write_p99_ms_{name}_{mode}"] = round(percentile(v["lat"], 99), 2)
        figures[f"writes_per_s_{name}_{mode}"] = round(sum(v["tput"]) / len(v["tput"]), 1)
    off, on = figures[f"write_p99_ms_{name}_off"], figures[f"write_p99_ms_{name}_on"]
    figures[f"{name}_p99_cost_pct"] = round((on - off) / off * 100, 1) if off else None
    t_off, t_on = figures[f"writes_per_s_{name}_off"], figures[f"writes_per_s_{name}_on"]
    figures[f"{name}_throughput_cost_pct"] = round((t_off - t_on) / t_off * 100, 1) if t_off else None
    return figures


async def bench(size: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="sendo-bench-rbac-") as d:
        server = Server(ServerConfig(data_dir=d, port=free_port(), controllers=False))
        await server.start()
        admin = Client(server.cfg.url, server.admin_token, server.ca_pem, timeout=120)
        policy = os.path.join(d, "audit-policy.yaml")
        with open(policy, "w") as f:
            f.write(AUDIT_POLICY)
        auditor = AuditConfig(policy, os.path.join(d, "audit.log")).open()
        sealed = server.store.transformer
        try:
            token = await setup(admin, size)
            figures: dict = {"bindings": size["filler"] + size["cluster_filler"]}
            args = {"url": server.cfg.url, "token": token, "ca": server.ca_pem.decode()}
            # RBAC alone on ConfigMaps; then RBAC + audit + encryption at rest on Secrets
            figures.update(await _compare("rbac", size, args, lambda on: setattr(
                server.api, "authorizer", server.api.rbac_authorizer if on else AllowAll())))
            figures.update(await _compare("security", size, {**args, "resource": "secrets"},
                                          lambda on: _set_security(server, on, sealed, auditor)))
            _set_security(server, True, sealed, None)
            figures.update(await micro(server))
            return figures
        finally:
            if auditor is not None:
                auditor.log.close()
            await admin.close()
            await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="toy sizes (the figures mean nothing)")
    ap.add_argument("--rounds", type=int, default=0, help="off/on pairs (default 2, tiny 1)")
    a = ap.parse_args()
    size = dict(TINY if a.tiny else FULL)
    if a.rounds:
        size["rounds"] = a.rounds
    import uvloop  # the loop every sendo process runs on
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(bench(size))
    for k, v in figures.items():
        print(f"{k:32} {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
