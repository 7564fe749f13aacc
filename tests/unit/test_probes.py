"""Probe checks against real loopback servers, and the probe loop's threshold and timing
rules with short periods. Exec probes and hooks, which run processes, and the pod worker
are tested in tests/integration/test_probes.py.

Every server here listens on 127.0.0.1 on a free port; nothing leaves the machine.
"""
from __future__ import annotations

import asyncio
import socket
import time

from sendo import __version__
from sendo.agent import hooks, probes
from sendo.agent.probes import FAILURE, SUCCESS, UNKNOWN, WARNING, Outcome, ProbeLoop, Threshold
from tests.conftest import wait_until
from tests.probe_helpers import http_server, target


# ----------------------------------------------------------------------------- servers

def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- httpGet

async def test_http_status_codes_decide():
    with http_server() as (port, seen):
        t = target()
        assert (await probes.http_get({"port": port, "path": "/ok"}, t, 1)).result == SUCCESS
        assert (await probes.http_get({"port": port, "path": "/nocontent"}, t, 1)).result == SUCCESS
        o = await probes.http_get({"port": port, "path": "/fail"}, t, 1)
        assert o == Outcome(FAILURE, "HTTP probe failed with statuscode: 500")
        o = await probes.http_get({"port": port, "path": "/notfound"}, t, 1)
        assert o.message == "HTTP probe failed with statuscode: 404"
        # a large body does not matter: only the status decides, and little of it is read
        assert (await probes.http_get({"port": port, "path": "/big"}, t, 1)).result == SUCCESS


async def test_http_default_and_custom_headers():
    with http_server() as (port, seen):
        t = target()
        await probes.http_get({"port": port, "path": "/ok?x=1"}, t, 1)
        req = seen[-1]
        assert req["path"] == "/ok?x=1"
        major_minor = ".".join(__version__.split(".")[:2])
        assert req["user-agent"] == f"sendo-probe/{major_minor}"
        assert req["accept"] == "*/*"
        assert req["host"] == f"127.0.0.1:{port}"
        assert req["connection"] == "close"

        await probes.http_get({"port": port, "path": "/ok", "httpHeaders": [
            {"name": "X-Custom", "value": "yes"}, {"name": "Host", "value": "example.test"},
            {"name": "User-Agent", "value": "mine/1"}, {"name": "Accept", "value": ""}]}, t, 1)
        req = seen[-1]
        assert req["x-custom"] == "yes"
        assert req["host"] == "example.test"  # a virtual host, the connection still goes to the pod IP
        assert req["user-agent"] == "mine/1"
        assert "accept" not in req  # an empty value removes the default header


async def test_http_port_by_name_and_path_default():
    with http_server() as (port, seen):
        t = target("web-port", port)
        assert (await probes.http_get({"port": "web-port", "path": "/ok"}, t, 1)).result == SUCCESS
        await probes.http_get({"port": "web-port"}, t, 1)
        assert seen[-1]["path"] == "/"
        await probes.http_get({"port": str(port), "path": "ok"}, t, 1)  # numeric string; a path without /
        assert seen[-1]["path"] == "/ok"
        o = await probes.http_get({"port": "nope", "path": "/ok"}, t, 1)
        assert o.result == UNKNOWN and "nope" in o.message


async def test_http_redirects_followed_only_on_the_same_host():
    with http_server() as (port, seen):
        t = target()
        assert (await probes.http_get({"port": port, "path": "/redirect-same"}, t, 1)).result == SUCCESS
        assert [r["path"] for r in seen[-2:]] == ["/redirect-same", "/ok"]
        o = await probes.http_get({"port": port, "path": "/redirect-fail"}, t, 1)
        assert o == Outcome(FAILURE, "HTTP probe failed with statuscode: 500")

        n = len(seen)
        o = await probes.http_get({"port": port, "path": "/redirect-other"}, t, 1)
        assert o.result == WARNING and o.ok and "Probe terminated redirects" in o.message
        assert len(seen) == n + 1  # the other host was not contacted

        n = len(seen)
        o = await probes.http_get({"port": port, "path": "/loop"}, t, 2)
        assert o.result == WARNING
        assert len(seen) - n == probes.MAX_REDIRECTS + 1


async def test_http_refused_and_timeout():
    port = closed_port()
    o = await probes.http_get({"port": port, "path": "/healthz"}, target(), 1)
    assert o.result == FAILURE
    assert o.message == (f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: '
                         f'connect: connection refused')
    with http_server() as (port, seen):
        o = await probes.http_get({"port": port, "path": "/slow"}, target(), 0.3)
        # /slow answers 200 after 1.5 s: a failure proves the 0.3 s timeout cut it short
        assert o.result == FAILURE and "context deadline exceeded" in o.message


