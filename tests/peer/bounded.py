"""A pytest plugin the peer runner loads into a suite's child pytest (`-p peer_bounded`):
every phase of every test (setup, call, teardown) is bounded by SIGALRM at
`$PEER_TEST_TIMEOUT` seconds, so a test waiting for something sendo lacks fails with
`TestTimeout` instead of holding the suite.

The alarm repeats every 2 s after its first expiry: code that catches every exception
around its I/O and retries can swallow one TestTimeout, and a one-shot alarm would then
never fire again. It is disarmed before pytest reports a phase.
"""
import os
import signal

import pytest

PEER_TEST_TIMEOUT = float(os.environ.get("PEER_TEST_TIMEOUT", "20"))
REPEAT = 2.0


class TestTimeout(Exception):
    __test__ = False  # not a test class, whatever pytest's collection patterns say


def _expire(signum, frame):
    raise TestTimeout(f"test phase ran past {PEER_TEST_TIMEOUT:g}s")


def _phase():
    old = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, PEER_TEST_TIMEOUT, REPEAT)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _phase())
