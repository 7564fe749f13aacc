"""The Pod Security Standards' judgement of pods (kinds/podsecurity.py)."""
from __future__ import annotations

from sendo.kinds.podsecurity import label_causes, violations

RESTRICTED_OK = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "c", "securityContext": {
                     "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"],
                                                                         "add": ["NET_BIND_SERVICE"]}}}],
                 "volumes": [{"name": "cfg", "configMap": {"name": "x"}}]}


def test_a_plain_pod_is_baseline_but_not_restricted():
    spec = {"containers": [{"name": "app"}]}
    assert violations({}, spec, "baseline") == []
    assert violations({}, spec, "privileged") == []
    got = violations({}, spec, "restricted")
    assert [v.split(" (")[0] for v in got] == ["allowPrivilegeEscalation != false", "runAsNonRoot != true",
                                               "seccompProfile", "unrestricted capabilities"]
    assert 'container "app" must set securityContext.allowPrivilegeEscalation=false' in got[0]


def test_restricted_pod_passes_every_level():
    for level in ("privileged", "baseline", "restricted"):
        assert violations({}, RESTRICTED_OK, level) == []


def test_baseline_rules():
    spec = {"hostNetwork": True, "hostPID": True,
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                                            {"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "securityContext": {"privileged": True,
                                                             "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}},
                            "ports": [{"containerPort": 80, "hostPort": 8080}]},
                           {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"},
                                                             "procMount": "Unmasked"}}]}
    got = "\n".join(violations({}, spec, "baseline"))
    for text in ("host namespaces (hostNetwork=true, hostPID=true)",
                 'privileged (container "a" must not set securityContext.privileged=true)',
                 'non-default capabilities (container "a" must not include "SYS_ADMIN"',
                 'hostPath volumes (volumes "root")', 'hostPort (container "a" uses hostPorts 8080)',
                 'procMount (container "b"', 'seccompProfile (container "b" must not set',
                 "forbidden sysctls (kernel.msgmax)"):
        assert text in got, (text, got)
    assert "CHOWN" not in got and "tcp_syncookies" not in got


def test_restricted_volume_types_and_root():
    spec = {**RESTRICTED_OK, "volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}],
            "securityContext": {**RESTRICTED_OK["securityContext"], "runAsUser": 0}}
    got = "\n".join(violations({}, spec, "restricted"))
    assert 'volume "n" uses restricted volume type "nfs"' in got and "pod must not set runAsUser=0" in got


def test_namespace_labels_must_name_a_level():
    assert label_causes({"pod-security.kubernetes.io/enforce": "restricted"}) == []
    causes = label_causes({"pod-security.kubernetes.io/warn": "strict",
                           "pod-security.kubernetes.io/warn-version": "1.2"})
    assert [c.field for c in causes] == ["metadata.labels[pod-security.kubernetes.io/warn]",
                                         "metadata.labels[pod-security.kubernetes.io/warn-version]"]
