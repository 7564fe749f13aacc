"""The audit policy (which requests are recorded, at which level) and the log file."""
from __future__ import annotations

import json

import pytest

from sendo.api.audit import AuditConfig, AuditLog, AuditRequest, Policy, PolicyError


def policy(*rules, **top) -> Policy:
    return Policy.parse({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})


def req(verb="create", resource="configmaps", user="alice", groups=("dev",), ns="default", name="", sub="",
        group="", path="") -> AuditRequest:
    return AuditRequest(user, list(groups), verb, path or f"/api/v1/namespaces/{ns}/{resource}", "",
                        group=group, version="v1", resource=resource, sub=sub, namespace=ns, name=name)


def test_first_matching_rule_gives_the_level():
    p = policy({"level": "None", "users": ["system:node"]},
               {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
               {"level": "RequestResponse", "verbs": ["create", "update", "patch", "delete"]},
               {"level": "Metadata"})
    assert p.level_of(req(user="system:node"))[0] == "None"
    assert p.level_of(req(resource="secrets"))[0] == "Metadata"  # a Secret's value never reaches the log
    assert p.level_of(req(verb="create"))[0] == "RequestResponse"
    assert p.level_of(req(verb="get"))[0] == "Metadata"
    assert policy({"level": "Metadata", "verbs": ["get"]}).level_of(req(verb="list"))[0] == "None"


def test_resources_subresources_names_namespaces_and_groups():
    p = policy({"level": "Request", "resources": [{"group": "", "resources": ["pods/log"]}]},
               {"level": "Metadata", "resources": [{"group": "apps", "resources": ["deployments/*"]}]},
               {"level": "RequestResponse", "resources": [{"group": "", "resources": ["configmaps"],
                                                           "resourceNames": ["settings"]}],
                "namespaces": ["prod"]})
    assert p.level_of(req(resource="pods", sub="log"))[0] == "Request"
    assert p.level_of(req(resource="pods"))[0] == "None"
    assert p.level_of(req(resource="deployments", group="apps", sub="scale"))[0] == "Metadata"
    assert p.level_of(req(resource="deployments", group="apps"))[0] == "None"
    assert p.level_of(req(resource="configmaps", name="settings", ns="prod"))[0] == "RequestResponse"
    assert p.level_of(req(resource="configmaps", name="settings", ns="dev"))[0] == "None"
    assert p.level_of(req(resource="configmaps", name="other", ns="prod"))[0] == "None"


def test_groups_and_non_resource_urls():
    p = policy({"level": "Metadata", "userGroups": ["system:masters"], "nonResourceURLs": ["/apis*"]},
               {"level": "Request", "nonResourceURLs": ["/version"]})
    non_resource = AuditRequest("bob", ["system:masters"], "get", "/apis/apps/v1", "")
    assert p.level_of(non_resource)[0] == "Metadata"
    assert p.level_of(AuditRequest("bob", ["dev"], "get", "/apis/apps/v1", ""))[0] == "None"
    assert p.level_of(AuditRequest("bob", [], "get", "/version", ""))[0] == "Request"
    assert p.level_of(req(user="bob", groups=("system:masters",)))[0] == "None"  # URL rules never match resources


def test_omitted_stages_from_the_policy_and_the_rule():
    p = policy({"level": "Metadata", "omitStages": ["ResponseStarted"]}, omitStages=["RequestReceived"])
    assert p.level_of(req()) == ("Metadata", {"RequestReceived", "ResponseStarted"})


@pytest.mark.parametrize("doc, field", [
    ({"kind": "Policy", "apiVersion": "v1", "rules": [{"level": "Metadata"}]}, "audit.k8s.io/v1"),
    ({"kind": "Policy", "apiVersion": "audit.k8s.io/v1", "rules": []}, "rules"),
    ({"kind": "Policy", "apiVersion": "audit.k8s.io/v1", "rules": [{"level": "Loud"}]}, "rules[0].level"),
    ({"kind": "Policy", "apiVersion": "audit.k8s.io/v1", "rules": [{"level": "None", "verbs": "get"}]},
     "rules[0].verbs"),
    ({"kind": "Policy", "apiVersion": "audit.k8s.io/v1",
      "rules": [{"level": "None", "omitStages": ["Sometime"]}]}, "rules[0].omitStages"),
    ({"kind": "Policy", "apiVersion": "audit.k8s.io/v1",
      "rules": [{"level": "None", "nonResourceURLs": ["/x"], "namespaces": ["a"]}]}, "rules[0]"),
])
def test_a_bad_policy_is_refused_naming_the_field(doc, field):
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Policy.parse(doc)


def test_options_go_together(tmp_path):
    with pytest.raises(PolicyError, match="go together"):
        AuditConfig(log_path=str(tmp_path / "audit.log")).check()
    with pytest.raises(PolicyError, match="cannot read"):
        AuditConfig(str(tmp_path / "missing.yaml"), str(tmp_path / "a.log")).check()
    assert AuditConfig().open() is None


def test_log_rotates_by_size_and_keeps_its_backups(tmp_path):
    path = tmp_path / "audit" / "audit.log"
    log = AuditLog(str(path), max_size_mb=1, max_backups=2)
    line = {"kind": "Event", "pad": "x" * 200_000}
    for i in range(20):  # 4 MB: several rotations
        log.write({**line, "n": i})
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert "audit.log" in files and len(files) == 3, files  # the current file and two backups
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    last = [json.loads(x) for x in path.read_text().splitlines()]
    assert last[-1]["n"] == 19


async def test_lines_of_one_loop_turn_are_written_together_in_order(tmp_path):
    """Inside an event loop a line waits for the end of the turn; nothing is lost or
    reordered, and the next turn finds it on disk."""
    import asyncio
    path = tmp_path / "audit.log"
    log = AuditLog(str(path))
    for i in range(5):
        log.write({"n": i})
    assert path.read_text() == ""  # still this turn
    await asyncio.sleep(0)
    assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [0, 1, 2, 3, 4]
    log.write({"n": 5})
    log.close()  # close writes what is pending
    assert json.loads(path.read_text().splitlines()[-1])["n"] == 5


def test_audit_ids_are_distinct_version_4_uuids():
    import uuid
    from sendo.api.audit import new_audit_id
    ids = [new_audit_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for a in ids[:200]:
        u = uuid.UUID(a)
        assert str(u) == a and u.version == 4 and u.variant == uuid.RFC_4122


def test_micro_time_matches_the_datetime_formatting():
    import datetime as dt
    from sendo.kinds.meta import micro_time
    for t in (0.0, 59.5, 1_733_280_000.25, 1_790_000_000.000001, 4_102_444_799.999):
        want = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        got = dt.datetime.strptime(micro_time(t), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assert abs((got - want).total_seconds()) <= 1e-6, (t, micro_time(t))
