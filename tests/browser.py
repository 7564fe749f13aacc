"""Headless Chromium (Debian's `chromium`, installed by scripts/setup-console.sh) driven over
the Chrome DevTools Protocol with a plain WebSocket client: evaluate JavaScript in the
page, type and press keys as a user would, take screenshots.

The browser is started here and stopped by its process group (a session of its own, made
at start). It may talk to loopback only: every host name resolves to nothing
(--host-resolver-rules) and its background services (updates, sync, safe browsing,
metrics) are off, so nothing leaves the machine.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"
START_DEADLINE = 60.0
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--no-pings",
    "--metrics-recording-only", "--disable-breakpad", "--no-proxy-server",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    # the cluster's certificate is signed by its own CA, which this throwaway profile does not know
    "--ignore-certificate-errors",
    "--window-size=1400,1000",
]


class BrowserError(Exception):
    pass


def describe(event: dict) -> str:
    """A page error or console message as one line."""
    p = event["params"]
    if event["method"] == "Runtime.exceptionThrown":
        d = p["exceptionDetails"]
        return f"error: {d.get('exception', {}).get('description') or d.get('text')}"
    return f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])


class Browser:
    def __init__(self, profile: Path):
        if not os.path.exists(CHROMIUM):
            raise BrowserError(f"{CHROMIUM} is missing: run scripts/setup-console.sh (make test does)")
        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile / "chromium.log", "wb")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._ids = itertools.count(1)
        self.messages: list[str] = []
        try:
            self.ws = connect(self._page_url(), max_size=None, proxy=None, open_timeout=30, legacy=True)
            self.send("Page.enable")
            self.send("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def _page_url(self) -> str:
        """The page target's WebSocket, from the port Chromium wrote to DevToolsActivePort."""
        import urllib.request
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_DEADLINE
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited ({self.proc.returncode}); see {self.profile / 'chromium.log'}")
            try:
                port = int(port_file.read_text().split()[0])
                with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port in {START_DEADLINE}s")
            time.sleep(0.1)  # polling the port file Chromium writes once it listens

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict:
        """One DevTools command; its result. Events received meanwhile are dropped, but for
        the page's errors and console messages (kept in ``messages``, the last 200)."""
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer in {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled"):
                self.messages = [*self.messages[-199:], describe(msg)]
            if msg.get("id") == i:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r}: {d.get('exception', {}).get('description') or d['text']}")
        return r["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait(self, expression: str, timeout: float = 60.0, what: str = "") -> Any:
        """Evaluate until the expression is truthy; its value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
                last = value
            except BrowserError as e:  # the page is (re)loading
                last = e
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression} (last: {last}); "
                                     f"the page said: {self.messages[-10:]}")
            time.sleep(0.05)  # polling the page, as tests.waiting does

    def type(self, text: str) -> None:
        """Type into the focused element, as the keyboard would."""
        self.send("Input.insertText", text=text)

    def press(self, key: str) -> None:
        codes = {"Enter": 13, "Tab": 9}
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=codes[key],
                      **({"text": "\r"} if key == "Enter" and kind == "keyDown" else {}))

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        try:  # the browser and its helpers: the session started for it
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.profile / "Default", ignore_errors=True)
