"""client/local.py's contract with an ASGI app, at the edges a real server seldom shows:
a stream whose answer never starts must not outlive the caller that gave up on it."""
from __future__ import annotations

import asyncio

import pytest

from sendo.client.local import LocalTransport


async def test_a_stream_that_never_starts_is_cancelled_when_the_caller_gives_up():
    state = {"entered": False, "ended": False}

    async def slow_app(scope, receive, send):
        state["entered"] = True
        try:
            await asyncio.sleep(3600)  # an answer that would come far too late
        finally:
            state["ended"] = True
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(LocalTransport(slow_app).stream("GET", "/api/v1/pods", {"watch": "true"}, {}), 0.2)
    assert state == {"entered": True, "ended": True}


async def test_a_failing_app_fails_the_stream_and_the_request():
    async def broken(scope, receive, send):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        await LocalTransport(broken).stream("GET", "/x", None, {})
    with pytest.raises(RuntimeError, match="boom"):
        await LocalTransport(broken).request("GET", "/x", None, None, {})


async def test_the_scope_carries_the_query_headers_and_body():
    seen = {}

    async def echo(scope, receive, send):
        msg = await receive()
        seen.update(path=scope["path"], query=scope["query_string"], headers=dict(scope["headers"]),
                    body=msg["body"])
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
    status, body = await LocalTransport(echo).request("POST", "/api/v1/x?a=1", b"{}", {"b": "2"},
                                                      {"Authorization": "Bearer t"})
    assert (status, body) == (201, b"ok")
    assert seen == {"path": "/api/v1/x", "query": b"a=1&b=2",
                    "headers": {b"authorization": b"Bearer t", b"content-length": b"2"}, "body": b"{}"}
