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




# ----------------------------------------------------------------- Pod Security admission
PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: none
    command: [sleep, "3600"]
    securityContext: {privileged: true}
"""

RESTRICTED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: tidy}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: none
    command: [sleep, "3600"]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"""


def test_restricted_namespace_refuses_a_privileged_pod_and_admits_a_compliant_one(audited):
    c, log = audited
    c.kubectl("create", "namespace", "secure")
    c.kubectl("label", "namespace", "secure", "pod-security.kubernetes.io/enforce=restricted",
              "pod-security.kubernetes.io/audit=restricted")
    r = c.kubectl("apply", "-n", "secure", "-f", "-", input=PRIVILEGED_POD, check=False)
    assert r.returncode != 0
    assert 'pods "priv" is forbidden: violates PodSecurity "restricted:latest"' in r.stderr, r.stderr
    for rule in ("privileged (container \"c\" must not set securityContext.privileged=true)",
                 "allowPrivilegeEscalation != false", "runAsNonRoot != true", "seccompProfile"):
        assert rule in r.stderr, (rule, r.stderr)
    assert c.kubectl("get", "pods", "-n", "secure", "-o", "name").stdout.strip() == ""  # nothing written
    c.kubectl("apply", "-n", "secure", "-f", "-", input=RESTRICTED_POD)
    assert c.kubectl_json("get", "pod", "tidy", "-n", "secure")["metadata"]["name"] == "tidy"


def test_warn_mode_tells_kubectl_about_a_workload_and_audit_mode_annotates(audited):
    c, log = audited
    c.kubectl("create", "namespace", "lenient")
    c.kubectl("label", "namespace", "lenient", "pod-security.kubernetes.io/warn=baseline",
              "pod-security.kubernetes.io/audit=baseline")
    r = c.kubectl("create", "deployment", "hostnet", "-n", "lenient", "--image=none", "--dry-run=client",
                  "-o", "json")
    dep = json.loads(r.stdout)
    dep["spec"]["template"]["spec"]["hostNetwork"] = True
    r = c.kubectl("create", "-f", "-", input=json.dumps(dep))
    assert 'Warning: deployment "hostnet": would violate PodSecurity "baseline:latest": host namespaces ' \
           '(hostNetwork=true)' in r.stderr, r.stderr
    e = poll(lambda: find(log, verb="create", resource="deployments", name="hostnet"), 30, what="audit event")
    assert "hostNetwork=true" in e["annotations"]["pod-security.kubernetes.io/audit-violations"]


def test_official_client_gets_403_and_bad_labels_get_422(audited):
    from kubernetes import client
    c, log = audited
    api = client.CoreV1Api(c.api())
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name="base", labels={"pod-security.kubernetes.io/enforce": "baseline"})))
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="hostpid"), spec=client.V1PodSpec(
        host_pid=True, containers=[client.V1Container(name="c", image="none", command=["sleep", "1"])]))
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_pod("base", pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)' in message
    r = c.kubectl("label", "namespace", "base", "--overwrite", "pod-security.kubernetes.io/enforce=strict",
                  check=False)
    assert r.returncode != 0 and "pod-security.kubernetes.io/enforce" in r.stderr and "strict" in r.stderr
