"""Failover of the two balancers of an HA cluster, against real HTTP servers on loopback:
the client-side one (`client/rest.py` ServerList, agents and controllers) and the TCP one
in front of kubectl (`cli/balancer.py`)."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from sendo.cli.balancer import TCPBalancer
from sendo.client import ApiError, Client, kind
from sendo.client.rest import ServerList, server_urls
from sendo.serving import free_port, listen_socket


class Backend:
    """An HTTP server on a loopback port that says who it is; it can drop connections,
    fail its /readyz, or be stopped (its port then refuses connections)."""

    def __init__(self, name: str):
        self.name = name
        self.port = free_port()
        self.ready = True
        self.drop = False  # close the connection instead of answering (after reading the request)
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Backend":
        app = web.Application()
        app.router.add_route("*", "/readyz", self._readyz)
        app.router.add_route("*", "/who", self._who)
        app.router.add_get("/api/v1/configmaps", self._watch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready else 500, text="ok" if self.ready else "no")

    async def _who(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.method)
        if self.drop:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
        return web.json_response({"who": self.name})

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"%s"}}}\n' % self.name.encode())
        if self.drop:
            assert request.transport is not None
            request.transport.close()
            return resp
        await asyncio.sleep(0.05)
        return resp


@pytest.fixture
async def backends():
    made = [await Backend(n).start() for n in ("a", "b", "c")]
    yield made
    for b in made:
        await b.stop()


def test_server_list_parses_and_rotates():
    assert server_urls(" https://h1:6443/, https://h2:6443 ") == ["https://h1:6443", "https://h2:6443"]
    for bad in ("", " , ", "https://h1,http://h2", "ftp://h1"):
        with pytest.raises(ValueError):
            server_urls(bad)
    s = ServerList(["https://a", "https://b", "https://c"])
    s.failed("https://b")  # not the current one: another caller already moved on
    assert s.current == "https://a" and s.failovers == 0
    s.failed("https://a")
    s.failed("https://b")
    s.failed("https://c")
    assert s.current == "https://a" and s.failovers == 3  # round again to the first
    one = ServerList("https://only")
    one.failed("https://only")
    assert one.current == "https://only" and one.failovers == 0


async def test_a_refused_connection_moves_every_request_to_the_next_server(backends):
    a, b, _ = backends
    await a.stop()  # its port now refuses connections
    c = Client([a.url, b.url], "t")
    try:
        assert (await c.request("GET", "/who"))["who"] == "b"
        # a write that never reached a server can go to another one
        assert (await c.request("POST", "/who", body={}))["who"] == "b"
        assert c.server == b.url and c.servers.failovers == 1
    finally:
        await c.close()


async def test_a_dropped_read_is_repeated_elsewhere_but_a_dropped_write_is_not(backends):
    a, b, _ = backends
    a.drop = True
    c = Client(f"{a.url},{b.url}", "t")
    try:
        assert (await c.request("GET", "/who"))["who"] == "b"
        assert "GET" in a.seen and b.seen == ["GET"]  # (aiohttp itself may repeat a GET on a once)
        a.seen.clear()
        c.servers.index = 0  # back to a, which drops what it gets
        with pytest.raises(aiohttp.ClientError):
            await c.request("POST", "/who", body={})  # a may have acted on it: not sent twice
        assert a.seen == ["POST"] and b.seen == ["GET"]
        assert c.server == b.url  # the next request goes to b
        assert (await c.request("POST", "/who", body={}))["who"] == "b"
    finally:
        await c.close()


async def test_every_server_down_raises_after_trying_each_once(backends):
    for b in backends:
        await b.stop()
    c = Client([b.url for b in backends], "t")
    try:
        with pytest.raises(aiohttp.ClientConnectorError):
            await c.request("GET", "/who")
        assert c.servers.failovers == 3
    finally:
        await c.close()


async def test_a_watch_fails_over_and_a_dropped_stream_moves_the_next_watch(backends):
    a, b, _ = backends
    c = Client([a.url, b.url], "t")
    try:
        a.drop = True
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            async for _ in c.watch(kind("configmaps")):
                pass
        assert c.server == b.url  # a dropped mid-stream: the next watch goes to b
        await a.stop()
        c.servers.index = 0  # a again: its port refuses, so the watch opens on b
        got = [obj["metadata"]["name"] async for _, obj in c.watch(kind("configmaps"))]
        assert got == ["b"] and c.server == b.url
    finally:
        await c.close()


async def test_an_http_error_is_an_answer_not_a_failover(backends):
    a, b, _ = backends
    c = Client([a.url, b.url], "t")
    try:
        with pytest.raises(ApiError) as e:
            await c.request("GET", "/nothing-here")
        assert e.value.status == 404 and c.server == a.url and c.servers.failovers == 0
    finally:
        await c.close()


# ============================================================================ the TCP balancer


async def _who(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/who", timeout=aiohttp.ClientTimeout(total=10)) as r:
        return (await r.json())["who"]


@pytest.fixture
async def balancer(backends):
    lb = TCPBalancer([("127.0.0.1", b.port) for b in backends], ca_pem=None, interval=3600)
    await lb.start(listen_socket("127.0.0.1", 0))
    yield lb
    await lb.stop()


def _fresh() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))  # one connection a request


async def test_balancer_takes_healthy_servers_in_turn(backends, balancer):
    async with _fresh() as s:
        got = [await _who(s, balancer.port) for _ in range(6)]
    assert sorted(got) == ["a", "a", "b", "b", "c", "c"]


async def test_balancer_skips_a_dead_server_at_once_and_its_check_brings_it_back(backends, balancer):
    a = backends[0]
    await a.stop()
    async with _fresh() as s:
        got = [await _who(s, balancer.port) for _ in range(6)]  # no request fails, none reaches a
        assert "a" not in got and set(got) == {"b", "c"}
        assert not balancer.backends[0].healthy  # marked down by the refusal, before any check
        await a.start()
        await balancer.check_all()
        assert balancer.backends[0].healthy
        got = [await _who(s, balancer.port) for _ in range(6)]
        assert "a" in got


async def test_balancer_follows_readyz_and_closes_when_nothing_answers(backends, balancer):
    backends[1].ready = False
    await balancer.check_all()
    assert [b.healthy for b in balancer.backends] == [True, False, True]
    async with _fresh() as s:
        got = [await _who(s, balancer.port) for _ in range(4)]
        assert set(got) == {"a", "c"}
        for b in backends:
            await b.stop()
        with pytest.raises(aiohttp.ClientError):
            await _who(s, balancer.port)
    assert not any(b.healthy for b in balancer.backends)


async def test_balancer_ends_a_connection_when_its_server_goes(backends, balancer):
    """A long-lived connection (a watch) through the balancer ends with its server, so the
    client reconnects, to a live one."""
    r, w = await asyncio.open_connection("127.0.0.1", balancer.port)
    try:
        w.write(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r.readline(), 10)).startswith(b"HTTP/1.1 200")
        serving = next(b for b in balancer.backends if b.connections == 1)
        await next(b for b in backends if b.port == serving.port).stop()
        assert await asyncio.wait_for(r.read(), 10) is not None  # EOF, not a hang
        assert serving.connections == 0
    finally:
        w.close()


def test_server_options_take_a_list_and_refuse_a_bad_one():
    import typer

    from sendo.cli.main import _server_list
    assert _server_list("https://h1:6443, https://h2:6443/") == "https://h1:6443,https://h2:6443"
    with pytest.raises(typer.BadParameter, match="all be https"):
        _server_list("https://h1:6443,http://h2:6443")
