"""`sendo node replace NAME` against a real server, scheduler and controllers, with two hollow
nodes: the node is cordoned, its pods are evicted through the Eviction API while a
PodDisruptionBudget holds (429s retried), the Deployment is Ready on the other node before
the node is deleted, and the successor's join command is the last line printed."""
from __future__ import annotations

import asyncio
import subprocess

import yaml
from typer.testing import CliRunner

from sendo.agent.hollow import HollowNodes
from sendo.cli.main import app
from sendo.client import Client, kind
from sendo.controlplane import ControlPlane, controller_options
from sendo.server import Server, ServerConfig, free_port, kubeconfig
from tests.waiting import wait_until

NODES, PODS, DEPLOYS, PDBS = kind("nodes"), kind("pods"), kind("deployments", "apps"), kind(
    "poddisruptionbudgets", "policy")


def sendo_here(*args):
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def deployment(replicas: int) -> dict:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "c", "image": "x", "command": ["sleep", "3600"]}]}}}}


async def ready_on(c: Client) -> dict[str, int]:
    per: dict[str, int] = {}
    for p in (await c.list(PODS, "default", labelSelector="app=web"))["items"]:
        if p["metadata"].get("deletionTimestamp"):
            continue
        if any(x["type"] == "Ready" and x["status"] == "True" for x in p.get("status", {}).get("conditions", [])):
            per[p["spec"]["nodeName"]] = per.get(p["spec"]["nodeName"], 0) + 1
    return per


async def test_node_replace_moves_the_pods_respecting_the_budget_then_deletes_the_node(tmp_path):
    data = tmp_path / "data"
    s = Server(ServerConfig(data_dir=str(data), port=free_port(), controllers=False))
    await s.start()
    (data / "kubeconfig").write_text(yaml.safe_dump(kubeconfig(s.cfg.url, s.admin_token, s.ca_pem)))
    c = Client(s.cfg.url, s.admin_token, s.ca_pem)
    cp = ControlPlane(s.cfg.url, s.admin_token, s.ca_pem, "scheduler,deployment,replicaset,disruption",
                      controller_options())
    nodes = HollowNodes(s.cfg.url, s.admin_token, s.ca_pem, 2, prefix="h")
    await nodes.start()
    await cp.start()
    try:
        await c.create(DEPLOYS, deployment(4))
        per = await wait_until(lambda: _all_ready(c, 4), timeout=90, what="4 Ready pods")
        if per.get("h-0000", 0) == 0:  # the scheduler put none there: make h-0001 the one to replace
            victim, other = "h-0001", "h-0000"
        else:
            victim, other = "h-0000", "h-0001"
        await c.create(PDBS, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                              "metadata": {"name": "web", "namespace": "default"},
                              "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}})

        r = await asyncio.to_thread(sendo_here, "node", "replace", "no-such-node", "--data-dir", str(data))
        assert r.returncode == 1 and "no node 'no-such-node'" in r.stderr and r.stderr.count("\n") == 1, r.stderr

        r = await asyncio.to_thread(sendo_here, "node", "replace", victim, "--data-dir", str(data), "--timeout", "120")
        assert r.returncode == 0, (r.stdout, r.stderr)
        join = r.stdout.strip().splitlines()[-1]
        assert join.startswith(f"sendo agent --server {s.cfg.url} --token {s.node_token} ") and \
            join.endswith(f"--node-name {victim}"), join
        assert "cordoned" in r.stderr and "evicting pod/default/" in r.stderr
        if per[victim] >= 2:  # 4 Ready, 3 must stay: the second eviction waited for a replacement
            assert "waits for its disruption budget" in r.stderr, r.stderr
        assert await c.get_or_none(NODES, None, victim) is None
        assert await ready_on(c) == {other: 4}  # Ready elsewhere before the node went
    finally:
        await cp.stop()
        await nodes.stop()
        await c.close()
        await s.stop()


async def _all_ready(c: Client, n: int) -> dict[str, int] | None:
    per = await ready_on(c)
    return per if sum(per.values()) == n else None
