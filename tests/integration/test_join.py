"""`sendo agent` joining a server with the wrong token, CA or address: one line naming
the cause, exit status 1, and nothing written to the cluster."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sendo.client import kind
from sendo.server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_a_join_that_cannot_work_says_why_in_one_line_and_changes_nothing(server, client, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(server.ca_pem)
    cases = {
        "token": (["--server", server.cfg.url, "--token", "not-the-token", "--ca-cert", str(ca)],
                  "refused the node token (401 Unauthorized)"),
        "ca": (["--server", server.cfg.url, "--token", server.node_token], "pass its CA certificate with --ca-cert"),
        "address": (["--server", f"https://127.0.0.1:{free_port()}", "--token", server.node_token,
                     "--ca-cert", str(ca)], "cannot reach the API server at https://127.0.0.1:"),
    }
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "sendo.cli.main", "agent", *args, "--node-name", f"join-{name}",
         "--data-dir", str(tmp_path / name), "--no-ingress", "--no-service-proxy"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "80"}) for name, (args, _) in cases.items()}
    try:
        for name, p in procs.items():
            _, err = await asyncio.to_thread(p.communicate, timeout=120)  # the server runs in this loop
            lines = err.strip().splitlines()
            assert p.returncode == 1 and len(lines) == 1, (name, err)
            assert lines[0].startswith("error: ") and cases[name][1] in lines[0], (name, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
    nodes = (await client.list(kind("nodes")))["items"]
    assert [n["metadata"]["name"] for n in nodes] == []
