"""`sendo node drain|replace NAME`: take a node out of service in one command.

`drain` cordons the node (spec.unschedulable), evicts its pods through the Eviction API
(`pods/<name>/eviction`, so PodDisruptionBudgets hold it up: a 429 is tried again until the
deadline) — all but DaemonSet and mirror pods, as `kubectl drain --ignore-daemonsets` — waits
until they are gone and until the workloads that owned them (ReplicaSets, StatefulSets) are
Ready again elsewhere. A node that is not Ready (its machine is gone) cannot confirm that its
pods stopped, so an evicted pod there is then deleted at once (grace 0), as the pod garbage
collector does for a node that is out of service. `replace` drains, deletes the Node and
prints the join command its successor runs (the last line). Each is API calls only, on the
cluster of the kubeconfig (DATA_DIR/kubeconfig, or --kubeconfig).
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .addons import _KUBECONFIG_HELP, _call, _fail, console
from .defaults import DEFAULT_DATA_DIR

node_app = typer.Typer(help="Nodes: drain one (cordon, evict respecting PodDisruptionBudgets), replace one.",
                       no_args_is_help=True)
Obj = dict[str, Any]
ROUND = 1.0  # seconds between eviction rounds (a budget that is spent frees up as replacements get Ready)


def _evictable(pod: Obj) -> bool:
    meta = pod["metadata"]
    if "kubernetes.io/config.mirror" in meta.get("annotations", {}):
        return False
    return not any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences", []))


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


async def _workload_ready(c, owner: tuple[str, str, str]) -> bool:
    from ..client import ApiError, kind
    ns, k, name = owner
    try:
        obj = await c.get(kind("replicasets" if k == "ReplicaSet" else "statefulsets", "apps"), ns, name)
    except ApiError as e:
        if e.status == 404:
            return True  # gone meanwhile (a rollout replaced it): nothing to wait for
        raise
    want = obj.get("spec", {}).get("replicas", 1)
    return obj.get("status", {}).get("readyReplicas", 0) >= want


async def drain_node(c, name: str, timeout: float) -> list[str]:
    """Cordon, evict, wait; the pods evicted ("ns/name")."""
    from ..client import ApiError, kind
    nodes, pods = kind("nodes"), kind("pods")
    try:
        node = await c.get(nodes, None, name)
    except ApiError as e:
        if e.status == 404:
            raise LookupError(f"no node {name!r} in this cluster") from None
        raise
    await c.patch(nodes, None, name, {"spec": {"unschedulable": True}})
    console.print(f"node/{name} cordoned")
    gone_node = not _ready(node)
    deadline = time.monotonic() + timeout
    evicted: dict[str, Obj] = {}
    blocked = ""
    while True:
        left = [p for p in (await c.list(pods, None, fieldSelector=f"spec.nodeName={name}"))["items"]
                if _evictable(p)]
        if not left:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} pods still on {name} after {timeout:.0f}s"
                               + (f" ({blocked})" if blocked else ""))
        for p in left:
            ns, pname = p["metadata"]["namespace"], p["metadata"]["name"]
            key = f"{ns}/{pname}"
            if not p["metadata"].get("deletionTimestamp"):
                body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pname, "namespace": ns}}
                try:
                    await c.request("POST", f"/api/v1/namespaces/{ns}/pods/{pname}/eviction", body=body)
                except ApiError as e:
                    if e.status == 429:  # a disruption budget says not now
                        if not blocked.startswith(key + ":"):
                            console.print(f"pod/{key} waits for its disruption budget")
                        blocked = f"{key}: {e.body.get('message', '')}"
                        continue
                    if e.status != 404:
                        raise
                if key not in evicted:
                    console.print(f"evicting pod/{key}")
                evicted[key] = p
            elif gone_node:  # nobody there to confirm the containers stopped
                await c.delete(pods, ns, pname, gracePeriodSeconds=0)
        await asyncio.sleep(ROUND)  # the next round: budgets free up as replacements get Ready
    owners = {(p["metadata"]["namespace"], o["kind"], o["name"]) for p in evicted.values()
              for o in p["metadata"].get("ownerReferences", []) if o.get("kind") in ("ReplicaSet", "StatefulSet")}
    for owner in sorted(owners):
        while not await _workload_ready(c, owner):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{owner[1]} {owner[0]}/{owner[2]} not Ready again within {timeout:.0f}s")
            await asyncio.sleep(ROUND)  # polled until its replacements are Ready
    console.print(f"node/{name} drained: {len(evicted)} pods evicted, their workloads Ready elsewhere")
    return sorted(evicted)


def _join_command(data_dir: str, server: str, name: str) -> str:
    """What the successor runs: the node token and CA of this data dir's server (or placeholders)."""
    for server_dir in (os.path.join(data_dir, "server"), os.path.join(data_dir, "servers", "s0", "server")):
        token_file = os.path.join(server_dir, "node-token")
        if os.path.exists(token_file):
            with open(token_file) as f:
                token = f.read().strip()
            return (f"sendo agent --server {server} --token {token} "
                    f"--ca-cert {os.path.join(server_dir, 'tls', 'ca.crt')} --node-name {name}")
    return f"sendo agent --server {server} --token <the node token> --ca-cert <the cluster CA> --node-name {name}"


def _run(data_dir: str, kubeconfig: Optional[Path], work) -> Any:
    try:
        return _call(data_dir, kubeconfig, work)
    except (LookupError, TimeoutError) as e:
        _fail(str(e))


@node_app.command("drain")
def drain(name: str = typer.Argument(..., help="The node to drain."),
          data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data dir (for its kubeconfig)."),
          kubeconfig: Optional[Path] = typer.Option(None, help=_KUBECONFIG_HELP, show_default=False),
          timeout: float = typer.Option(300.0, help="Seconds to wait for the pods to go and be Ready elsewhere.")):
    """Cordon NAME, evict its pods (disruption budgets respected), wait until they run elsewhere."""
    _run(data_dir, kubeconfig, lambda c: drain_node(c, name, timeout))


@node_app.command("replace")
def replace(name: str = typer.Argument(..., help="The node to replace."),
            data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data dir (kubeconfig, node token)."),
            kubeconfig: Optional[Path] = typer.Option(None, help=_KUBECONFIG_HELP, show_default=False),
            timeout: float = typer.Option(300.0, help="Seconds to wait for the pods to go and be Ready elsewhere.")):
    """Drain NAME, delete it, and print the join command of its successor (the last line)."""
    from ..client import kind

    async def work(c) -> str:
        await drain_node(c, name, timeout)
        await c.delete(kind("nodes"), None, name)
        console.print(f"node/{name} deleted; on its successor run:")
        return _join_command(os.path.abspath(data_dir), c.server, name)
    print(_run(data_dir, kubeconfig, work), flush=True)
