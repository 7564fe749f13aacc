"""pods/portforward: SPDY/3.1 framing, the server-side SPDY session (kubectl's stream
pairs) against a local echo server, the agent's WebSocket relay and the channel protocol. The API server's WebSocket entry
point is tested in tests/integration/test_portforward.py. Everything runs on 127.0.0.1."""
from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib

import pytest
from aiohttp import web

from sendo.agent import portforward as agentpf
from sendo.api import portforward as pf
from sendo.api.portforward import (DATA, GOAWAY, PING, RST_STREAM, SYN_REPLY, SYN_STREAM, ChannelSession,
                                   FrameReader, FrameWriter, SpdySession, TCPTunnel, TunnelError)

from conftest import wait_until
from tests.portforward_helpers import EchoServer, SpdyClient, FakeAgent


# ---------------------------------------------------------------------------- helpers
def closed_port() -> int:
    """A loopback port nobody listens on."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- framing
def test_header_dictionary_is_spdy3():
    # the SPDY/3 dictionary, as every SPDY/3 implementation (Go's included) has it
    assert len(pf.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(pf.HEADER_DICTIONARY) == 0xE3C6A7C2
    assert pf.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert pf.HEADER_DICTIONARY.endswith(b",*,enq=0.")


def test_header_block_round_trip():
    h = {"streamtype": ["data"], "port": ["8080"], "x-multi": ["a", "b"]}
    block = pf.encode_header_block(h)
    assert block[:4] == struct.pack(">I", 3)
    assert pf.decode_header_block(block) == h
    assert pf.encode_header_block({"Port": ["1"]}) == pf.encode_header_block({"port": ["1"]})  # lower case on the wire
    with pytest.raises(pf.SpdyError):
        pf.decode_header_block(block[:-3])


def test_frames_round_trip_in_any_pieces():
    w, r = FrameWriter(), FrameReader()
    wire = b"".join([
        w.syn_stream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
        w.syn_stream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}),  # shares the zlib stream
        w.syn_reply(3),
        w.data(3, b"hello"),
        w.data(3, b"", fin=True),
        w.rst_stream(3, pf.RST_CANCEL),
        w.ping(7),
        w.goaway(3),
        FrameWriter.control(pf.SETTINGS, 0, struct.pack(">III", 1, 7, 100)),
    ])
    frames = []
    for i in range(len(wire)):  # byte by byte: frames are cut anywhere inside WebSocket messages
        frames += r.feed(wire[i:i + 1])
    assert [f.type for f in frames] == [SYN_STREAM, SYN_STREAM, SYN_REPLY, DATA, DATA, RST_STREAM, PING, GOAWAY,
                                       pf.SETTINGS]
    assert frames[0].stream_id == 1 and frames[0].headers == {"streamtype": ["error"], "port": ["80"],
                                                             "requestid": ["0"]}
    assert frames[1].headers["streamtype"] == ["data"]
    assert frames[2].stream_id == 3 and frames[2].headers == {}
    assert frames[3].data == b"hello" and not frames[3].fin
    assert frames[4].fin and frames[4].data == b""
    assert (frames[5].stream_id, frames[5].value) == (3, pf.RST_CANCEL)
    assert frames[6].value == 7
    assert frames[7].stream_id == 3


def test_frame_wire_layout():
    """Bytes as the SPDY/3 draft lays them out (and as Go's framer reads them)."""
    assert FrameWriter.data(3, b"ab", fin=True) == b"\x00\x00\x00\x03\x01\x00\x00\x02ab"
    assert FrameWriter.ping(1) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"
    assert FrameWriter.rst_stream(5, 5) == b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x05"
    reply = FrameWriter().syn_reply(1)
    assert reply[:4] == b"\x80\x03\x00\x02" and reply[8:12] == b"\x00\x00\x00\x01"
    assert int.from_bytes(reply[5:8], "big") == len(reply) - 8
    # the header block is a zlib stream primed with the dictionary, flushed per frame
    z = zlib.decompressobj(zdict=pf.HEADER_DICTIONARY)
    assert z.decompress(reply[12:]) == b"\x00\x00\x00\x00"


def test_bad_input_is_a_protocol_error():
    with pytest.raises(pf.SpdyError):
        FrameReader().feed(b"\x80\x02\x00\x01\x00\x00\x00\x00")  # SPDY/2
    with pytest.raises(pf.SpdyError):  # a header block that is not zlib
        FrameReader().feed(FrameWriter.control(SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"garbage"))


# ---------------------------------------------------------------------------- the SPDY session
async def tcp_opener(port_map=None):
    async def open_tunnel(port: int):
        return await TCPTunnel.open("127.0.0.1", (port_map or {}).get(port, port))
    return open_tunnel


async def test_session_forwards_a_connection_like_kubectl():
    async with EchoServer() as echo:
        c = SpdyClient()
        s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
        frames, err, data = c.open_pair(echo.port)
        await s.feed(frames)
        await c.wait(lambda: {err, data} <= c.replied)
        await s.feed(c.writer.data(data, b"ping-1"))
        await c.wait(lambda: bytes(c.data.get(data, b"")) == b"ping-1")
        await s.feed(c.writer.data(data, b"", fin=True))  # local EOF: the echo server half-closes too
        await c.wait(lambda: data in c.fin)
        await s.feed(c.writer.rst_stream(data, pf.RST_CANCEL))  # what kubectl does once it read the end
        await c.wait(lambda: err in c.fin)  # the error stream ends empty: no error
        assert not c.data.get(err)
        await c.wait(lambda: not s._pairs)
        await s.close()


async def test_session_concurrent_connections_and_large_transfer():
    async with EchoServer() as echo:
        c = SpdyClient()
        s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
        pairs = []
        for _ in range(5):
            frames, err, data = c.open_pair(echo.port)
            await s.feed(frames)
            pairs.append((err, data))
        await c.wait(lambda: all({e, d} <= c.replied for e, d in pairs))
        payloads = {d: os.urandom(300_000 + i) for i, (_, d) in enumerate(pairs)}
        # interleave the five uploads in 16 KiB DATA frames, as goroutines would
        for off in range(0, 310_000, 16384):
            for d, body in payloads.items():
                if off < len(body):
                    await s.feed(c.writer.data(d, body[off:off + 16384]))
        for d in payloads:
            await s.feed(c.writer.data(d, b"", fin=True))
        await c.wait(lambda: all(d in c.fin for d in payloads), 20)
        for d, body in payloads.items():
            assert hashlib.sha256(c.data[d]).digest() == hashlib.sha256(body).digest()
        assert echo.connections == 5
        for e, d in pairs:
            await s.feed(c.writer.rst_stream(d, pf.RST_CANCEL))
        await c.wait(lambda: all(e in c.fin for e, _ in pairs))
        await s.close()


async def test_session_reports_a_refused_port_on_the_error_stream():
    c = SpdyClient()
    s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
    port = closed_port()
    frames, err, data = c.open_pair(port)
    await s.feed(frames)
    await c.wait(lambda: err in c.fin and data in c.fin)
    msg = bytes(c.data[err]).decode()
    assert msg == f"error forwarding port {port} to pod default/web: dial tcp 127.0.0.1:{port}: connect: " \
                  "connection refused"
    await s.close()


async def test_session_invalid_port_and_stream_type():
    c = SpdyClient()
    s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
    frames, err, data = c.open_pair("http")
    await s.feed(frames)
    await c.wait(lambda: err in c.fin)
    assert "invalid port 'http'" in bytes(c.data[err]).decode()
    await s.feed(c.writer.syn_stream(101, {"streamtype": ["bogus"], "port": ["80"]}))
    await c.wait(lambda: 101 in c.reset)
    await s.close()


async def test_session_echoes_pings_and_ends_on_goaway():
    async with EchoServer() as echo:
        c = SpdyClient()
        s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
        await s.feed(c.writer.ping(1))
        await c.wait(lambda: c.pings == [1])
        frames, err, data = c.open_pair(echo.port)
        await s.feed(frames)
        await c.wait(lambda: echo.connections == 1)
        await s.feed(c.writer.goaway(data))
        assert s.closed and not s._pairs


async def test_session_without_request_ids_pairs_by_stream_id():
    """Old clients: no requestid header; the error stream comes right before its data stream."""
    async with EchoServer() as echo:
        c = SpdyClient()
        s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
        await s.feed(c.writer.syn_stream(1, {"streamtype": ["error"], "port": [str(echo.port)]}) +
                     c.writer.syn_stream(3, {"streamtype": ["data"], "port": [str(echo.port)]}))
        await c.wait(lambda: {1, 3} <= c.replied)
        await s.feed(c.writer.data(3, b"x", fin=True))
        await c.wait(lambda: 3 in c.fin and bytes(c.data[3]) == b"x")
        await s.close()


async def test_session_client_gone_stops_everything():
    async with EchoServer() as echo:
        c = SpdyClient()
        sent = []

        async def send(raw):
            sent.append(raw)
            if len(sent) > 2:
                raise OSError("client went away")
        s = SpdySession(send, await tcp_opener(), "default", "web")
        frames, err, data = c.open_pair(echo.port)
        await s.feed(frames)
        await s.feed(c.writer.data(data, b"hello"))
        await wait_until(lambda: s.closed, 5, 0.01)
        await s.close()
        assert not s._pairs


# ---------------------------------------------------------------------------- the agent's relay


@pytest.fixture
async def agent_url():
    agent = FakeAgent("node-secret")
    app = web.Application()
    app.router.add_get("/portForward/{ns}/{pod}", agentpf.handler(agent.token, agent.pod_address))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", agent
    await runner.cleanup()


async def test_agent_relays_bytes_and_half_close(agent_url):
    url, _ = agent_url
    async with EchoServer() as echo:
        t = await pf.AgentTunnel.open(url, "node-secret", "default", "web", echo.port, "node-a")
        body = os.urandom(2_000_000)
        received = bytearray()

        async def read_all():
            while (d := await t.recv()) is not None:
                received.extend(d)
        reader = asyncio.create_task(read_all())
        for i in range(0, len(body), 50_000):
            await t.send(body[i:i + 50_000])
        await t.send_eof()
        await asyncio.wait_for(reader, 20)  # eof from the echo server ends the read
        assert bytes(received) == body
        await t.close()


async def test_agent_reports_dial_errors_and_refuses_strangers(agent_url):
    url, agent = agent_url
    port = closed_port()
    t = await pf.AgentTunnel.open(url, "node-secret", "default", "web", port, "node-a")
    with pytest.raises(TunnelError, match=f"dial tcp 127.0.0.1:{port}: connect: connection refused"):
        await t.recv()
    await t.close()

    t = await pf.AgentTunnel.open(url, "node-secret", "default", "other", 80, "node-a")
    with pytest.raises(TunnelError, match='pod "other" is not running on node node-a'):
        await t.recv()
    await t.close()

    agent.pod_ip = None
    t = await pf.AgentTunnel.open(url, "node-secret", "default", "web", 80, "node-a")
    with pytest.raises(TunnelError, match="has no IP yet"):
        await t.recv()
    await t.close()

    with pytest.raises(TunnelError, match="refused the port-forward: 401"):
        await pf.AgentTunnel.open(url, "wrong", "default", "web", 80, "node-a")
    with pytest.raises(TunnelError, match="refused the port-forward: 400"):
        await pf.AgentTunnel.open(url, "node-secret", "default", "web", 0, "node-a")
    with pytest.raises(TunnelError, match="cannot reach the agent of node node-a"):
        await pf.AgentTunnel.open(f"http://127.0.0.1:{closed_port()}", "x", "default", "web", 80, "node-a")


async def test_agent_closes_when_the_api_server_goes(agent_url):
    url, _ = agent_url
    async with EchoServer() as echo:
        t = await pf.AgentTunnel.open(url, "node-secret", "default", "web", echo.port, "node-a")
        await t.send(b"abc")
        assert await t.recv() == b"abc"
        await t.close()
        await wait_until(lambda: echo.connections == 1, 5)


# ---------------------------------------------------------------------------- the channel protocol
async def test_channel_session_first_frames_carry_the_port():
    async with EchoServer() as echo:
        sent: list[dict] = []

        async def send(msg):
            sent.append(msg)
        bad = closed_port()
        s = ChannelSession(send, await tcp_opener(), [echo.port, bad], "default", "web")
        await s.start()
        p1, p2 = struct.pack("<H", echo.port), struct.pack("<H", bad)
        assert [m["bytes"] for m in sent[:4]] == [b"\x00" + p1, b"\x01" + p1, b"\x02" + p2, b"\x03" + p2]
        await s.feed(b"\x00hello")
        await wait_until(lambda: any(m.get("bytes") == b"\x00hello" for m in sent[4:]), 5)
        await wait_until(lambda: any(m.get("bytes", b"").startswith(b"\x03error forwarding port") for m in sent), 5)
        await s.close()


async def test_session_resets_a_stream_whose_pair_never_comes(monkeypatch):
    monkeypatch.setattr(pf, "STREAM_PAIR_TIMEOUT", 0.1)
    c = SpdyClient()
    s = SpdySession(c.from_server, await tcp_opener(), "default", "web")
    await s.feed(c.writer.syn_stream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}))
    await c.wait(lambda: 1 in c.replied)
    await c.wait(lambda: 1 in c.reset, 5)
    assert not s._pairs and not s._by_stream
    await s.close()
