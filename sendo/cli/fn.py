"""`sendo fn`: deploy, invoke, list, read the logs of and delete Functions (sendo.dev/v1alpha1).

They talk to the cluster of the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, else
``DATA_DIR/kubeconfig``), as kubectl would. ``invoke`` calls the function's Service at its
cluster IP (port 80 unless the http trigger names another), which is reachable from the machine sendo runs on.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import aiohttp
import typer

from ..client import ApiError, Client, kind
from ..kinds.function import FUNCTION_RESOURCE
from .defaults import DEFAULT_DATA_DIR
from .status import _kubeconfig

fn_app = typer.Typer(help="Functions: Python code behind HTTP, cron and cluster-event triggers.",
                     no_args_is_help=True)

KUBECONFIG = typer.Option(None, envvar="KUBECONFIG", show_default=False,
                          help="Kubeconfig of the cluster (default: DATA_DIR/kubeconfig).")
NAMESPACE = typer.Option("default", "--namespace", "-n", help="The function's namespace.")
DATA_DIR = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data directory (for its kubeconfig).")


def _client(kubeconfig: Optional[Path], data_dir: str) -> Client:
    path = Path(str(kubeconfig).split(os.pathsep)[0]) if kubeconfig else Path(data_dir) / "kubeconfig"
    server, token, ca_pem = _kubeconfig(path)
    return Client(server, token, ca_pem, user_agent="sendo-fn")


def _run(coro) -> Any:
    try:
        return asyncio.run(coro)
    except ApiError as e:
        msg = e.body.get("message") if isinstance(e.body, dict) else e.body
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(1)


def parse_trigger(text: str) -> dict[str, Any]:
    """http[=PORT] | cron=EXPR | event=KIND[,label=SELECTOR] into one spec.triggers entry."""
    if text == "http":
        return {"http": {}}
    if text.startswith("http=") and text[5:].isdigit():  # http=PORT: the Service's port
        return {"http": {"port": int(text[5:])}}
    what, _, arg = text.partition("=")
    if what == "cron" and arg:
        return {"cron": {"schedule": arg}}
    if what == "event" and arg:
        kind_name, _, rest = arg.partition(",")
        ev: dict[str, Any] = {"apiVersion": "v1", "kind": kind_name}
        if "/" in kind_name:  # apps/v1/Deployment
            ev["apiVersion"], _, ev["kind"] = kind_name.rpartition("/")
        if rest.startswith("label="):
            ev["labelSelector"] = rest[len("label="):]
        return {"event": ev}
    raise typer.BadParameter(f"{text!r}: use http, cron=EXPR or event=KIND[,label=SELECTOR]")


def function_object(name: str, namespace: str, source: str, handler: str, triggers: list[str],
                    **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"handler": handler, "source": {"inline": source},
                            **{k: v for k, v in spec.items() if v is not None}}
    if triggers:
        body["triggers"] = [parse_trigger(t) for t in triggers]
    return {"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


@fn_app.command()
def deploy(name: str = typer.Argument(..., help="The function's name."),
           file: Path = typer.Option(..., "--file", "-f", exists=True, dir_okay=False, help="The Python source."),
           handler: str = typer.Option("", help="module.function (default: <file stem>.handle)."),
           trigger: list[str] = typer.Option([], help="http[=PORT], cron=EXPR or event=KIND[,label=SELECTOR]; repeatable."),
           concurrency: Optional[int] = typer.Option(None, help="Invocations at once per instance."),
           min_scale: Optional[int] = typer.Option(None, help="Instances kept warm."),
           max_scale: Optional[int] = typer.Option(None, help="Most instances."),
           scale_to_zero_after: Optional[int] = typer.Option(None, help="Idle seconds before scaling to zero."),
           timeout: Optional[int] = typer.Option(None, help="Seconds an invocation may take."),
           namespace: str = NAMESPACE, kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR):
    """Create or update a function from a Python file."""
    obj = function_object(name, namespace, file.read_text(), handler or f"{file.stem}.handle", trigger,
                          concurrency=concurrency, minScale=min_scale, maxScale=max_scale,
                          scaleToZeroAfterSeconds=scale_to_zero_after, timeoutSeconds=timeout)

    async def go() -> str:
        c = _client(kubeconfig, data_dir)
        try:
            try:
                await c.create(FUNCTION_RESOURCE, obj)
                return "created"
            except ApiError as e:
                if e.status != 409:
                    raise
            await c.patch(FUNCTION_RESOURCE, namespace, name, {"spec": obj["spec"]})
            return "configured"
        finally:
            await c.close()
    what = _run(go())
    typer.echo(f"function.sendo.dev/{name} {what}; URL path /functions/{namespace}/{name}")


@fn_app.command()
def invoke(name: str = typer.Argument(..., help="The function's name."),
           data: Optional[str] = typer.Option(None, help="A JSON body (POST); without it, GET."),
           path: str = typer.Option("/", help="The path after the function's own."),
           namespace: str = NAMESPACE, kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR,
           timeout: float = typer.Option(120.0, help="Seconds to wait (a cold start included).")):
    """Call a function over HTTP (its Service's cluster IP) and print the answer."""
    if data is not None:
        try:
            json.loads(data)
        except ValueError as e:
            raise typer.BadParameter(f"--data is not JSON: {e}")

    async def go() -> tuple[int, bytes]:
        c = _client(kubeconfig, data_dir)
        try:
            svc = await c.get(kind("services"), namespace, name)
        finally:
            await c.close()
        ip = svc["spec"].get("clusterIP")
        port = (svc["spec"].get("ports") or [{}])[0].get("port", 80)
        async with aiohttp.ClientSession(trust_env=False) as s:
            async with s.request("POST" if data is not None else "GET", f"http://{ip}:{port}{path}",
                                 data=data.encode() if data is not None else None,
                                 headers={"Content-Type": "application/json"},
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status, await r.read()
    status, body = _run(go())
    sys.stdout.write(body.decode(errors="replace") + ("" if body.endswith(b"\n") else "\n"))
    if status >= 400:
        typer.echo(f"HTTP {status}", err=True)
        raise typer.Exit(1)


@fn_app.command("list")
def list_(namespace: str = NAMESPACE, kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR):
    """The functions of a namespace: URL, version, ready instances, in-flight invocations."""
    async def go() -> list[dict]:
        c = _client(kubeconfig, data_dir)
        try:
            return (await c.list(FUNCTION_RESOURCE, namespace)).get("items", [])
        finally:
            await c.close()
    rows = [["NAME", "URL", "VERSION", "READY", "IN-FLIGHT"]]
    for f in _run(go()):
        st = f.get("status") or {}
        rows.append([f["metadata"]["name"], st.get("url") or "<none>", st.get("readyVersion") or "<none>",
                     str(st.get("readyInstances", 0)), str(st.get("inFlight", 0))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


@fn_app.command()
def delete(name: str = typer.Argument(..., help="The function's name."), namespace: str = NAMESPACE,
           kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR):
    """Delete a function (its instances, Service and route go with it)."""
    async def go() -> Any:
        c = _client(kubeconfig, data_dir)
        try:
            return await c.delete(FUNCTION_RESOURCE, namespace, name)
        finally:
            await c.close()
    if _run(go()) is None:
        typer.echo(f'error: function "{name}" not found', err=True)
        raise typer.Exit(1)
    typer.echo(f"function.sendo.dev/{name} deleted")


@fn_app.command()
def logs(name: str = typer.Argument(..., help="The function's name."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines."),
         namespace: str = NAMESPACE, kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR):
    """The logs of the function's instances (each line prefixed with its instance when there are several)."""
    async def one(c: Client, pod_ns: str, pod: str, many: bool) -> None:
        url = f"{c.server}/api/v1/namespaces/{pod_ns}/pods/{pod}/log"
        params = {"follow": "true"} if follow else {}
        timeout = aiohttp.ClientTimeout(total=None if follow else 30)
        async with c.session.get(url, params=params, timeout=timeout) as r:
            if r.status >= 400:
                return
            async for line in r.content:
                text = line.decode(errors="replace")
                sys.stdout.write(f"[{pod}] {text}" if many else text)
                sys.stdout.flush()

    async def go() -> int:
        c = _client(kubeconfig, data_dir)
        try:
            pods = (await c.list(kind("pods"), namespace, labelSelector=f"sendo.dev/function={name}"))["items"]
            # a warm-pool worker serving as this function lives in kube-system
            pods += (await c.list(kind("pods"), "kube-system",
                                  labelSelector=f"sendo.dev/function-bridge={namespace}.{name}"))["items"]
            names = sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods)
            await asyncio.gather(*(one(c, ns, p, len(names) > 1) for ns, p in names))
            return len(names)
        finally:
            await c.close()
    if not _run(go()):
        typer.echo(f"no instance of {name} is running (it may be scaled to zero)", err=True)
