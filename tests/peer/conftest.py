"""Peer suites: a real `sendo up` (tests/e2e/harness.py) per suite — with the docker
runtime and local stand-in images for a suite whose pods need images (standins.py) —
the suite run against it (runner.py), the outcome checked against expected_failures.yaml."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from tests.e2e.harness import Cluster

from . import standins
from .runner import SUITES, expected_failures, run, verdict


@contextlib.contextmanager
def process_cluster(base: Path) -> Iterator[Cluster]:
    cluster = Cluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster._cleanup()


def run_suite(name: str, tmp_path: Path) -> None:
    suite = SUITES[name]
    if suite.standin_images:
        with standins.standin_cluster(tmp_path / "containers") as (cluster, registry):
            if suite.system_pod:
                standins.start_system_pod(cluster)
            got = run(suite, tmp_path / "suite", cluster.env())
            pulled = standins.pulled(registry)
        missing = {s.name for s in standins.STANDINS} - pulled
        assert not missing, (f"the cluster's engine pulled no {sorted(missing)} from the local registry "
                             "(is the registries.conf rewrite applied?)")
    else:
        with process_cluster(tmp_path / "cluster") as cluster:
            got = run(suite, tmp_path / "suite", cluster.env())
    counts, problems = verdict(got, expected_failures(name))
    print(f"{name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    assert got, f"the {name} suite ran no test"
    assert not problems, f"{name} ({counts}):\n\n" + "\n\n".join(problems)
