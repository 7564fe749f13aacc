"""The peer runner's verdict: strict about the expected-failures list in both directions."""
import yaml

from .runner import EXPECTED, SUITES, Outcome, expected_failures, verdict


def test_unlisted_failures_listed_passes_and_vanished_entries_fail_the_run():
    got = {"a.ok": Outcome("passed"), "a.known": Outcome("failed", "boom"), "a.new": Outcome("error", "E bad"),
           "a.fixed": Outcome("passed"), "a.skip": Outcome("skipped")}
    expected = {"a.known": "waits for exec", "a.fixed": "waited for RBAC", "a.gone": "renamed upstream"}
    counts, problems = verdict(got, expected)
    assert counts == {"passed": 2, "failed": 1, "error": 1, "skipped": 1}
    assert [p.split(":")[0] for p in problems] == ["a.fixed", "a.new", "a.skip", "a.gone"]
    assert "waited for RBAC" in problems[0] and "E bad" in problems[1]
    assert verdict({"a.known": Outcome("failed")}, {"a.known": "waits for exec"}) == ({"failed": 1}, [])


def test_every_expected_failure_names_a_reason_and_a_suite_we_run():
    assert set(yaml.safe_load(EXPECTED.read_text())) <= set(SUITES)
    for name in SUITES:
        for test_id, reason in expected_failures(name).items():
            assert isinstance(reason, str) and len(reason) > 20, test_id
