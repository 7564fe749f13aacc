"""The runtime seam: registry by name, pod sandboxes of the process runtime (pod IPs that
survive an agent restart), and the ContainerSpec the prestart hooks fill in."""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import sys

import orjson
import psutil
import pytest

from sendo.agent.prestart import declared
from sendo.agent.runtime import (ContainerSpec, ProcessRuntime, Runtime, SandboxConfig, SandboxError, StartError,
                                 UnknownRuntime, known, open_runtime)
from sendo.agent.runtime.base import PortMapping, SecurityContext

CIDR = "127.77.3.0/29"  # 8 addresses: .2 to .6 can be pod IPs


def config(uid: str, tmp_path, hint: str | None = None) -> SandboxConfig:
    return SandboxConfig(pod_uid=uid, namespace="default", pod_name=f"pod-{uid}", hostname=f"pod-{uid}",
                         pod_dir=str(tmp_path / "pods" / uid), ip_hint=hint)


@pytest.fixture
async def rt(tmp_path):
    r = open_runtime("process", str(tmp_path / "agent"))
    await r.update_runtime_config(CIDR)
    yield r
    await r.close()


def test_registry_opens_by_name_and_names_the_known_ones(tmp_path):
    r = open_runtime("process", str(tmp_path))
    assert isinstance(r, ProcessRuntime) and isinstance(r, Runtime) and r.name == "process"
    assert r.state_dir == str(tmp_path / "containers")  # where agents before the registry kept it
    assert r.version().startswith("process://")
    assert "process" in known()
    with pytest.raises(UnknownRuntime, match=r'unknown container runtime "docker": known runtimes are process'):
        open_runtime("docker", str(tmp_path))


async def test_sandbox_ips_come_from_the_pod_cidr_and_are_released(rt, tmp_path):
    a = await rt.run_pod_sandbox(config("a", tmp_path))
    b = await rt.run_pod_sandbox(config("b", tmp_path))
    net = ipaddress.ip_network(CIDR)
    assert a.ip != b.ip and {ipaddress.ip_address(a.ip), ipaddress.ip_address(b.ip)} <= set(net.hosts())
    assert a.ip not in (str(net.network_address + 1), str(net.broadcast_address))
    assert await rt.run_pod_sandbox(config("a", tmp_path)) == a  # idempotent: same sandbox, same IP
    for uid in "cde":
        await rt.run_pod_sandbox(config(uid, tmp_path))
    with pytest.raises(SandboxError, match="no free pod IP left in 127.77.3.0/29"):
        await rt.run_pod_sandbox(config("f", tmp_path))
    await rt.remove_pod_sandbox(a.id)
    assert (await rt.run_pod_sandbox(config("f", tmp_path))).ip == a.ip
    assert {s.pod_uid for s in await rt.list_pod_sandboxes()} == set("bcdef")


async def test_a_restarted_agent_keeps_every_pods_ip(rt, tmp_path):
    """The sandboxes are recorded: a new runtime instance (agent restart) takes their IPs
    back before any new pod gets one, so two pods never share an IP."""
    held = {uid: (await rt.run_pod_sandbox(config(uid, tmp_path))).ip for uid in "ab"}
    await rt.close()
    again = open_runtime("process", str(tmp_path / "agent"))
    await again.adopt()
    await again.update_runtime_config(CIDR)
    fresh = [(await again.run_pod_sandbox(config(uid, tmp_path))).ip for uid in "xyz"]
    assert not set(fresh) & set(held.values())
    assert {uid: (await again.run_pod_sandbox(config(uid, tmp_path))).ip for uid in "ab"} == held
    await again.close()


async def test_a_pod_keeps_its_ip_hint_when_free(rt, tmp_path):
    assert (await rt.run_pod_sandbox(config("a", tmp_path, hint="127.77.3.5"))).ip == "127.77.3.5"
    assert (await rt.run_pod_sandbox(config("b", tmp_path, hint="127.77.3.5"))).ip != "127.77.3.5"
    assert (await rt.run_pod_sandbox(config("c", tmp_path, hint="10.0.0.1"))).ip.startswith("127.77.3.")


def spec_in(sandbox_id: str, tmp_path, argv, working_dir=None) -> ContainerSpec:
    return ContainerSpec("a", "default", "pod-a", "c", 0, argv, {"PATH": os.environ["PATH"]}, working_dir,
                         str(tmp_path / "logs" / "c.log"), sandbox_id=sandbox_id)


