"""`sendo addons list|enable|disable`: the add-on manager from the command line.

Each command is a plain API call on the cluster of the kubeconfig (DATA_DIR/kubeconfig,
or --kubeconfig / $KUBECONFIG): `enable` creates the Addon or merge-patches its
`spec.enabled` and the `--set` options into `spec.config` (`--set key=` removes a key),
`disable` sets `spec.enabled: false`; the add-on controller does the rest. A value is
turned into the option's type from the catalogue (integer, boolean, a comma-separated
stringList); the server checks the result and its 422 message is printed as it is.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..addons import API_VERSION, GROUP, KIND, PLURAL, VERSION, Entry, catalogue
from .defaults import DEFAULT_DATA_DIR

addons_app = typer.Typer(help="Add-ons: list them, enable one (with --set options), disable one.",
                         no_args_is_help=True)
console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)
_KUBECONFIG_HELP = "Kubeconfig of the cluster (default: DATA_DIR/kubeconfig)."


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def parse_sets(entry: Entry | None, sets: list[str]) -> dict[str, Any]:
    """--set key=value pairs as config values of the option's type (None: remove the key)."""
    config: dict[str, Any] = {}
    for item in sets:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        opt = entry.options.get(key) if entry else None
        value: Any = text
        if text == "":
            value = None
        elif opt is not None and opt.type == "integer":
            try:
                value = int(text)
            except ValueError:
                value = text  # the server names the field and the type
        elif opt is not None and opt.type == "boolean" and text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif opt is not None and opt.type == "stringList":
            value = [v.strip() for v in text.split(",") if v.strip()]
        config[key] = value
    return config


def _client(data_dir: str, kubeconfig: Optional[Path]):
    from ..client.rest import Client
    from .status import _kubeconfig
    path = kubeconfig or Path(data_dir) / "kubeconfig"
    try:
        server, token, ca_pem = _kubeconfig(Path(str(path).split(os.pathsep)[0]))
    except (OSError, KeyError, StopIteration, TypeError, ValueError) as e:
        _fail(f"cannot read the kubeconfig {path}: {e}")
    return Client(server, token, ca_pem)


def _call(data_dir: str, kubeconfig: Optional[Path], work) -> Any:
    from ..client import ApiError

    async def go():
        c = _client(data_dir, kubeconfig)
        try:
            return await work(c)
        finally:
            await c.close()
    try:
        return asyncio.run(go())
    except ApiError as e:
        body = e.body if isinstance(e.body, dict) else {}
        _fail(str(body.get("message") or e))
    except OSError as e:
        _fail(f"cannot reach the API server: {e}")


def _addon_kind():
    from ..client import kind
    return kind(PLURAL, GROUP, VERSION)


def _condition(obj: dict, ctype: str) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("status", ""))
    return ""


def _options(entry: Entry) -> str:
    return "\n".join(f"{k} ({o.type}{', default ' + repr(o.default) if o.default not in (None, [], '') else ''})"
                     + (f": {o.description}" if o.description else "") for k, o in entry.options.items()) or "-"


@addons_app.command("list")
def list_addons(wide: bool = typer.Option(False, "--wide", "-w", help="Also each add-on's description and options."),
                data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data directory."),
                kubeconfig: Optional[Path] = typer.Option(None, envvar="KUBECONFIG", show_default=False,
                                                          help=_KUBECONFIG_HELP)):
    """Every add-on of the catalogue: whether it is on, healthy, and what its controller says;
    built-in pieces of sendo are listed with how they are switched."""
    async def work(c):
        return await c.list(_addon_kind())
    items = {a["metadata"]["name"]: a for a in (_call(data_dir, kubeconfig, work) or {}).get("items") or []}
    table = Table("NAME", "ENABLED", "HEALTHY", "MESSAGE", *(("DESCRIPTION", "OPTIONS") if wide else ()),
                  box=None, pad_edge=False)
    for name, entry in catalogue().items():
        a = items.get(name)
        more = (entry.description + (" " + entry.builtin if entry.builtin else ""), _options(entry)) if wide else ()
        if entry.builtin:
            table.add_row(name, "built in", "-", entry.summary, *more)
            continue
        if a is None:
            shown, message = ("true", "on by default") if entry.default_enabled else ("false", "")
        else:
            shown = "false" if (a.get("spec") or {}).get("enabled") is False else "true"
            message = str((a.get("status") or {}).get("message") or "")
        table.add_row(name, shown, _condition(a, "Healthy") if a else "-", message, *more)
    out.print(table)


