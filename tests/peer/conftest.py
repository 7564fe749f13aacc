"""Peer suites: a real `sendo up` (tests/e2e/harness.py) per suite, the suite run
against it (runner.py), the outcome checked against expected_failures.yaml."""
from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import Cluster

from .runner import SUITES, expected_failures, run, verdict


def run_suite(name: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.start()
        got = run(SUITES[name], tmp_path / "suite", cluster.env())
    finally:
        cluster._cleanup()
    counts, problems = verdict(got, expected_failures(name))
    print(f"{name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    assert got, f"the {name} suite ran no test"
    assert not problems, f"{name} ({counts}):\n\n" + "\n\n".join(problems)