async def test_https_without_certificate_verification(tmp_path):
    with http_server(str(tmp_path / "tls")) as (port, seen):
        o = await probes.http_get({"port": port, "path": "/ok", "scheme": "HTTPS"}, target(), 2)
        assert o.result == SUCCESS, o
        o = await probes.http_get({"port": port, "path": "/fail", "scheme": "HTTPS"}, target(), 2)
        assert o.message == "HTTP probe failed with statuscode: 500"
    with http_server() as (port, seen):  # HTTPS to a plain HTTP server: a TLS error, a failure
        o = await probes.http_get({"port": port, "path": "/ok", "scheme": "HTTPS"}, target(), 2)
        assert o.result == FAILURE and "dial tcp" not in o.message, o


# ----------------------------------------------------------------------------- tcpSocket

async def test_tcp_socket():
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        port = lst.getsockname()[1]
        assert (await probes.tcp_socket({"port": port}, target(), 1)).result == SUCCESS
        assert (await probes.tcp_socket({"port": "tcp"}, target("tcp", port), 1)).result == SUCCESS
    port = closed_port()
    o = await probes.tcp_socket({"port": port}, target(), 1)
    assert o == Outcome(FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


# ----------------------------------------------------------------------------- dispatch

def test_settings_defaults_and_single_success():
    assert probes.settings("readiness", {}) == (0, 10, 1, 1, 3)
    assert probes.settings("readiness", {"successThreshold": 2, "periodSeconds": 1, "timeoutSeconds": 0,
                                         "initialDelaySeconds": 5, "failureThreshold": 1}) == (5, 1, 1, 2, 1)
    assert probes.settings("liveness", {"successThreshold": 3})[3] == 1
    assert probes.settings("startup", {"successThreshold": 3})[3] == 1


# ----------------------------------------------------------------------------- thresholds

def test_threshold_failure_and_success_runs():
    t = Threshold(True, success=1, failure=3)
    assert [t.observe(x) for x in (False, False)] == [False, False] and t.value is True
    assert t.observe(False) is True and t.value is False  # third failure in a row
    assert t.observe(False) is False  # still failed: no change
    assert t.observe(True) is True and t.value is True

    t = Threshold(False, success=2, failure=1)
    assert t.observe(True) is False  # one success is not enough
    assert t.observe(False) is False  # the run is broken, the state was already False
    assert [t.observe(True), t.observe(True)] == [False, True]
    assert t.observe(False) is True  # failureThreshold 1

    t = Threshold(None, success=1, failure=2)  # startup: unknown until decided
    assert t.observe(False) is False
    assert t.observe(True) is True and t.value is True


class Scripted:
    """A check returning scripted outcomes (the last one repeats), timing each call."""

    def __init__(self, *results: str):
        self.results = list(results)
        self.calls: list[float] = []

    async def __call__(self) -> Outcome:
        self.calls.append(time.monotonic())
        r = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        return Outcome(r, {FAILURE: "HTTP probe failed with statuscode: 500", UNKNOWN: "boom",
                           WARNING: "Probe terminated redirects"}.get(r, ""))


def _loop(kind, probe, check, **kw):
    changes, events = [], []
    loop = ProbeLoop(kind, {"periodSeconds": 0.05, **probe}, check, started_at=kw.pop("started_at", time.time()),
                     on_result=lambda k, ok: changes.append((k, ok)),
                     on_event=lambda t, r, m: events.append((t, r, m)), **kw)
    return loop, changes, events


async def test_liveness_fails_after_failure_threshold_then_stops():
    check = Scripted(SUCCESS, FAILURE, FAILURE, SUCCESS, FAILURE, FAILURE, FAILURE)
    loop, changes, events = _loop("liveness", {"failureThreshold": 3}, check)
    await asyncio.wait_for(loop.run(), 5)  # returns by itself once failed
    assert changes == [("liveness", False)]
    assert len(check.calls) == 7  # a success in between restarts the count
    unhealthy = [e for e in events if e[1] == "Unhealthy"]
    assert len(unhealthy) == 5
    assert unhealthy[0] == ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")


async def test_readiness_follows_thresholds_and_keeps_running():
    check = Scripted(FAILURE, SUCCESS, SUCCESS, FAILURE, SUCCESS, SUCCESS, SUCCESS)
    loop, changes, events = _loop("readiness", {"successThreshold": 2, "failureThreshold": 1}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 8, 5, what="8 readiness probes")
    task.cancel()
    assert changes == [("readiness", True), ("readiness", False), ("readiness", True)]
    assert ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500") in events


async def test_period_between_probes():
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {"periodSeconds": 0.2}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 3, 5, what="3 probes")
    task.cancel()
    gaps = [b - a for a, b in zip(check.calls, check.calls[1:])]
    assert all(0.17 <= g <= 0.5 for g in gaps), gaps


