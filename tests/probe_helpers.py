"""Loopback probe targets shared by tests/unit/test_probes.py and tests/integration/test_probes.py.

Every server here listens on 127.0.0.1 on a free port; nothing leaves the machine."""
from __future__ import annotations

import http.server
import os
import ssl
import threading
import time
from contextlib import contextmanager

from sendo.agent.probes import Target
from sendo.pki import ensure_tls


ENV = {"PATH": os.environ.get("PATH", os.defpath)}


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        host, port = self.server.server_address[:2]
        path = self.path.split("?")[0]
        if path == "/ok":
            self._send(200, b"fine")
        elif path == "/nocontent":
            self._send(204, b"")
        elif path == "/fail":
            self._send(500, b"broken")
        elif path == "/notfound":
            self._send(404, b"")
        elif path == "/redirect-same":
            self._send(302, b"", [("Location", "/ok")])
        elif path == "/redirect-fail":
            self._send(301, b"", [("Location", f"http://{host}:{port}/fail")])
        elif path == "/redirect-other":
            # another loopback address: not followed, so never contacted
            self._send(302, b"", [("Location", f"http://127.0.0.2:{port}/ok")])
        elif path == "/loop":
            self._send(302, b"", [("Location", "/loop")])
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/big":
            self._send(200, b"x" * 1_000_000)
        else:
            self._send(404, b"")

    def _send(self, code: int, body: bytes, headers=()):
        try:
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def http_server(tls_dir: str | None = None):
    class Handler(_Handler):
        seen: list[dict] = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if tls_dir:
        files = ensure_tls(tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files.cert, files.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], Handler.seen
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def target(port_name: str | None = None, port: int | None = None, cwd: str | None = None,
           env: dict | None = None) -> Target:
    ports = [{"name": port_name, "containerPort": port}] if port_name else []
    return Target("127.0.0.1", {"name": "web", "ports": ports}, env or dict(ENV), cwd)
