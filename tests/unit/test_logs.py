"""Container logs: layout, tail/limit/since, copytruncate rotation, following."""
import asyncio
import os

import pytest

from sendo.agent.logs import container_log_path, follow_log, read_log, rotate_if_needed
from tests.waiting import wait_until


def slurp(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class Writer:
    """Writes like a container does: one O_APPEND descriptor, never reopened."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, data: bytes):
        os.write(self.fd, data)

    def close(self):
        os.close(self.fd)


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "0.log")


@pytest.fixture
def writer(log):
    w = Writer(log)
    yield w
    w.close()


class Follower:
    """Collects what follow_log yields in a task, so a test can watch it grow."""

    def __init__(self, path, tail_lines=None, poll_interval=0.02):
        self.running = True
        self.data = b""
        self.task = asyncio.create_task(self._run(path, tail_lines, poll_interval))

    async def _run(self, path, tail_lines, poll_interval):
        async for chunk in follow_log(
            path, tail_lines=tail_lines, is_running=lambda: self.running, poll_interval=poll_interval
        ):
            self.data += chunk

    async def finish(self):
        self.running = False
        await asyncio.wait_for(self.task, 10)
        return self.data


def test_container_log_path_is_the_kubelet_layout():
    assert container_log_path("/var/log/pods", "ns", "web", "u-1", "app", 2) == "/var/log/pods/ns_web_u-1/app/2.log"


async def test_tail_lines(log, writer):
    writer.write(b"1\n2\n3\n")
    assert await read_log(log, tail_lines=None, limit_bytes=None) == b"1\n2\n3\n"
    assert await read_log(log, tail_lines=2, limit_bytes=None) == b"2\n3\n"
    assert await read_log(log, tail_lines=3, limit_bytes=None) == b"1\n2\n3\n"
    assert await read_log(log, tail_lines=10, limit_bytes=None) == b"1\n2\n3\n"
    assert await read_log(log, tail_lines=0, limit_bytes=None) == b""
    writer.write(b"partial")  # an unfinished last line counts as a line
    assert await read_log(log, tail_lines=2, limit_bytes=None) == b"3\npartial"


async def test_tail_across_read_blocks(log, writer):
    lines = [f"line {i} ".encode() + b"x" * 1000 + b"\n" for i in range(500)]  # ~500 KiB
    writer.write(b"".join(lines))
    assert await read_log(log, tail_lines=200, limit_bytes=None) == b"".join(lines[-200:])
    assert await read_log(log, tail_lines=499, limit_bytes=None) == b"".join(lines[1:])


async def test_limit_bytes_cuts_the_selected_output(log, writer):
    writer.write(b"aaaa\nbbbb\ncccc\n")
    assert await read_log(log, tail_lines=None, limit_bytes=7) == b"aaaa\nbb"
    assert await read_log(log, tail_lines=2, limit_bytes=7) == b"bbbb\ncc"
    assert await read_log(log, tail_lines=1, limit_bytes=100) == b"cccc\n"


async def test_since_time_and_missing_file(log, writer, tmp_path):
    writer.write(b"old\n")
    mtime = os.stat(log).st_mtime
    assert await read_log(log, tail_lines=None, limit_bytes=None, since_time=mtime + 60) == b""
    assert await read_log(log, tail_lines=None, limit_bytes=None, since_time=mtime - 60) == b"old\n"
    assert await read_log(str(tmp_path / "nope.log"), tail_lines=5, limit_bytes=None) == b""


def test_rotate_copies_then_truncates_and_the_writer_continues(log, writer):
    writer.write(b"x" * 100)
    assert not rotate_if_needed(log, max_bytes=1000)
    writer.write(b"y" * 1000)
    assert rotate_if_needed(log, max_bytes=1000)
    assert slurp(log + ".1") == b"x" * 100 + b"y" * 1000
    assert os.path.getsize(log) == 0
    writer.write(b"after\n")  # O_APPEND: lands at the new end, no hole
    assert slurp(log) == b"after\n"
    assert not rotate_if_needed(log + ".missing", max_bytes=1)


def test_rotate_keeps_older_copies(log, writer):
    for i in range(3):
        writer.write(str(i).encode() * 10)
        assert rotate_if_needed(log, max_bytes=10, keep=2)
    assert slurp(log + ".1") == b"2" * 10
    assert slurp(log + ".2") == b"1" * 10
    assert not os.path.exists(log + ".3")
    writer.write(b"z" * 10)
    assert rotate_if_needed(log, max_bytes=10, keep=0)
    assert os.path.getsize(log) == 0 and slurp(log + ".1") == b"2" * 10


async def test_follow_yields_tail_then_new_data_and_ends_when_not_running(log, writer):
    writer.write(b"1\n2\n3\n")
    f = Follower(log, tail_lines=1)
    await wait_until(lambda: f.data == b"3\n")
    writer.write(b"4\n")
    await wait_until(lambda: f.data == b"3\n4\n")
    writer.write(b"5\n")  # written just before the container exits: still delivered
    assert await f.finish() == b"3\n4\n5\n"


async def test_follow_waits_for_the_file_to_appear(log, tmp_path):
    path = str(tmp_path / "later.log")
    f = Follower(path, tail_lines=10)
    w = Writer(path)
    try:
        w.write(b"hello\n")
        await wait_until(lambda: f.data == b"hello\n")
    finally:
        w.close()
    assert await f.finish() == b"hello\n"
    # not running and no file: ends at once
    assert [c async for c in follow_log(str(tmp_path / "never.log"), tail_lines=None, is_running=lambda: False)] == []


async def test_follow_survives_copytruncate_rotation(log, writer):
    f = Follower(log)
    writer.write(b"before\n")
    await wait_until(lambda: f.data == b"before\n")
    assert rotate_if_needed(log, max_bytes=1)
    writer.write(b"after\n")
    await wait_until(lambda: f.data == b"before\nafter\n")
    assert await f.finish() == b"before\nafter\n"


async def test_follow_gets_bytes_written_just_before_a_rotation(log, writer):
    """Data written after the follower's last read but before the copy is only in the
    copy; data written after the truncation is in the file. Both are delivered."""
    writer.write(b"first line\n")
    gen = follow_log(log, tail_lines=None, is_running=lambda: True, poll_interval=0.01)
    try:
        assert await gen.__anext__() == b"first line\n"
        # the generator is paused at its yield: nothing is read until the next step
        writer.write(b"unseen\n")
        assert rotate_if_needed(log, max_bytes=1)
        writer.write(b"new\n")
        got = b""
        while got != b"unseen\nnew\n":
            got += await asyncio.wait_for(gen.__anext__(), 10)
            assert len(got) <= len(b"unseen\nnew\n"), got
    finally:
        await gen.aclose()


async def test_follow_moves_to_a_replaced_file(log, writer, tmp_path):
    f = Follower(log)
    writer.write(b"old\n")
    await wait_until(lambda: f.data == b"old\n")
    os.rename(log, str(tmp_path / "moved.log"))
    writer.write(b"old2\n")  # still the old file, read before moving on
    w2 = Writer(log)
    try:
        w2.write(b"new\n")
        await wait_until(lambda: f.data == b"old\nold2\nnew\n")
    finally:
        w2.close()
    assert await f.finish() == b"old\nold2\nnew\n"