async def test_unknown_results_are_thrown_away_and_warnings_count_as_success():
    check = Scripted(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, WARNING)
    loop, changes, events = _loop("liveness", {"failureThreshold": 1}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(check.calls) >= 6, 5, what="6 probes")
    task.cancel()
    assert changes == []  # never failed: an errored probe does not count
    assert ("Warning", "Unhealthy", "Liveness probe errored: boom") in events
    assert ("Warning", "ProbeWarning", "Liveness probe warning: Probe terminated redirects") in events

    check = Scripted(WARNING)
    loop, changes, events = _loop("readiness", {}, check)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: changes, 5, what="ready")
    task.cancel()
    assert changes == [("readiness", True)]


async def test_startup_success_ends_its_loop_and_failure_reports():
    loop, changes, events = _loop("startup", {"failureThreshold": 2}, Scripted(FAILURE, SUCCESS))
    await asyncio.wait_for(loop.run(), 5)
    assert changes == [("startup", True)]

    loop, changes, events = _loop("startup", {"failureThreshold": 2}, Scripted(FAILURE))
    await asyncio.wait_for(loop.run(), 5)
    assert changes == [("startup", False)]
    assert [e[2] for e in events] == ["Startup probe failed: HTTP probe failed with statuscode: 500"] * 2


class _Gate(asyncio.Event):
    """A gate that counts who waits at it: the sign that a probe loop got there."""

    def __init__(self):
        super().__init__()
        self.waiting = 0

    async def wait(self):
        self.waiting += 1
        return await super().wait()


async def test_gate_holds_probes_back_until_started():
    gate = _Gate()
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {"periodSeconds": 3600}, check, gate=gate)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: gate.waiting, 5, what="the loop to reach the gate")
    assert check.calls == [] and changes == []  # nothing ran before it
    gate.set()
    # at once, not a period (an hour) later
    await wait_until(lambda: changes, 10, what="readiness after the gate opened")
    task.cancel()
    assert changes == [("readiness", True)]


async def test_initial_delay_counts_from_the_container_start():
    check = Scripted(SUCCESS)
    started = time.time()
    loop, changes, events = _loop("readiness", {"initialDelaySeconds": 0.4}, check, started_at=started)
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first probe")
    task.cancel()
    assert check.calls[0] - t0 >= 0.38

    # liveness comes one period after that
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("liveness", {"initialDelaySeconds": 0.2, "periodSeconds": 0.3}, check,
                                  started_at=time.time())
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first liveness probe")
    task.cancel()
    assert check.calls[0] - t0 >= 0.48

    # a container that started long ago (adopted) is probed at once
    check = Scripted(SUCCESS)
    loop, changes, events = _loop("readiness", {"initialDelaySeconds": 30}, check, started_at=started - 60)
    t0 = time.monotonic()
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: check.calls, 5, what="first probe")
    task.cancel()
    assert check.calls[0] - t0 < 0.2


async def test_probe_loop_against_a_real_server_becomes_ready(tmp_path):
    """End to end in one process: a readiness probe against a server that starts failing."""
    with http_server() as (port, seen):
        t = target()
        probe = {"httpGet": {"port": port, "path": "/fail"}, "periodSeconds": 0.05, "failureThreshold": 2}
        loop, changes, events = _loop("readiness", probe, lambda: probes.run_probe(probe, t), initial=True)
        task = asyncio.create_task(loop.run())
        await wait_until(lambda: changes, 5, what="not ready")
        task.cancel()
        assert changes == [("readiness", False)]
        assert events[0] == ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500")


# ----------------------------------------------------------------------------- hooks

async def test_http_and_sleep_hooks():
    with http_server() as (port, seen):
        t = target()
        assert await hooks.run_handler({"httpGet": {"port": port, "path": "/hook"}}, t,
                                       hook="PreStop", container="web", pod="default/p") is None
        assert seen[-1]["path"] == "/hook" and seen[-1]["user-agent"].startswith("sendo-lifecycle/")
    err = await hooks.run_handler({"httpGet": {"port": closed_port(), "path": "/hook"}}, target(),
                                  hook="PreStop", container="web", pod="default/p")
    assert err and "Http lifecycle hook (/hook)" in err
    began = time.monotonic()
    assert await hooks.run_handler({"sleep": {"seconds": 0.2}}, target(), hook="PreStop", container="web",
                                   pod="default/p") is None
    assert time.monotonic() - began >= 0.19
    err = await hooks.run_handler({"tcpSocket": {"port": 80}}, target(), hook="PreStop", container="web",
                                  pod="default/p")
    assert err and "not supported" in err
