"""securityContext: the pod's and the container's merged (the container wins), mapped
onto a Docker Engine container's User and HostConfig, the runAsNonRoot check as the
kubelet makes it, and what the process runtime refuses or hands to setpriv."""
from __future__ import annotations

import pytest

from sendo.agent.prestart.declared import security_context
from sendo.agent.runtime import SecurityContext
from sendo.agent.runtime import security as sec
from sendo.agent.runtime.docker import DockerRuntime
from sendo.agent.runtime.base import ContainerSpec, Sandbox


def test_the_container_wins_over_the_pod_and_groups_are_pod_level():
    sc = security_context({"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": True, "fsGroup": 2000,
                           "supplementalGroups": [4000, 4001]},
                          {"runAsUser": 1001, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                           "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})
    assert sc == SecurityContext(run_as_user=1001, run_as_group=3000, run_as_non_root=True,
                                 read_only_root_filesystem=True, allow_privilege_escalation=False,
                                 capabilities_add=["NET_BIND_SERVICE"], capabilities_drop=["ALL"],
                                 supplemental_groups=[4000, 4001], fs_group=2000)


def test_engine_host_config_for_every_field():
    sc = SecurityContext(run_as_user=1000, run_as_group=3000, read_only_root_filesystem=True, privileged=True,
                         allow_privilege_escalation=False, capabilities_add=["CAP_NET_ADMIN", "sys_time"],
                         capabilities_drop=["ALL"], supplemental_groups=[4000], fs_group=2000)
    user, host = sec.engine_settings(sc, "nobody")
    assert user == "1000:3000"
    assert host == {"Privileged": True, "ReadonlyRootfs": True, "CapAdd": ["NET_ADMIN", "SYS_TIME"],
                    "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "GroupAdd": ["4000", "2000"]}


def test_an_empty_security_context_changes_nothing():
    assert sec.engine_settings(SecurityContext(), "www") == (None, {})


@pytest.mark.parametrize("sc,image_user,user", [
    (SecurityContext(run_as_user=7), "www:www", "7"),
    (SecurityContext(run_as_group=9), "www:www", "www:9"),  # the image's user, another group
    (SecurityContext(run_as_group=9), "", "0:9"),
])
def test_the_engine_user(sc, image_user, user):
    assert sec.engine_user(sc, image_user) == user


def test_the_container_body_carries_the_security_context(tmp_path):
    rt = DockerRuntime(str(tmp_path / "state"), pod_cidr="10.250.0.0/16", service_cidr="10.251.0.0/16")
    spec = ContainerSpec("uid", "ns", "pod", "main", 0, [], {}, None, str(tmp_path / "log"), image="img:1",
                         security_context=SecurityContext(run_as_user=1000, capabilities_drop=["ALL"]))
    body = rt._container_body(spec, Sandbox("sb", "uid", "ns", "pod", "10.250.0.2", ""), "")
    assert body["User"] == "1000"
    assert body["HostConfig"]["CapDrop"] == ["ALL"]
    assert body["HostConfig"]["NetworkMode"] == "container:sb"


@pytest.mark.parametrize("sc,image_user,refusal", [
    (SecurityContext(run_as_non_root=True), "", "image will run as root"),
    (SecurityContext(run_as_non_root=True), "0:0", "image will run as root"),
    (SecurityContext(run_as_non_root=True), "www", "image has non-numeric user (www), cannot verify"),
    (SecurityContext(run_as_non_root=True, run_as_user=0), "1000", "runAsUser breaks non-root policy"),
    (SecurityContext(run_as_non_root=True, run_as_user=5), "", None),
    (SecurityContext(run_as_non_root=True), "1000:1000", None),
    (SecurityContext(run_as_non_root=False), "", None),
])
def test_run_as_non_root_as_the_kubelet_checks_it(sc, image_user, refusal):
    if refusal is None:
        sec.verify_run_as_non_root(sc, image_user)
    else:
        with pytest.raises(sec.SecurityRefused, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            sec.verify_run_as_non_root(sc, image_user)


def test_the_process_runtime_refuses_what_a_host_process_cannot_have():
    assert sec.process_refusals(SecurityContext(run_as_user=1000, allow_privilege_escalation=False,
                                                capabilities_drop=["CHOWN"]), euid=0) == []
    refused = sec.process_refusals(SecurityContext(read_only_root_filesystem=True, privileged=True,
                                                   capabilities_add=["SYS_ADMIN"], capabilities_drop=["FLY"]),
                                   euid=0)
    assert [r.split(" ")[0] for r in refused] == ["readOnlyRootFilesystem", "privileged", "capabilities.add",
                                                  "capabilities.drop"]
    as_user = sec.process_refusals(SecurityContext(run_as_user=0, supplemental_groups=[5],
                                                   capabilities_drop=["ALL"]), euid=1000)
    assert [r.split(" ")[0] for r in as_user] == ["runAsUser", "supplementalGroups/fsGroup", "capabilities.drop"]
    assert sec.process_refusals(SecurityContext(run_as_user=1000, allow_privilege_escalation=False),
                                euid=1000) == []


def test_setpriv_arguments():
    assert sec.setpriv_argv(SecurityContext(), 0) == []
    argv = sec.setpriv_argv(SecurityContext(run_as_user=1000, capabilities_drop=["CAP_CHOWN", "kill"],
                                            allow_privilege_escalation=False), 0)
    assert argv[1:] == ["--reuid=1000", "--clear-groups", "--bounding-set=-chown,-kill", "--no-new-privs", "--"]
    assert sec.setpriv_argv(SecurityContext(fs_group=2000, capabilities_drop=["ALL"]), 0)[1:] == [
        "--groups=2000", "--bounding-set=-all", "--"]


def _causes(pod_sc=None, c_sc=None):
    from sendo.kinds.podspec import validate_pod_spec
    spec = {"containers": [{"name": "c", "image": "i", **({"securityContext": c_sc} if c_sc is not None else {})}],
            **({"securityContext": pod_sc} if pod_sc is not None else {})}
    return [(c.field, c.message) for c in validate_pod_spec(spec, "spec") if "securityContext" in c.field]


def test_bad_security_contexts_are_refused_naming_the_field():
    assert _causes({"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [1, 2], "runAsNonRoot": True},
                   {"runAsUser": 0, "privileged": True, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}) == []
    assert _causes({"runAsUser": -1})[0] == ("spec.securityContext.runAsUser",
                                             "Invalid value: -1: must be between 0 and 2147483647, inclusive")
    assert _causes({"supplementalGroups": [5, "x"]})[0][0] == "spec.securityContext.supplementalGroups[1]"
    assert _causes(None, {"readOnlyRootFilesystem": "yes"})[0][0] == \
        "spec.containers[0].securityContext.readOnlyRootFilesystem"
    assert _causes(None, {"capabilities": {"drop": [3]}})[0][0] == \
        "spec.containers[0].securityContext.capabilities.drop[0]"
    field, message = _causes(None, {"allowPrivilegeEscalation": False, "privileged": True})[0]
    assert field == "spec.containers[0].securityContext"
    assert "cannot set `allowPrivilegeEscalation` to false and `privileged` to true" in message
    assert "CAP_SYS_ADMIN" in _causes(None, {"allowPrivilegeEscalation": False,
                                             "capabilities": {"add": ["SYS_ADMIN"]}})[0][1]
