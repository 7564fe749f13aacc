"""The process runtime with real processes: start, exit codes, env, stop, children, adoption."""
import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from sendo.agent.logs import container_log_path
from sendo.agent.runtime import ContainerSpec, ProcessRuntime, StartError
from tests.waiting import wait_until

PY = sys.executable
PATH = "/usr/local/bin:/usr/bin:/bin"




def gone(pid: int) -> bool:
    """Dead or a zombie (orphans are reaped by pid 1, which may be slow to do it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read(path) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Procs:
    """Every process a test started, killed by pid at teardown (only if the pid still
    names the same process)."""

    def __init__(self):
        self.items = []  # (pid, create_time)
        self.waits = []  # (runtime, handle): reaped before the loop closes

    def track(self, pid: int) -> None:
        try:
            self.items.append((pid, psutil.Process(pid).create_time()))
        except psutil.NoSuchProcess:
            pass

    async def start(self, rt, spec):
        h = await rt.start(spec)
        self.track(h.pid)
        self.waits.append((rt, h))
        return h

    def kill_all(self):
        for pid, ct in self.items:
            try:
                if psutil.Process(pid).create_time() != ct:
                    continue
            except psutil.NoSuchProcess:
                continue
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
async def procs():
    p = Procs()
    yield p
    p.kill_all()
    for rt, h in p.waits:
        try:
            await asyncio.wait_for(rt.wait(h), 5)
        except (KeyError, asyncio.CancelledError, TimeoutError):
            pass


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
async def rt(state_dir, procs):
    r = ProcessRuntime(state_dir)
    yield r
    procs.kill_all()
    for _, h in procs.waits:
        try:
            await asyncio.wait_for(r.wait(h), 5)
        except (KeyError, asyncio.CancelledError, TimeoutError):
            pass
    await r.close()


def make_spec(tmp_path, argv, *, name="c", attempt=0, env=None, working_dir=None, uid="uid-1"):
    return ContainerSpec(
        pod_uid=uid,
        namespace="default",
        pod_name="pod",
        container_name=name,
        attempt=attempt,
        argv=argv,
        env={"PATH": PATH} if env is None else env,
        working_dir=working_dir,
        log_path=container_log_path(str(tmp_path / "logs"), "default", "pod", uid, name, attempt),
    )


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


async def run_to_exit(rt, procs, spec):
    h = await procs.start(rt, spec)
    return h, await asyncio.wait_for(rt.wait(h), 10)


# ---- start and exit ----------------------------------------------------------------


async def test_exit_zero_logs_stdout_and_stderr(rt, procs, tmp_path):
    h, info = await run_to_exit(
        rt, procs, make_spec(tmp_path, py("import sys; print('out', flush=True); print('err', file=sys.stderr)"))
    )
    assert (info.exit_code, info.signal, info.reason) == (0, None, "Completed")
    assert h.id == "uid-1-c-0" and h.pid > 0 and h.started_at <= info.finished_at
    assert read(h.spec.log_path).splitlines() == ["out", "err"]


async def test_exit_code_is_reported(rt, procs, tmp_path):
    _, info = await run_to_exit(rt, procs, make_spec(tmp_path, py("raise SystemExit(3)")))
    assert (info.exit_code, info.signal, info.reason) == (3, None, "Error")


async def test_signal_death_is_128_plus_signal(rt, procs, tmp_path):
    _, info = await run_to_exit(
        rt, procs, make_spec(tmp_path, py("import os, signal; os.kill(os.getpid(), signal.SIGUSR1)"))
    )
    assert (info.exit_code, info.signal, info.reason) == (128 + signal.SIGUSR1, signal.SIGUSR1, "Error")


async def test_log_file_is_appended_to_not_truncated(rt, procs, tmp_path):
    first = make_spec(tmp_path, ["echo", "one"])
    second = make_spec(tmp_path, ["echo", "two"], attempt=1)
    second.log_path = first.log_path
    await run_to_exit(rt, procs, first)
    await run_to_exit(rt, procs, second)
    assert read(first.log_path) == "one\ntwo\n"


async def test_env_is_exactly_the_given_dict(rt, procs, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "FOO": "bar baz", "EMPTY": ""}
    h, info = await run_to_exit(rt, procs, make_spec(tmp_path, ["env"], env=env))
    assert info.exit_code == 0
    assert sorted(read(h.spec.log_path).splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


async def test_empty_env_stays_empty(rt, procs, tmp_path):
    h, info = await run_to_exit(rt, procs, make_spec(tmp_path, ["/usr/bin/env"], env={}))
    assert info.exit_code == 0 and read(h.spec.log_path) == ""


async def test_working_dir_and_stdin(rt, procs, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    code = "import os, sys; print(os.getcwd()); print(repr(sys.stdin.read()))"
    h, info = await run_to_exit(rt, procs, make_spec(tmp_path, py(code), working_dir=str(wd)))
    assert info.exit_code == 0
    assert read(h.spec.log_path).splitlines() == [str(wd), "''"]


async def test_executable_is_found_on_the_containers_path(rt, procs, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "hello"
    script.write_text("#!/bin/sh\necho \"hello $0 $1\"\n")
    script.chmod(0o755)
    h, info = await run_to_exit(rt, procs, make_spec(tmp_path, ["hello", "x"], env={"PATH": str(bindir)}))
    assert info.exit_code == 0
    assert read(h.spec.log_path) == f"hello {script} x\n"


async def test_relative_executable_resolves_against_working_dir(rt, procs, tmp_path):
    wd = tmp_path / "app"
    wd.mkdir()
    (wd / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (wd / "run.sh").chmod(0o755)
    h, info = await run_to_exit(rt, procs, make_spec(tmp_path, ["./run.sh"], working_dir=str(wd)))
    assert info.exit_code == 0 and read(h.spec.log_path) == "ran\n"


async def test_start_errors_are_for_people(rt, state_dir, tmp_path):
    with pytest.raises(StartError, match=r'exec: "no-such-cmd-sendo": executable file not found in \$PATH'):
        await rt.start(make_spec(tmp_path, ["no-such-cmd-sendo"]))
    # the agent's own PATH is not the container's
    with pytest.raises(StartError, match="executable file not found"):
        await rt.start(make_spec(tmp_path, ["sleep", "1"], env={"PATH": str(tmp_path)}))
    with pytest.raises(StartError, match="no such directory"):
        await rt.start(make_spec(tmp_path, ["true"], working_dir=str(tmp_path / "missing")))
    with pytest.raises(StartError, match="no such file or directory"):
        await rt.start(make_spec(tmp_path, [str(tmp_path / "missing.sh")]))
    plain = tmp_path / "plain.sh"
    plain.write_text("echo hi\n")
    plain.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(StartError, match="permission denied"):
        await rt.start(make_spec(tmp_path, [str(plain)]))
    noshebang = tmp_path / "noshebang"
    noshebang.write_bytes(b"\x00\x01binary")
    noshebang.chmod(0o755)
    with pytest.raises(StartError, match="exec format error"):
        await rt.start(make_spec(tmp_path, [str(noshebang)]))
    with pytest.raises(StartError, match="no command"):
        await rt.start(make_spec(tmp_path, []))
    assert os.listdir(state_dir) == []  # nothing started, nothing recorded


# ---- wait and stop ------------------------------------------------------------------


async def test_several_waiters_and_a_cancelled_one(rt, procs, tmp_path):
    h = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"]))
    waiters = [asyncio.create_task(rt.wait(h)) for _ in range(3)]
    waiters[0].cancel()
    await asyncio.sleep(0)  # let the cancellation land before the exit
    os.kill(h.pid, signal.SIGTERM)
    results = await asyncio.wait_for(asyncio.gather(*waiters[1:]), 10)
    assert waiters[0].cancelled()
    assert [r.exit_code for r in results] == [143, 143]
    assert (await rt.wait(h)).exit_code == 143


async def test_stop_lets_a_process_that_traps_sigterm_exit(rt, procs, tmp_path):
    code = """
        import signal, sys
        def bye(*_):
            print("bye", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        while True:
            signal.pause()
    """
    h = await procs.start(rt, make_spec(tmp_path, py(code)))
    await wait_until(lambda: "ready" in read(h.spec.log_path))
    info = await asyncio.wait_for(rt.stop(h, grace_seconds=30), 10)  # well within the 30 s of grace
    assert (info.exit_code, info.signal, info.reason) == (0, None, "Completed")
    assert read(h.spec.log_path) == "ready\nbye\n"


async def test_stop_default_sigterm_death_is_143(rt, procs, tmp_path):
    h = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"]))
    info = await asyncio.wait_for(rt.stop(h, grace_seconds=30), 10)
    assert (info.exit_code, info.signal) == (143, signal.SIGTERM)


async def test_stop_kills_a_process_ignoring_sigterm_after_grace(rt, procs, tmp_path):
    code = """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        while True:
            signal.pause()
    """
    h = await procs.start(rt, make_spec(tmp_path, py(code)))
    await wait_until(lambda: "ready" in read(h.spec.log_path))
    t0 = time.monotonic()
    info = await asyncio.wait_for(rt.stop(h, grace_seconds=0.5), 10)
    assert time.monotonic() - t0 >= 0.5
    assert (info.exit_code, info.signal, info.reason) == (137, signal.SIGKILL, "Error")
    assert gone(h.pid)


async def test_stop_is_idempotent(rt, procs, tmp_path):
    h = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"]))
    a, b = await asyncio.wait_for(asyncio.gather(rt.stop(h, 5), rt.stop(h, 5)), 10)
    c = await rt.stop(h, 5)
    assert a == b == c and a.exit_code == 143
    h2, done = await run_to_exit(rt, procs, make_spec(tmp_path, ["true"], name="d"))
    assert await rt.stop(h2, 5) == done


async def test_stop_kills_children_that_ignore_sigterm(rt, procs, tmp_path):
    pidfile = tmp_path / "gc.pid"
    # the grandchild ignores SIGTERM; the shell dies of it; the group must still go
    script = f"(trap '' TERM; exec sleep 1000) & echo $! > {pidfile}; wait"
    h = await procs.start(rt, make_spec(tmp_path, ["sh", "-c", script]))
    gc = int(await wait_until(lambda: read(pidfile).strip()))
    procs.track(gc)
    await wait_until(lambda: psutil.Process(gc).name() == "sleep")
    info = await asyncio.wait_for(rt.stop(h, grace_seconds=30), 10)
    assert info.exit_code == 143
    await wait_until(lambda: gone(gc))


async def test_children_left_behind_die_with_the_main_process(rt, procs, tmp_path):
    pidfile = tmp_path / "gc.pid"
    h = await procs.start(rt, make_spec(tmp_path, ["sh", "-c", f"sleep 1000 & echo $! > {pidfile}"]))
    info = await asyncio.wait_for(rt.wait(h), 10)
    assert info.exit_code == 0
    gc = int(read(pidfile))
    procs.track(gc)
    await wait_until(lambda: gone(gc))


async def test_many_containers_at_once(rt, procs, tmp_path, state_dir):
    specs = [make_spec(tmp_path, ["sleep", "1000"], name=f"c{i}") for i in range(50)]
    handles = await asyncio.wait_for(asyncio.gather(*(procs.start(rt, s) for s in specs)), 60)
    assert len({h.pid for h in handles}) == 50
    assert len(os.listdir(state_dir)) == 50
    infos = await asyncio.wait_for(asyncio.gather(*(rt.stop(h, 5) for h in handles)), 20)
    assert {i.exit_code for i in infos} == {143}


async def test_forget_drops_the_record(rt, procs, tmp_path, state_dir):
    h, _ = await run_to_exit(rt, procs, make_spec(tmp_path, ["true"]))
    assert os.listdir(state_dir) == [f"{h.id}.json"]
    await rt.forget(h)
    assert os.listdir(state_dir) == []
    with pytest.raises(KeyError):
        await rt.wait(h)


# ---- adoption -----------------------------------------------------------------------


async def test_a_new_instance_adopts_running_containers(rt, procs, tmp_path, state_dir):
    h1 = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"], name="a"))
    h2 = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"], name="b"))
    rt2 = ProcessRuntime(state_dir)
    try:
        adopted = {h.id: h for h in await rt2.adopt()}
        assert set(adopted) == {h1.id, h2.id}
        a1, a2 = adopted[h1.id], adopted[h2.id]
        assert (a1.pid, a1.spec, a1.create_time) == (h1.pid, h1.spec, h1.create_time)
        assert [h.id for h in await rt2.adopt()] == sorted([h1.id, h2.id])  # adopt twice: same set

        info = await asyncio.wait_for(rt2.stop(a1, grace_seconds=5), 10)
        assert (info.exit_code, info.reason) == (137, "ContainerStatusUnknown")
        await wait_until(lambda: gone(h1.pid))
        assert (await asyncio.wait_for(rt.wait(h1), 10)).exit_code == 143  # the parent knows better

        os.kill(h2.pid, signal.SIGKILL)  # an adopted container that dies on its own
        info = await asyncio.wait_for(rt2.wait(a2), 10)
        assert info.reason == "ContainerStatusUnknown"
        await rt2.forget(a1)
        await rt2.forget(a2)
        assert os.listdir(state_dir) == []
    finally:
        await rt2.close()


async def test_adopt_after_the_agent_process_exited(procs, tmp_path, state_dir):
    """The real case: the agent that started the containers is gone, they are orphans."""
    log_root = str(tmp_path / "logs")
    agent = textwrap.dedent(f"""
        import asyncio, json
        from sendo.agent.runtime import ContainerSpec, ProcessRuntime
        async def main():
            rt = ProcessRuntime({state_dir!r})
            pids = []
            for name in ("x", "y"):
                h = await rt.start(ContainerSpec("u", "ns", "p", name, 0, ["sleep", "1000"],
                                                 {{"PATH": "/usr/bin:/bin"}}, None, {log_root!r} + "/" + name))
                pids.append(h.pid)
            print(json.dumps(pids))
        asyncio.run(main())
    """)
    out = subprocess.run([PY, "-c", agent], capture_output=True, text=True, timeout=30, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout)
    for pid in pids:
        procs.track(pid)
    assert not any(gone(p) for p in pids)

    rt = ProcessRuntime(state_dir)
    try:
        adopted = sorted(await rt.adopt(), key=lambda h: h.id)
        assert [h.pid for h in adopted] == pids
        infos = await asyncio.wait_for(asyncio.gather(*(rt.stop(h, 5) for h in adopted)), 10)
        assert {i.reason for i in infos} == {"ContainerStatusUnknown"}
        for pid in pids:
            await wait_until(lambda: gone(pid))
    finally:
        await rt.close()


async def test_close_leaves_containers_running_for_the_next_instance(rt, procs, tmp_path, state_dir):
    import gc

    h = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"]))
    await rt.close()
    gc.collect()  # a collected asyncio transport would kill its process
    assert not gone(h.pid)
    rt2 = ProcessRuntime(state_dir)
    try:
        assert [a.pid for a in await rt2.adopt()] == [h.pid]
        await asyncio.wait_for(rt2.stop(h, 5), 10)
        await wait_until(lambda: gone(h.pid))
    finally:
        await rt2.close()


async def test_a_dead_containers_record_is_not_adopted(rt, procs, tmp_path, state_dir):
    h, _ = await run_to_exit(rt, procs, make_spec(tmp_path, ["true"]))
    rt2 = ProcessRuntime(state_dir)
    try:
        assert await rt2.adopt() == []
        assert os.listdir(state_dir) == []  # stale record cleaned up
    finally:
        await rt2.close()


@pytest.mark.parametrize("field,delta", [("create_time", 1000.0), ("start_ticks", 1)])
async def test_a_recycled_pid_is_never_adopted(rt, procs, tmp_path, state_dir, field, delta):
    h = await procs.start(rt, make_spec(tmp_path, ["sleep", "1000"]))
    path = os.path.join(state_dir, f"{h.id}.json")
    with open(path) as f:
        rec = json.load(f)
    rec[field] += delta  # as if the pid now named another process
    with open(path, "w") as f:
        json.dump(rec, f)
    rt2 = ProcessRuntime(state_dir)
    try:
        assert await rt2.adopt() == []
        assert not os.path.exists(path)
        assert not gone(h.pid)  # not ours to kill
    finally:
        await rt2.close()
    await rt.stop(h, 5)


async def test_unreadable_records_are_dropped(state_dir):
    rt = ProcessRuntime(state_dir)
    for name, data in [("bad.json", b"{not json"), ("partial.json", b'{"id": "x"}'), ("x.json.tmp", b"{")]:
        with open(os.path.join(state_dir, name), "wb") as f:
            f.write(data)
    assert await rt.adopt() == []
    assert os.listdir(state_dir) == []


# ---- other event loops ---------------------------------------------------------------


def test_works_under_uvloop(tmp_path, state_dir):
    uvloop = pytest.importorskip("uvloop")
    started = []

    async def main():
        rt = ProcessRuntime(state_dir)
        try:
            h, info = await asyncio.wait_for(
                _start_and_wait(rt, make_spec(tmp_path, py("print('hi'); raise SystemExit(4)"), name="u")), 10
            )
            assert info.exit_code == 4 and read(h.spec.log_path) == "hi\n"
            h = await rt.start(make_spec(tmp_path, ["sleep", "1000"], name="v"))
            started.append(h.pid)
            rt2 = ProcessRuntime(state_dir)
            assert [a.id for a in await rt2.adopt()] == [h.id]
            info = await asyncio.wait_for(rt2.stop(h, 5), 10)
            assert info.reason == "ContainerStatusUnknown"
            assert (await asyncio.wait_for(rt.wait(h), 10)).exit_code == 143
            await rt2.close()
            with pytest.raises(StartError):
                await rt.start(make_spec(tmp_path, ["no-such-cmd-sendo"], name="w"))
        finally:
            for pid in started:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            await rt.close()

    uvloop.run(main())


async def _start_and_wait(rt, spec):
    h = await rt.start(spec)
    return h, await rt.wait(h)


# ---- securityContext -----------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="changing the user needs an agent running as root")
async def test_a_security_context_reaches_the_process_and_its_exec(rt, procs, tmp_path):
    """runAsUser/runAsGroup/supplementalGroups/fsGroup through setpriv, capabilities
    dropped from the bounding set, no_new_privs; `kubectl exec` runs as the same user."""
    from sendo.agent.runtime import SecurityContext
    spec = make_spec(tmp_path, ["sh", "-c", "id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapBnd|CapEff)' "
                                            "/proc/self/status; sleep 30"])
    spec.security_context = SecurityContext(run_as_user=1000, run_as_group=3000, supplemental_groups=[4000],
                                            fs_group=2000, allow_privilege_escalation=False,
                                            capabilities_drop=["ALL"])
    await rt.verify_security(spec)
    h = await procs.start(rt, spec)
    await wait_until(lambda: "CapEff" in read(h.spec.log_path), 10)
    lines = read(h.spec.log_path).split("\n")
    assert lines[:2] == ["1000", "3000"] and set(lines[2].split()) == {"3000", "4000", "2000"}, lines
    status = dict(line.split(":\t") for line in lines[3:] if ":\t" in line)
    assert status == {"NoNewPrivs": "1", "CapBnd": "0000000000000000", "CapEff": "0000000000000000"}, status
    session = await rt.exec(h, ["id", "-u"], stdin=False, tty=False)
    out = b""
    while (chunk := await session.read()) is not None:
        out += chunk[1]
    assert (out, await session.wait()) == (b"1000\n", 0)
    await rt.stop(h, 1)


async def test_what_a_host_process_cannot_have_is_refused_by_name(rt, tmp_path):
    from sendo.agent.runtime import SecurityContext
    from sendo.agent.runtime.security import SecurityRefused
    spec = make_spec(tmp_path, ["true"])
    spec.security_context = SecurityContext(read_only_root_filesystem=True, privileged=True,
                                            capabilities_add=["NET_ADMIN"])
    with pytest.raises(SecurityRefused) as e:
        await rt.verify_security(spec)
    for word in ("readOnlyRootFilesystem", "privileged", "capabilities.add ['NET_ADMIN']", "runtimeClassName: docker"):
        assert word in str(e.value)
    spec.security_context = SecurityContext(run_as_non_root=True, run_as_user=0)
    with pytest.raises(SecurityRefused, match="runAsUser breaks non-root policy"):
        await rt.verify_security(spec)


# ---- volumes at their mountPath --------------------------------------------------------


@pytest.mark.skipif(not ProcessRuntime.mounts_volumes, reason="mount namespaces need an agent running as root")
async def test_exec_sees_the_containers_volumes_at_their_paths(rt, procs, tmp_path):
    """`kubectl exec` into a container with a volume reads and writes the volume, not
    the host's directory at the same path (a regression: exec used to run on the host)."""
    from sendo.agent.runtime import Mount
    volume, mount_point = tmp_path / "volume", tmp_path / "mnt"
    volume.mkdir()
    (volume / "row").write_text("from the volume\n")
    mount_point.mkdir()
    spec = make_spec(tmp_path, ["sh", "-c", "echo started; sleep 30"], working_dir=str(mount_point))
    spec.mounts = [Mount(str(mount_point), str(volume))]
    h = await procs.start(rt, spec)
    await wait_until(lambda: "started" in read(h.spec.log_path), 10)

    async def run(argv):
        session = await rt.exec(h, argv, stdin=False, tty=False)
        out = b""
        while (chunk := await session.read()) is not None:
            out += chunk[1]
        return out, await session.wait()

    assert await run(["cat", str(mount_point / "row")]) == (b"from the volume\n", 0)
    assert await run(["sh", "-c", "pwd; cat row; echo written > new"]) == (
        f"{mount_point}\nfrom the volume\n".encode(), 0)
    assert (volume / "new").read_text() == "written\n"
    assert list(mount_point.iterdir()) == []  # the host's directory at that path is untouched
    await rt.stop(h, 1)
