"""`sendo status`: every component of the cluster as up 1 / down 0, from its `/readyz`.

The API server comes from the kubeconfig, the controllers from the list the server
writes in its data directory (`server/components.json`), and one agent per Node from
the Node's address and agent port (`status.daemonEndpoints.kubeletEndpoint`). A
component is up when its `/readyz` answers 200; otherwise the failing checks of
`/readyz?verbose` (or the connection error) are shown.
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Row:
    component: str
    node: str
    url: str
    up: bool
    detail: str = ""


def _opener(ca_pem: bytes | None) -> urllib.request.OpenerDirector:
    ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else ssl.create_default_context()
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))


def probe(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> tuple[bool, str]:
    """(ready, why not) from <url>/readyz?verbose."""
    try:
        with opener.open(url.rstrip("/") + "/readyz?verbose", timeout=timeout) as r:
            return r.status == 200, ""
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        failed = [line[3:] for line in body.splitlines() if line.startswith("[-]")]
        return False, "; ".join(failed) or f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return False, str(reason)


def _kubeconfig(path: Path) -> tuple[str, str, bytes | None]:
    cfg = yaml.safe_load(path.read_text())
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    ca = cluster.get("certificate-authority-data")
    ca_pem = base64.b64decode(ca) if ca else (Path(cluster["certificate-authority"]).read_bytes()
                                              if cluster.get("certificate-authority") else None)
    return cluster["server"], user.get("token", ""), ca_pem


def check_all(data_dir: str, kubeconfig: Path | None, timeout: float = 5.0) -> list[Row]:
    path = kubeconfig or Path(data_dir) / "kubeconfig"
    server, token, ca_pem = _kubeconfig(Path(str(path).split(os.pathsep)[0]))
    opener = _opener(ca_pem)
    rows = []
    ok, why = probe(opener, server, timeout)
    rows.append(Row("apiserver", "", server, ok, why))
    comps_file = Path(data_dir) / "server" / "components.json"
    comps: dict[str, str] = {}
    if comps_file.exists():
        comps = json.loads(comps_file.read_text())
    if comps.get("controllers"):
        ok, why = probe(opener, comps["controllers"], timeout)
        rows.append(Row("controllers", "", comps["controllers"], ok, why))
    # `sendo up --servers N`: each server (DATA_DIR/servers/sI) behind the balancer, and its controllers
    for f in sorted(Path(data_dir).glob("servers/*/server/components.json")):
        for comp, url in json.loads(f.read_text()).items():
            ok, why = probe(opener, url, timeout)
            rows.append(Row(comp, f.parent.parent.name, url, ok, why))
    rows += _agents(opener, server, token, timeout, rows[0].up)
    return rows


def _agents(opener: urllib.request.OpenerDirector, server: str, token: str, timeout: float,
            api_up: bool) -> list[Row]:
    if not api_up:
        return []
    req = urllib.request.Request(server + "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    try:
        with opener.open(req, timeout=timeout) as r:
            nodes: list[dict[str, Any]] = json.loads(r.read()).get("items") or []
    except (OSError, ValueError) as e:
        return [Row("agent", "?", server, False, f"cannot list nodes: {e}")]
    rows = []
    for n in nodes:
        name = n["metadata"]["name"]
        status = n.get("status") or {}
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = addrs.get("InternalIP")
        if not port or not host:
            rows.append(Row("agent", name, "-", False, "the node publishes no agent endpoint"))
            continue
        url = f"http://{host}:{port}"
        ok, why = probe(opener, url, timeout)
        rows.append(Row("agent", name, url, ok, why))
    return rows


def render(rows: list[Row]) -> str:
    head = ("COMPONENT", "NODE", "ENDPOINT", "UP", "DETAIL")
    body = [(r.component, r.node or "-", r.url, "1" if r.up else "0", r.detail) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    lines = []
    for row in [head, *body]:
        lines.append("   ".join(c.ljust(widths[i]) for i, c in enumerate(row[:4])) + ("   " + row[4] if row[4] else ""))
    return "\n".join(line.rstrip() for line in lines)
