"""A bounded schemathesis run from sendo's own OpenAPI against a real `sendo server`
(bench/fuzz.py; `python -m bench.fuzz` is the long run of `make bench`).

Every operation of every group-version document gets the same number of generated
requests, valid and invalid, from a fixed seed. None may answer 5xx or lose its
connection, and the server must still be alive afterwards.
"""
import os

from bench.fuzz import causes, fuzz
from bench.harness import start_server

REQUESTS = 450  # about one valid and one invalid request per operation


def test_fuzzing_from_the_openapi_gets_no_5xx_and_no_dropped_connection(tmp_path):
    c = start_server(str(tmp_path))
    try:
        report = fuzz(c.url, c.admin_token, os.path.join(tmp_path, "server", "tls", "ca.crt"), REQUESTS, seed=0,
                      log=lambda m: None)
        alive = c.server.popen.poll() is None
    finally:
        c.server.stop()
    assert alive, "the server died during the fuzz run"
    assert report.sent >= 300, report.line()
    found = causes(report.server_errors + report.dropped)
    assert not found, report.line() + "\n" + "\n".join(
        f"{len(fs)} × {fs[0].status} e.g. {fs[0].method} {fs[0].path}: {fs[0].detail}" for fs in found.values())
