"""The log-shipping add-on's per-node program: `python -m sendo.addons.logship`.

Run by the process runtime as the container of a DaemonSet pod. It lists the pods bound
to its node (``$NODE_NAME``) every few seconds and follows the log of every running
container through the API (``pods/log?follow=true``, the pod's ServiceAccount token
from ``$SENDO_SERVICEACCOUNT_DIR``), one thread per container. Each line becomes a JSON
object ``{"time", "node", "namespace", "pod", "container", "line"}``, appended to
``--file`` or POSTed in batches (``application/x-ndjson``) to ``--url``.

A container is followed once per run (its restart count is part of the key); a stream
that breaks while the container still runs is followed again from its end
(``tailLines=0``), so no line is shipped twice. Standard library only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Callable

LIST_EVERY = 2.0
BATCH_LINES = 200
BATCH_WAIT = 1.0
HTTP_TIMEOUT = 10.0


class API:
    """The API server as the pod sees it: address from the environment, token and CA from its directory."""

    def __init__(self, env: dict[str, str]):
        host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{'[' + host + ']' if ':' in host else host}:{port}"
        self.dir = env.get("SENDO_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPSHandler(context=self.ctx))

    def open(self, path: str, params: dict[str, str], timeout: float | None) -> Any:
        with open(os.path.join(self.dir, "token")) as f:  # renewed by the agent: read it every time
            token = f.read().strip()
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        return self.opener.open(req, timeout=timeout)

    def pods(self, node: str) -> list[dict]:
        with self.open("/api/v1/pods", {"fieldSelector": f"spec.nodeName={node}"}, HTTP_TIMEOUT) as r:
            return json.loads(r.read()).get("items") or []


def running_containers(pod: dict) -> list[tuple[str, int]]:
    """(container, restartCount) of each container of the pod that runs now."""
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if (cs.get("state") or {}).get("running") is not None:
            out.append((cs["name"], int(cs.get("restartCount") or 0)))
    return out


class FileSink:
    def __init__(self, path: str):
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(path, "a", buffering=1)

    def put(self, record: dict) -> None:
        data = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            self.f.write(data)


class HTTPSink:
    """Batches of JSON lines POSTed by one thread; a batch that cannot be sent is retried
    three times, then dropped with a message (a log shipper must not grow without bound)."""

    def __init__(self, url: str, max_queued: int = 100_000):
        self.url = url
        self.q: queue.Queue[dict] = queue.Queue(max_queued)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        threading.Thread(target=self._run, daemon=True).start()

    def put(self, record: dict) -> None:
        try:
            self.q.put_nowait(record)
        except queue.Full:
            print("logship: queue full, line dropped", file=sys.stderr)

    def _run(self) -> None:
        while True:
            batch = [self.q.get()]
            deadline = time.monotonic() + BATCH_WAIT
            while len(batch) < BATCH_LINES:
                try:
                    batch.append(self.q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self.send(batch)

    def send(self, batch: list[dict]) -> bool:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch).encode()
        for attempt in range(3):
            try:
                req = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/x-ndjson"})
                with self.opener.open(req, timeout=HTTP_TIMEOUT) as r:
                    r.read()
                return True
            except OSError as e:
                print(f"logship: POST {self.url}: {e}", file=sys.stderr)
                time.sleep(0.5 * 2 ** attempt)
        print(f"logship: dropped {len(batch)} lines", file=sys.stderr)
        return False


class Shipper:
    def __init__(self, api: API, node: str, sink: Any, namespaces: list[str],
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.api, self.node, self.sink, self.namespaces, self.now = api, node, sink, set(namespaces), now
        self.followed: set[tuple[str, str, int]] = set()  # (pod uid, container, restartCount)
        self.live: set[tuple[str, str, int]] = set()  # those whose stream is open now
        self.lock = threading.Lock()

    def sync(self) -> None:
        """Start following every running container that has no open stream."""
        for pod in self.api.pods(self.node):
            meta = pod.get("metadata") or {}
            if self.namespaces and meta.get("namespace") not in self.namespaces:
                continue
            for container, restarts in running_containers(pod):
                key = (meta.get("uid", ""), container, restarts)
                with self.lock:
                    if key in self.live:
                        continue
                    again = key in self.followed
                    self.followed.add(key)
                    self.live.add(key)
                threading.Thread(target=self.follow, args=(meta["namespace"], meta["name"], container, key, again),
                                 daemon=True).start()

    def follow(self, ns: str, pod: str, container: str, key: tuple[str, str, int], again: bool) -> None:
        params = {"container": container, "follow": "true", **({"tailLines": "0"} if again else {})}
        path = f"/api/v1/namespaces/{ns}/pods/{pod}/log"
        try:
            with self.api.open(path, params, None) as r:
                for raw in r:
                    self.sink.put({"time": self.now().isoformat().replace("+00:00", "Z"), "node": self.node,
                                   "namespace": ns, "pod": pod, "container": container,
                                   "line": raw.decode(errors="replace").rstrip("\n")})
        except OSError as e:
            print(f"logship: {ns}/{pod}/{container}: {e}", file=sys.stderr)
        finally:
            with self.lock:
                self.live.discard(key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sendo.addons.logship", description=__doc__.splitlines()[0])
    p.add_argument("--file")
    p.add_argument("--url")
    p.add_argument("--namespace", action="append", default=[])
    args = p.parse_args(argv)
    if bool(args.file) == bool(args.url):
        p.error("give exactly one of --file and --url")
    node = os.environ.get("NODE_NAME", "")
    if not node:
        p.error("$NODE_NAME is not set")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sink = FileSink(args.file) if args.file else HTTPSink(args.url)
    shipper = Shipper(API(dict(os.environ)), node, sink, args.namespace)
    print(f"logship: node {node} -> {args.file or args.url}", flush=True)
    while True:
        try:
            shipper.sync()
        except (OSError, ValueError) as e:
            print(f"logship: listing pods: {e}", file=sys.stderr, flush=True)
        time.sleep(LIST_EVERY)


if __name__ == "__main__":
    sys.exit(main())
