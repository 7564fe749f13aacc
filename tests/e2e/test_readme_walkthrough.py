"""The README's container walkthrough, run as a newcomer runs it: the shell blocks of
"Your own image, from build to a Service" are read from README.md and run by bash, as
written, against `sendo up --runtime docker --registry` (the command of the section's
first block): build an image, push it to sendo's registry, deploy it with 3 replicas
behind a Service, reach it by name from another pod, `kubectl exec -it` into a replica
(in a terminal), and see an OOMKilled container restarted.

What differs from a newcomer's machine, and why: the cluster gets a data dir, port and
pod/service CIDRs of its own (tests run side by side), the registry's address is the one
`sendo up` printed (the README says to use it), and Podman uses a store of the test's
own (CONTAINERS_STORAGE_CONF, for the commands and the engine sendo starts) so parallel
builds on the machine cannot clash with it.
"""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from . import containers as ct
from .harness import REPO, Cluster, poll

SECTION = ("### Your own image, from build to a Service", "What a container pod gets:")


def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION[0])
    section = text[start:text.index(SECTION[1], start)]
    return re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)


def bash(script: str, env: dict[str, str], cwd: str, timeout: float = 400) -> str:
    r = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    assert r.returncode == 0, f"README block failed ({r.returncode}):\n{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    return r.stdout


def in_terminal(script: str, env: dict[str, str], typed: bytes, want: bytes, timeout: float = 90) -> bytes:
    """Run `script` with a terminal as its stdin and output, as typed in one; type `typed`
    once the container shell's prompt shows, read until the command ends, and expect
    `want` in what the terminal showed."""
    master, slave = pty.openpty()
    p = subprocess.Popen(["bash", "-c", script], stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"# " in out:  # the container shell's prompt
                os.write(master, typed)
                sent = True
            if p.poll() is not None and not ready:
                break
        assert p.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, out.decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert want in out, out.decode(errors="replace")
    return out


def test_the_readme_walkthrough_builds_pushes_deploys_reaches_execs_and_sees_an_oom_restart(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) == 5, blocks
    up, build, deploy, shell, hungry = blocks
    assert ".venv/bin/sendo up --runtime docker --registry" in up
    storage = ct.own_storage(tmp_path / "storage")
    for k, v in storage.items():  # this test's podman commands (clean-up too) and sendo's engine
        monkeypatch.setenv(k, v)
    cidr, svc_cidr, net_args = ct.container_cidrs()
    stray = REPO / "oom"  # what conmon wrote into the cwd of sendo on an OOM kill
    had_stray = stray.exists()
    c = Cluster(tmp_path / "cluster", ("--runtime", "docker", "--registry", *net_args))
    c.start_deadline = 120  # the registry starts first; the machine is shared
    try:
        ct.setup_engine()
        c.start()
        m = re.search(r"Image registry at (127\.0\.0\.1:\d+) ", c.log_path.read_text(errors="replace"))
        assert m, c.log_tail(60)
        reg = m.group(1)
        env = {**c.env(), **storage, "REG": reg, "TMPDIR": str(tmp_path),
               "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
        work = str(tmp_path)

        # build and push (the README's REG line names 127.0.0.1:5000: the address sendo up printed here)
        assert re.search(r"^REG=127\.0\.0\.1:5000 ", build, re.M), build
        bash(re.sub(r"^REG=\S+", f"REG={reg}", build, flags=re.M), env, work)

        # 3 replicas behind a Service, reached by name from another pod
        out = bash(deploy, env, work)
        assert re.search(r"^hello from web-[a-z0-9]+-[a-z0-9]+$", out, re.M), out
        dep = c.kubectl_json("get", "deployment", "web")
        assert dep["status"].get("readyReplicas") == 3, dep["status"]
        pods = c.kubectl_json("get", "pods", "-l", "app=web")["items"]
        assert len(pods) == 3 and all(p["status"]["containerStatuses"][0]["containerID"].startswith("docker://")
                                      for p in pods)
        names = {p["metadata"]["name"] for p in pods}
        assert out.strip().splitlines()[-1].removeprefix("hello from ") in names, (out, names)

        # a shell in a replica, in a terminal
        seen = in_terminal(shell, env, b"echo in-$(hostname); exit\n", b"in-web-")
        assert any(f"in-{n}".encode() in seen for n in names), seen

        # a container over its memory limit: OOMKilled, restarted
        bash(hungry, env, work)

        def oom_restarted() -> dict | None:
            st = (c.kubectl_json("get", "pod", "hungry")["status"].get("containerStatuses") or [{}])[0]
            t = (st.get("lastState") or {}).get("terminated") or {}
            return st if t.get("reason") == "OOMKilled" and st.get("restartCount", 0) >= 1 else None
        st = poll(oom_restarted, 120, what="hungry OOMKilled and restarted")
        assert st["lastState"]["terminated"]["exitCode"] == 137
        reason = c.kubectl("get", "pod", "hungry", "-o",
                           "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}").stdout
        assert reason == "OOMKilled"
        assert had_stray or not stray.exists(), "an OOM kill left a file `oom` where sendo up was started"
        # the README's pods keep Kubernetes' 30 s grace period (sleep and httpd as PID 1
        # ignore SIGTERM): removed quickly here, so that sendo's own stop is short
        c.kubectl("delete", "deployment,service", "web", "--wait=false")
        c.kubectl("delete", "pods", "--all", "--grace-period=1", "--timeout=120s", timeout=150)
    finally:
        try:
            c.stop(120)  # a user's Ctrl-C: sendo stops what still runs
            c._cleanup()
        finally:
            ct.cleanup_engine(c, cidr, svc_cidr)
            ct.empty_storage(storage)
            ct.end_leftover_conmons(tmp_path / "storage")