async def test_containers_in_a_sandbox_run_in_the_pod_dir(rt, tmp_path):
    sb = await rt.run_pod_sandbox(config("a", tmp_path))
    os.makedirs(sb.pod_dir)
    h = await rt.start(spec_in(sb.id, tmp_path, [sys.executable, "-c", "import os; print(os.getcwd())"]))
    assert (await asyncio.wait_for(rt.wait(h), 10)).exit_code == 0
    assert open(h.spec.log_path).read().strip() == sb.pod_dir
    # a workingDir that does not exist yet is made, as an engine makes it in the container
    wd = str(tmp_path / "pods" / "a" / "srv" / "app")
    h = await rt.start(dataclasses.replace(spec_in(sb.id, tmp_path, ["pwd"], wd), attempt=1))
    assert (await asyncio.wait_for(rt.wait(h), 10)).exit_code == 0 and os.path.isdir(wd)
    with pytest.raises(StartError, match="the process runtime runs no image, so it needs command or args"):
        await rt.start(dataclasses.replace(spec_in(sb.id, tmp_path, []), attempt=2))


async def test_stopping_and_removing_a_sandbox_ends_what_still_runs_in_it(rt, tmp_path):
    sb = await rt.run_pod_sandbox(config("a", tmp_path))
    os.makedirs(sb.pod_dir)
    h = await rt.start(spec_in(sb.id, tmp_path, ["sleep", "60"]))
    await rt.stop_pod_sandbox(sb.id)
    assert (await asyncio.wait_for(rt.wait(h), 10)).exit_code in (137, 143)  # TERM, then KILL at once
    h2 = await rt.start(dataclasses.replace(spec_in(sb.id, tmp_path, ["sleep", "60"]), attempt=1))
    await rt.remove_pod_sandbox(sb.id)
    assert not psutil.pid_exists(h2.pid) or psutil.Process(h2.pid).status() == psutil.STATUS_ZOMBIE
    assert await rt.list_pod_sandboxes() == []
    assert os.listdir(rt.state_dir) == ["sandboxes"] and os.listdir(os.path.join(rt.state_dir, "sandboxes")) == []


def test_a_record_from_an_older_agent_still_loads():
    old = {"pod_uid": "u", "namespace": "ns", "pod_name": "p", "container_name": "c", "attempt": 2,
           "argv": ["sleep", "1"], "env": {}, "working_dir": None, "log_path": "/x.log"}
    spec = ContainerSpec.from_dict(old)
    assert spec.sandbox_id == "" and spec.image == "" and spec.ports == []
    full = dataclasses.replace(spec, ports=[PortMapping(80, host_port=8080)],
                               security_context=SecurityContext(run_as_user=1000, capabilities_drop=["ALL"]))
    assert ContainerSpec.from_dict(orjson.loads(orjson.dumps(dataclasses.asdict(full)))) == full


class _Pod:
    def __init__(self, pod):
        self.pod = pod


async def test_declared_settings_reach_the_container_spec():
    pod = {"spec": {"securityContext": {"runAsUser": 1000, "runAsNonRoot": True}}}
    container = {"name": "web", "image": "registry.local:5000/web", "stdin": True, "tty": True,
                 "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 53, "protocol": "UDP",
                                                                     "hostPort": 5353}],
                 "resources": {"limits": {"memory": "64Mi", "cpu": 1}, "requests": {"cpu": "100m"}},
                 "securityContext": {"runAsUser": 2000, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}}}
    spec = ContainerSpec("u", "ns", "p", "web", 0, [], {}, None, "/x.log")
    await declared.declared_settings(_Pod(pod), container, spec)
    assert spec.image == "registry.local:5000/web" and spec.image_pull_policy == "Always"
    assert spec.ports == [PortMapping(8080, "TCP", "http"), PortMapping(53, "UDP", "", 5353)]
    assert spec.resources.limits == {"memory": "64Mi", "cpu": "1"} and spec.resources.requests == {"cpu": "100m"}
    assert spec.security_context == SecurityContext(run_as_user=2000, run_as_non_root=True,
                                                    read_only_root_filesystem=True, capabilities_drop=["ALL"])
    assert (spec.stdin, spec.stdin_once, spec.tty) == (True, False, True)


@pytest.mark.parametrize("image,policy", [("busybox", "Always"), ("busybox:latest", "Always"),
                                          ("busybox:1.36", "IfNotPresent"), ("host:5000/app", "Always"),
                                          ("host:5000/app:v2", "IfNotPresent"),
                                          ("app@sha256:" + "a" * 64, "IfNotPresent")])
def test_default_pull_policy_is_kubernetes(image, policy):
    assert declared.default_pull_policy(image) == policy


@pytest.mark.parametrize("command", [["agent", "--server", "https://127.0.0.1:1", "--token", "t"], ["up"]])
def test_an_unknown_runtime_flag_lists_the_known_ones_before_anything_starts(command, tmp_path):
    from typer.testing import CliRunner

    from sendo.cli.main import app
    result = CliRunner().invoke(app, [*command, "--data-dir", str(tmp_path), "--runtime", "docker"])
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())  # the message as rich wraps it in a box
    assert 'unknown container runtime "docker": known runtimes are process' in text
    assert not os.listdir(tmp_path)  # refused before any state was written
