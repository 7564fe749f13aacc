"""`sendo status`: a component that does not answer is down (0) with the reason; the table."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sendo.cli.status import Row, _opener, probe, render
from sendo.server import free_port


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = b"[+]ping ok\n[-]store failed: cannot reach the store\nreadyz check failed\n"
        self.send_response(500 if self.path.startswith("/readyz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_failing_or_silent_component_is_down_with_its_reason():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert probe(_opener(None), url, 5) == (False, "store failed: cannot reach the store")
    finally:
        srv.shutdown()
        srv.server_close()
    up, why = probe(_opener(None), f"http://127.0.0.1:{free_port()}", 5)  # nothing listens there
    assert not up and "refused" in why.lower()


def test_render_prints_one_row_per_component_with_1_or_0():
    out = render([Row("apiserver", "", "https://127.0.0.1:6443", True),
                  Row("agent", "node-a", "http://127.0.0.1:1234", False, "usage-sampler failed: no sample")])
    lines = out.splitlines()
    assert lines[0].split() == ["COMPONENT", "NODE", "ENDPOINT", "UP", "DETAIL"]
    assert lines[1].split() == ["apiserver", "-", "https://127.0.0.1:6443", "1"]
    assert lines[2].split()[:4] == ["agent", "node-a", "http://127.0.0.1:1234", "0"]
    assert lines[2].endswith("usage-sampler failed: no sample")
