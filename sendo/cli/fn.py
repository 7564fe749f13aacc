"""`sendo fn`: deploy, invoke, list, read the logs of and delete Functions (sendo.dev/v1alpha1).

They talk to the cluster of the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, else
``DATA_DIR/kubeconfig``), as kubectl would. ``invoke`` calls the function's Service at its
cluster IP (port 80 unless the http trigger names another), which is reachable from the machine sendo runs on.
``deploy --dir`` packs a directory into a ConfigMap named after its hash (`pack_directory`), so the
server and the nodes need no access to this machine's files.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import aiohttp
import typer

from ..client import ApiError, Client, kind
from ..kinds.function import FILES_KEY, FILES_LABEL, FUNCTION_RESOURCE
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


CONNECT_RETRY_SECONDS = 20.0  # `invoke` right after `deploy`: the node's service proxy may not listen yet
PACK_LIMIT = 900 * 1024  # a ConfigMap holds at most 1 MiB; the archive is stored base64 inside it
SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules"}


def pack_directory(directory: Path) -> bytes:
    """The directory as a zip: the same bytes for the same files (sorted, fixed timestamps), so an
    unchanged directory makes no new version; caches, VCS and virtualenv directories left out."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory)
            if any(part in SKIP_DIRS for part in rel.parts[:-1]) or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(rel.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    return buf.getvalue()


def files_configmap(name: str, namespace: str, archive: bytes) -> dict[str, Any]:
    """A ConfigMap named after the archive's hash, so new contents make a new function version."""
    import base64
    import hashlib

    digest = hashlib.sha256(archive).hexdigest()[:10]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{name}-files-{digest}", "namespace": namespace, "labels": {FILES_LABEL: name}},
            "binaryData": {FILES_KEY: base64.b64encode(archive).decode()}}


def function_object(name: str, namespace: str, source: str | dict[str, Any], handler: str, triggers: list[str],
                    **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"handler": handler, "source": {"inline": source} if isinstance(source, str) else source,
                            **{k: v for k, v in spec.items() if v is not None}}
    if triggers:
        body["triggers"] = [parse_trigger(t) for t in triggers]
    return {"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


@fn_app.command()
def deploy(name: str = typer.Argument(..., help="The function's name."),
           file: Optional[Path] = typer.Option(None, "--file", "-f", exists=True, dir_okay=False,
                                               help="The Python source (one file)."),
           directory: Optional[Path] = typer.Option(None, "--dir", exists=True, file_okay=False,
                                                    help="A directory of Python files (packed into a ConfigMap)."),
           handler: str = typer.Option("", help="module.function (default: <file stem>.handle, main.handle with --dir)."),
           trigger: list[str] = typer.Option([], help="http[=PORT], cron=EXPR or event=KIND[,label=SELECTOR]; repeatable."),
           concurrency: Optional[int] = typer.Option(None, help="Invocations at once per instance."),
           min_scale: Optional[int] = typer.Option(None, help="Instances kept warm."),
           max_scale: Optional[int] = typer.Option(None, help="Most instances."),
           scale_to_zero_after: Optional[int] = typer.Option(None, help="Idle seconds before scaling to zero."),
           timeout: Optional[int] = typer.Option(None, help="Seconds an invocation may take."),
           namespace: str = NAMESPACE, kubeconfig: Optional[Path] = KUBECONFIG, data_dir: str = DATA_DIR):
    """Create or update a function from a Python file or a directory."""
    if (file is None) == (directory is None):
        raise typer.BadParameter("give exactly one of --file or --dir")
    packed: dict[str, Any] | None = None
    if directory is not None:
        archive = pack_directory(directory)
        if len(archive) > PACK_LIMIT:
            raise typer.BadParameter(f"--dir: {directory} packs to {len(archive)} bytes; a ConfigMap holds "
                                     f"at most {PACK_LIMIT} (leave data out, or use source.files.path)")
        packed = files_configmap(name, namespace, archive)
        source: str | dict[str, Any] = {"files": {"configMapRef": {"name": packed["metadata"]["name"]}}}
        handler = handler or "main.handle"
    else:
        assert file is not None
        source, handler = file.read_text(), handler or f"{file.stem}.handle"
    obj = function_object(name, namespace, source, handler, trigger,
                          concurrency=concurrency, minScale=min_scale, maxScale=max_scale,
                          scaleToZeroAfterSeconds=scale_to_zero_after, timeoutSeconds=timeout)

    async def go() -> str:
        c = _client(kubeconfig, data_dir)
        try:
            if packed is not None:
                try:
                    await c.create(kind("configmaps"), packed)
                except ApiError as e:
                    if e.status != 409:  # the same contents are there already
                        raise
            try:
                fn = await c.create(FUNCTION_RESOURCE, obj)
                what = "created"
            except ApiError as e:
                if e.status != 409:
                    raise
                fn = await c.patch(FUNCTION_RESOURCE, namespace, name, {"spec": obj["spec"]})
                what = "configured"
            if packed is not None:
                await own_files(c, fn, packed["metadata"]["name"])
            return what
        finally:
            await c.close()
    what = _run(go())
    typer.echo(f"function.sendo.dev/{name} {what}; URL path /functions/{namespace}/{name}")


async def own_files(c: Client, fn: dict[str, Any], current: str) -> None:
    """The packed ConfigMap goes with the function (an ownerReference; the function's finalizer
    deletes it); the ones of earlier deploys are deleted now."""
    m = fn["metadata"]
    ref = {"apiVersion": FUNCTION_RESOURCE.api_version, "kind": "Function", "name": m["name"], "uid": m["uid"]}
    await c.patch(kind("configmaps"), m["namespace"], current, {"metadata": {"ownerReferences": [ref]}})
    old = await c.list(kind("configmaps"), m["namespace"], labelSelector=f"{FILES_LABEL}={m['name']}")
    for cm in old.get("items") or []:
        if cm["metadata"]["name"] != current:
            await c.delete(kind("configmaps"), m["namespace"], cm["metadata"]["name"])


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
        end = time.monotonic() + min(timeout, CONNECT_RETRY_SECONDS)
        async with aiohttp.ClientSession(trust_env=False) as s:
            while True:
                try:
                    async with s.request("POST" if data is not None else "GET", f"http://{ip}:{port}{path}",
                                         data=data.encode() if data is not None else None,
                                         headers={"Content-Type": "application/json"},
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                        return r.status, await r.read()
                except aiohttp.ClientConnectorError as e:  # nothing sent: a new Service's proxy may lag
                    if time.monotonic() > end:
                        typer.echo(f"error: cannot reach {name} at {ip}:{port} (its Service): {e}", err=True)
                        raise typer.Exit(1)
                    await asyncio.sleep(0.5)
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    typer.echo(f"error: calling {name} at {ip}:{port}: {e or type(e).__name__}", err=True)
                    raise typer.Exit(1)
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
