"""A small admission webhook server for tests: HTTPS on 127.0.0.1 with a certificate made by
sendo/pki.py (its CA becomes the webhook's caBundle), run in a thread.

Paths:
  /deny     refuses objects labelled deny=yes (403 with a message), warns on every other
  /label    JSONPatch that adds the label ``webhooked: "yes"``
  /slow     answers after ``slow_seconds`` (longer than a short timeoutSeconds)
  /hold     answers once the test calls ``release()`` (60 s at most): a request held in the API server
  /garbage  answers something that is not an AdmissionReview
Every review received is kept in ``reviews`` (path, request).
"""
from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sendo.pki import ensure_tls

DENY_MESSAGE = "objects labelled deny=yes are refused by the test webhook"


def _answer(path: str, request: dict) -> dict:
    obj = request.get("object") or request.get("oldObject") or {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    response: dict = {"uid": request["uid"], "allowed": True}
    if path == "/deny":
        if labels.get("deny") == "yes":
            response = {"uid": request["uid"], "allowed": False,
                        "status": {"code": 403, "message": DENY_MESSAGE}}
        else:
            response["warnings"] = [f"checked {request['operation']} by the test webhook"]
    elif path == "/label" and request["operation"] in ("CREATE", "UPDATE"):
        if labels:
            ops = [{"op": "add", "path": "/metadata/labels/webhooked", "value": "yes"}]
        else:
            ops = [{"op": "add", "path": "/metadata/labels", "value": {"webhooked": "yes"}}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class WebhookServer:
    def __init__(self, directory: Path, hosts: tuple[str, ...] = (), slow_seconds: float = 5.0):
        tls = ensure_tls(str(directory), list(hosts))
        self.ca_bundle = base64.b64encode(Path(tls.ca_cert).read_bytes()).decode()
        self.reviews: list[tuple[str, dict]] = []
        self.slow_seconds = slow_seconds
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.reviews.append((self.path, body["request"]))
                if self.path == "/slow":
                    time.sleep(outer.slow_seconds)
                elif self.path == "/hold":
                    outer.released.wait(60)
                answer = b"not a review" if self.path == "/garbage" else json.dumps(
                    _answer(self.path, body["request"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        # the TLS handshake happens in each connection's own thread, not in accept(): a client
        # that stalls its handshake cannot stop serve_forever (and so stop()) from returning
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        """Answer every held review, and those to come."""
        self.released.set()

    def stop(self) -> None:
        """Idempotent: a test may stop the server and its fixture stop it again."""
        self.release()
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()

    def paths_seen(self) -> list[str]:
        return [p for p, _ in self.reviews]


def configuration(kind: str, name: str, hooks: list[dict]) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": hooks}


def hook(name: str, client_config: dict, resources: list[str], operations=("CREATE", "UPDATE"), groups=("",),
         **extra) -> dict:
    return {"name": name, "clientConfig": client_config, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": list(operations), "apiGroups": list(groups), "apiVersions": ["v1"],
                       "resources": resources}], **extra}