def _built_in(name: str) -> str:
    entry = catalogue().get(name)
    return entry.builtin if entry is not None else ""


@addons_app.command("enable")
def enable(name: str = typer.Argument(..., help="The add-on (see `sendo addons list`)."),
           set_: list[str] = typer.Option([], "--set", help="An option, key=value (repeatable); key= removes it."),
           wait: float = typer.Option(0, "--wait", min=0, help="Seconds to wait for the add-on to be Healthy "
                                      "(0: do not wait); exits 1 if it is not by then."),
           data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data directory."),
           kubeconfig: Optional[Path] = typer.Option(None, envvar="KUBECONFIG", show_default=False,
                                                     help=_KUBECONFIG_HELP)):
    """Turn an add-on on (creating its Addon), with options; the add-on controller applies it."""
    if _built_in(name):
        console.print(f"{name} is built into sendo, nothing to enable: {_built_in(name)}")
        return
    try:
        config = parse_sets(catalogue().get(name), set_)
    except ValueError as e:
        _fail(str(e))

    async def work(c):
        from ..client import ApiError
        r = _addon_kind()
        try:
            return await c.patch(r, None, name, {"spec": {"enabled": True, "config": config}})
        except ApiError as e:
            if e.status != 404:
                raise
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                "spec": {"enabled": True, "config": {k: v for k, v in config.items() if v is not None}}}
        return await c.create(r, body)
    obj = _call(data_dir, kubeconfig, work)
    console.print(f"addon {name} enabled")
    if wait:
        _wait_healthy(data_dir, kubeconfig, name, int(obj["metadata"].get("generation") or 1), wait)


def _wait_healthy(data_dir: str, kubeconfig: Optional[Path], name: str, generation: int, seconds: float) -> None:
    """Poll the Addon until its controller reports it Healthy for this generation (or give up)."""
    async def work(c):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        obj: dict = {}
        while loop.time() < deadline:
            obj = await c.get(_addon_kind(), None, name)
            status = obj.get("status") or {}
            if (status.get("observedGeneration") or 0) >= generation and _condition(obj, "Healthy") == "True":
                return True, status.get("message", "")
            await asyncio.sleep(0.5)
        return False, (obj.get("status") or {}).get("message") or "no status yet"
    ok, message = _call(data_dir, kubeconfig, work)
    if not ok:
        _fail(f"addon {name} is not Healthy after {seconds:g}s: {message}")
    console.print(f"addon {name} is Healthy: {message}")


@addons_app.command("disable")
def disable(name: str = typer.Argument(..., help="The add-on."),
            data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The cluster's data directory."),
            kubeconfig: Optional[Path] = typer.Option(None, envvar="KUBECONFIG", show_default=False,
                                                      help=_KUBECONFIG_HELP)):
    """Turn an add-on off: the add-on controller removes exactly what it applied."""
    if _built_in(name):
        _fail(f"{name} cannot be disabled here: {_built_in(name)}")
    async def work(c):
        from ..client import ApiError
        try:
            return await c.patch(_addon_kind(), None, name, {"spec": {"enabled": False}})
        except ApiError as e:
            entry = catalogue().get(name)
            if e.status != 404 or entry is None:
                raise
        if not entry.default_enabled:
            return None  # never enabled: nothing to do
        return await c.create(_addon_kind(), {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                                              "spec": {"enabled": False}})  # on by default: say off
    _call(data_dir, kubeconfig, work)
    console.print(f"addon {name} disabled")
