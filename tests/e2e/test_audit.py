"""The audit log of `sendo up --audit-policy-file … --audit-log-path …`, driven by the real
kubectl and the official Python client: who did what to which object, with what answer,
and never a Secret's value."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.waiting import poll

from .harness import REPO, shared_cluster

POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:node"]
- level: None
  verbs: [get, list, watch]
- level: Metadata
  resources:
  - group: ""
    resources: [secrets]
- level: RequestResponse
  resources:
  - group: ""
    resources: [configmaps]
- level: Metadata
"""


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    (d / "policy.yaml").write_text(POLICY)
    log = d / "audit.log"
    with shared_cluster(d / "cluster", ("--audit-policy-file", str(d / "policy.yaml"),
                                        "--audit-log-path", str(log))) as c:
        yield c, log


def events(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def find(log, **want) -> dict | None:
    for e in events(log):
        ref = e.get("objectRef") or {}
        if all((ref.get(k) if k in ("resource", "name", "namespace") else e.get(k)) == v for k, v in want.items()):
            return e
    return None


def test_kubectl_writes_are_recorded_with_user_verb_object_and_code(audited):
    c, log = audited
    c.kubectl("create", "configmap", "audited-cm", "--from-literal=colour=blue")
    e = poll(lambda: find(log, verb="create", resource="configmaps", name="audited-cm"), 30,
                   what="the create in the audit log")
    assert e["user"]["username"] == "admin" and "system:masters" in e["user"]["groups"]
    assert e["stage"] == "ResponseComplete" and e["responseStatus"]["code"] == 201
    assert e["level"] == "RequestResponse" and e["responseObject"]["data"] == {"colour": "blue"}
    assert e["requestObject"]["metadata"]["name"] == "audited-cm"
    assert e["objectRef"]["namespace"] == "default" and e["objectRef"]["apiVersion"] == "v1"
    assert e["userAgent"].startswith("kubectl") and e["sourceIPs"] == ["127.0.0.1"]
    # reads are not recorded (level None), and RequestReceived is omitted by the policy
    c.kubectl("get", "configmap", "audited-cm")
    assert not find(log, verb="get", resource="configmaps")
    assert all(e["stage"] != "RequestReceived" for e in events(log))


def test_a_secret_is_recorded_without_its_value(audited):
    c, log = audited
    c.kubectl("create", "secret", "generic", "audited-secret", "--from-literal=password=hunter2-audit")
    e = poll(lambda: find(log, verb="create", resource="secrets", name="audited-secret"), 30,
                   what="the Secret's create in the audit log")
    assert e["level"] == "Metadata" and "requestObject" not in e and "responseObject" not in e
    raw = log.read_bytes()
    assert b"hunter2-audit" not in raw and b"aHVudGVyMi1hdWRpdA" not in raw  # neither plain nor base64


def test_official_client_delete_and_a_refusal_are_recorded(audited):
    from kubernetes import client
    c, log = audited
    api = client.CoreV1Api(c.api())
    api.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="gone-cm")))
    api.delete_namespaced_config_map("gone-cm", "default")
    e = poll(lambda: find(log, verb="delete", resource="configmaps", name="gone-cm"), 30,
                   what="the delete in the audit log")
    assert e["responseStatus"]["code"] == 200 and e["user"]["username"] == "admin"
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))
    assert refused.value.status == 422
    e = poll(lambda: find(log, verb="create", resource="configmaps", name=None,
                                **{"responseStatus": {"metadata": {}, "code": 422, "status": "Failure",
                                                     "reason": "Invalid"}}), 30, what="the 422 in the audit log")
    assert e["requestObject"]["metadata"]["name"] == "Bad_Name"


def test_an_unauthenticated_write_is_recorded_as_anonymous(audited):
    c, log = audited
    r = c.kubectl("--token=not-a-token", "create", "configmap", "anon-cm", check=False)
    assert r.returncode != 0
    e = poll(lambda: find(log, verb="create", resource="configmaps",
                                **{"responseStatus": {"metadata": {}, "code": 401, "status": "Failure",
                                                     "reason": "Unauthorized"}}), 30, what="the 401")
    assert e["user"]["username"] == "system:anonymous"


def test_a_bad_policy_stops_sendo_up_naming_the_field(tmp_path):
    (tmp_path / "policy.yaml").write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n")
    r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "up", "--data-dir", str(tmp_path / "d"),
                        "--audit-policy-file", str(tmp_path / "policy.yaml"),
                        "--audit-log-path", str(tmp_path / "a.log")],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO), stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert "rules[0].level" in r.stderr and "Loud" in r.stderr
    assert not (tmp_path / "d").exists()  # nothing started, nothing written


