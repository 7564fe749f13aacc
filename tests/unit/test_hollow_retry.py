"""Hollow nodes retry a status write the API says failed for a passing reason (the 10k-pod
benchmark on etcd lost 55 pods for good to one etcd leader change's 503s), and give up at
once on a final answer."""
import asyncio

import pytest

from sendo.agent.hollow import retry_transient
from sendo.client import ApiError


def failing(errors: list[Exception]):
    calls = []

    async def call():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "written"
    return call, calls


async def test_passing_failures_are_retried_until_the_write_succeeds():
    call, calls = failing([ApiError(503, {"reason": "ServiceUnavailable"}), ApiError(429, {}),
                           ConnectionResetError(), asyncio.TimeoutError()])
    assert await retry_transient(call, attempts=5, delay=0.001) == "written"
    assert len(calls) == 5


async def test_a_final_answer_is_not_retried():
    call, calls = failing([ApiError(404, {"reason": "NotFound"})])
    with pytest.raises(ApiError):
        await retry_transient(call, attempts=5, delay=0.001)
    assert len(calls) == 1


async def test_retries_are_bounded():
    call, calls = failing([ApiError(503, {}) for _ in range(10)])
    with pytest.raises(ApiError):
        await retry_transient(call, attempts=3, delay=0.001)
    assert len(calls) == 3
