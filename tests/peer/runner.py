"""Run a client's own test suite against a real `sendo up` and compare the outcome
with the expected-failures list.

Each suite's files are extracted from its pinned sdist (`sdists.py`) into a temp dir
together with the package they belong to (so their relative imports resolve), our
`e2e_base.py` is put where they import `e2e_test.base` from, and pytest runs them in
a child process with `KUBECONFIG` pointing at the cluster. The JUnit report gives each
test's outcome.

A suite whose pods need images (kr8s: nginx, ubuntu, pause) runs against
`sendo up --runtime docker` whose engine pulls LOCAL stand-ins named like those images
from a registry on loopback (standins.py): small busybox images that do what the tests
use the real ones for (serve HTTP on port 80, run sleep/date/cat, keep running). They
are not the real images; nothing is pulled from the internet.

`expected_failures.yaml` lists, per suite, every test that does not pass today and the
capability or defect it waits for. The run fails on a test that fails unlisted, on a
listed test that passes (strict: the list can only shrink) and on a listed test that
no longer exists.

Suites: the official `kubernetes` client, `kubernetes_asyncio`, kr8s, and kopf (what its
CI runs with `--only-e2e`: tests/e2e/test_examples.py runs each example operator of the
sdist, `examples/*/example.py`, with `kopf run` while kubectl creates and deletes a custom
object of its `examples/crd.yaml`, and examples 09, 10 and 11 run their own such tests).
lightkube's e2e tests are not here: no lightkube sdist on PyPI ships them (1.0.1, the
pinned one, and 1.0.0, 0.22.0, 0.21.0, 0.19.1, 0.17.2, 0.15.8, 0.10.0 were checked: the
newer hold only `src/`, the older only mocked unit tests), nor does lightkube-models
1.37.0.8; `e2e-tests/` lives only in lightkube's Git repository.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

from .sdists import KOPF, KR8S, KUBERNETES, KUBERNETES_ASYNCIO, Sdist, extract

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected_failures.yaml"
# one example operator's run (22 s at most seen, 7-9 s typical): the test's own waits of up
# to 10 s each for start, create, delete and stop, three kubectl calls of up to 10 s, and
# KopfRunner's 60 s join of the operator's thread; the bound is for a hang, not a slow run
KOPF_BOUND = 75.0


@dataclass(frozen=True)
class Suite:
    name: str
    sdist: Sdist
    packages: tuple[str, ...]  # top-level packages extracted beside the tests
    tests: tuple[str, ...]  # test files, relative to the extracted tree
    shims: tuple[str, ...] = ()  # packages that get our e2e_test/base.py
    conftest: str | None = None  # a conftest of ours for the suite (a file in this directory)
    deselect: tuple[str, ...] = ()  # tests whose outcome depends on the machine's speed, not on sendo
    timeout: float = 600.0  # for the whole suite
    standin_images: bool = False  # run against `sendo up --runtime docker` with local stand-in images (standins.py)
    system_pod: bool = False  # a pod Running in kube-system first, as kind's system pods are (with standin_images)
    bound: float | None = None  # seconds per test phase, by our bounded.py plugin


SUITES = {s.name: s for s in (
    Suite("kubernetes", KUBERNETES, ("kubernetes",),
          ("kubernetes/dynamic/test_client.py", "kubernetes/dynamic/test_discovery.py",
           "kubernetes/aio/dynamic/client_test.py", "kubernetes/aio/dynamic/discovery_test.py"),
          shims=("kubernetes", "kubernetes/aio")),
    Suite("kubernetes_asyncio", KUBERNETES_ASYNCIO, ("kubernetes_asyncio",),
          ("kubernetes_asyncio/dynamic/client_test.py", "kubernetes_asyncio/dynamic/discovery_test.py"),
          shims=("kubernetes_asyncio",)),
    Suite("kr8s", KR8S, ("kr8s",), ("kr8s/tests/test_api.py", "kr8s/tests/test_objects.py"),
          conftest="kr8s_conftest.py",
          # expects a 10 µs client timeout to expire: passes or fails with the machine's load
          deselect=("kr8s/tests/test_api.py::test_api_timeout",
                    # kr8s's PortForward.start() returns the local port it picked (random, 10000-60000,
                    # checked free by a connect only) as soon as it is set, before its background task
                    # has bound it, and a failed bind there is not reported: now and then the test's first
                    # GET to that local port is refused (httpx.ConnectError on 127.0.0.1, before any
                    # traffic reaches the cluster); the other four port-forward tests pass
                    "kr8s/tests/test_objects.py::test_pod_port_forward_start_stop"),
          # its pods run nginx, ubuntu and pause images: busybox stand-ins from a local registry
          standin_images=True,
          # its listing tests expect pods that kind runs in kube-system
          system_pod=True,
          bound=20.0, timeout=900.0),
    Suite("kopf", KOPF, ("kopf", "tests/e2e", "examples"),
          ("tests/e2e/test_examples.py", "examples/09-testing/test_example_09.py",
           "examples/10-builtins/test_example_10.py", "examples/11-filtering-handlers/test_example_11.py"),
          conftest="kopf_conftest.py", bound=KOPF_BOUND, timeout=900.0),
)}


def expected_failures(suite: str) -> dict[str, str]:
    return (yaml.safe_load(EXPECTED.read_text()) or {}).get(suite) or {}


@dataclass
class Outcome:
    outcome: str  # passed, failed, error, skipped
    detail: str = ""


def prepare(suite: Suite, root: Path) -> None:
    extract(suite.sdist, root, suite.packages)
    for pkg in suite.shims:
        d = root / pkg / "e2e_test"
        d.mkdir(exist_ok=True)
        (d / "__init__.py").write_text("")
        shutil.copy(HERE / "e2e_base.py", d / "base.py")
    if suite.conftest:
        shutil.copy(HERE / suite.conftest, root / "conftest.py")
    if suite.bound:
        shutil.copy(HERE / "bounded.py", root / "peer_bounded.py")
    (root / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")


def run(suite: Suite, root: Path, env: dict[str, str]) -> dict[str, Outcome]:
    """Run the suite's tests in a child pytest; test id → outcome."""
    prepare(suite, root)
    report = root / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           f"--junitxml={report}", "-o", "junit_family=xunit2", *(f"--deselect={t}" for t in suite.deselect),
           *(("-p", "peer_bounded") if suite.bound else ()), *suite.tests]
    if suite.bound:
        env = {**env, "PEER_TEST_TIMEOUT": str(suite.bound)}
    log = root / "pytest.log"
    with open(log, "wb") as out:
        try:
            subprocess.run(cmd, cwd=root, env={**env, "PYTHONPATH": str(root)}, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=suite.timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the {suite.name} suite ran past {suite.timeout}s:\n"
                                 + log.read_text(errors="replace")[-4000:])
    if not report.exists():
        raise AssertionError(f"the {suite.name} suite wrote no report:\n" + log.read_text(errors="replace")[-4000:])
    return outcomes(report)


def outcomes(report: Path) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for case in ET.parse(report).iter("testcase"):
        test_id = f"{case.get('classname')}.{case.get('name')}"
        result = Outcome("passed")
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                result = Outcome("failed" if tag == "failure" else tag,
                                 (el.get("message") or "") + "\n" + (el.text or "")[-1500:])
                break
        out[test_id] = result
    return out


def verdict(got: dict[str, Outcome], expected: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """(counts per outcome, problems) of a run against its expected failures."""
    counts: dict[str, int] = {}
    for o in got.values():
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    problems = []
    for test_id, o in sorted(got.items()):
        if o.outcome != "passed" and test_id not in expected:
            problems.append(f"{test_id}: {o.outcome}, not in expected_failures.yaml\n{o.detail.strip()}")
        elif o.outcome == "passed" and test_id in expected:
            problems.append(f"{test_id}: passes now; remove it from expected_failures.yaml "
                            f"(it waited for: {expected[test_id]})")
    problems += [f"{t}: listed in expected_failures.yaml but no longer ran" for t in expected if t not in got]
    return counts, problems
