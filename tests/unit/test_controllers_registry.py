"""Control loops by name: the registry and `--controllers`, as kube-controller-manager reads it."""
import pytest
from typer.testing import CliRunner

from sendo import controlplane
from sendo.cli import main as cli_main
from sendo.cli.main import app
from sendo.controlplane import CONTROLLERS, ControlPlane, UnknownControllerError, select_controllers

ALL = list(CONTROLLERS)


def test_star_is_every_default_loop_in_start_order():
    assert select_controllers("*") == ALL
    assert ALL[0] == "scheduler" and {"deployment", "replicaset", "garbagecollector", "namespace",
                                      "nodelifecycle", "endpoints", "serviceaccount"} <= set(ALL)


def test_minus_turns_a_loop_off_wherever_it_stands():
    assert select_controllers("*,-nodelifecycle") == [n for n in ALL if n != "nodelifecycle"]
    assert select_controllers("-nodelifecycle,*") == select_controllers("*,-nodelifecycle")
    assert select_controllers(" * , -scheduler , -endpoints ") == [n for n in ALL if n not in ("scheduler",
                                                                                             "endpoints")]


def test_names_alone_run_only_those():
    assert select_controllers("replicaset,deployment") == ["deployment", "replicaset"]  # start order kept
    assert select_controllers("deployment,-deployment") == []  # off wins
    assert select_controllers("") == []


def test_loops_off_by_default_need_their_name(monkeypatch):
    monkeypatch.setattr(controlplane, "OFF_BY_DEFAULT", frozenset({"nodelifecycle"}))
    assert "nodelifecycle" not in select_controllers("*")
    assert "nodelifecycle" in select_controllers("*,nodelifecycle")


def test_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(UnknownControllerError) as e:
        select_controllers("*,-hpa")
    msg = str(e.value)
    assert "'hpa'" in msg and all(n in msg for n in ALL)


async def test_control_plane_builds_only_the_selected_loops():
    cp = ControlPlane("https://127.0.0.1:1", "token", None, "*,-nodelifecycle,-scheduler")
    try:
        assert list(cp.loops) == [n for n in ALL if n not in ("nodelifecycle", "scheduler")]
        assert all(isinstance(loop, CONTROLLERS[n]) for n, loop in cp.loops.items())
    finally:
        for loop in cp.loops.values():
            await loop.stop()
        await cp.client.close()


async def test_options_reach_the_loop_they_name():
    cp = ControlPlane("https://127.0.0.1:1", "token", None, "nodelifecycle",
                      options={"nodelifecycle": {"grace_seconds": 7.5}})
    try:
        assert cp.loops["nodelifecycle"].grace == 7.5
    finally:
        await cp.loops["nodelifecycle"].stop()
        await cp.client.close()


@pytest.mark.parametrize("command", [["controllers", "--server", "https://127.0.0.1:1", "--token-file", "/dev/null"],
                                     ["server"], ["up"]])
def test_every_command_refuses_an_unknown_controller_before_starting(command, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(cli_main, "run", lambda coro: (started.append(coro), coro.close()))  # never start
    args = command + (["--data-dir", str(tmp_path)] if command[0] != "controllers" else [])
    r = CliRunner().invoke(app, args + ["--controllers", "*,-nodelifecycel"])
    assert started == []
    assert r.exit_code == 2
    out = " ".join(r.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())  # rich boxes and wraps it
    assert "unknown controller 'nodelifecycel'" in out and "nodelifecycle" in out.replace("'nodelifecycel'", "")


def test_a_good_selection_reaches_the_control_plane(monkeypatch, tmp_path):
    calls = []

    async def run_controllers(url, token, ca, controllers, election=None, identity="", metrics_port=None,
                              options=None):
        calls.append((url, token, controllers, election, options))
    monkeypatch.setattr(controlplane, "run_controllers", run_controllers)
    token = tmp_path / "token"
    token.write_text("t")
    r = CliRunner().invoke(app, ["controllers", "--server", "https://127.0.0.1:1", "--token-file", str(token),
                                 "--controllers", "*,-scheduler", "--node-monitor-grace-period", "1m5s"])
    assert r.exit_code == 0, r.output
    # no leader election unless asked; the grace period from the flag
    assert calls == [("https://127.0.0.1:1", "t", "*,-scheduler", None,
                      {"nodelifecycle": {"grace_seconds": 65.0}, "horizontalpodautoscaling": {"sync_period": 15.0}})]


def test_leader_election_flags_reach_the_control_plane_and_bad_timings_are_refused(monkeypatch, tmp_path):
    from sendo.client.leaderelection import KUBERNETES_TIMINGS
    calls = []

    async def run_controllers(url, token, ca, controllers, election=None, identity="", *_):
        calls.append((election, identity))
    monkeypatch.setattr(controlplane, "run_controllers", run_controllers)
    token = tmp_path / "token"
    token.write_text("t")
    base = ["controllers", "--server", "https://127.0.0.1:1", "--token-file", str(token), "--leader-elect"]
    r = CliRunner().invoke(app, base + ["--leader-elect-lease-duration", "15", "--leader-elect-renew-deadline", "10",
                                        "--leader-elect-retry-period", "2", "--leader-elect-identity", "me"])
    assert r.exit_code == 0, r.output
    assert calls == [(KUBERNETES_TIMINGS, "me")]
    r = CliRunner().invoke(app, base + ["--leader-elect-lease-duration", "1", "--leader-elect-renew-deadline", "2"])
    out = " ".join(r.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())  # rich boxes and wraps it
    assert r.exit_code == 2 and "lease duration > renew deadline" in out and "1.0/2.0/0.5" in out


@pytest.mark.parametrize("command", [["controllers", "--server", "https://127.0.0.1:1", "--token-file", "t"],
                                     ["server"], ["up"]])
@pytest.mark.parametrize("value", ["soon", "0s", "-5s", "nan"])
def test_a_bad_grace_period_is_refused_before_anything_starts(monkeypatch, tmp_path, command, value):
    started = []
    monkeypatch.setattr(cli_main, "run", lambda coro: (started.append(coro), coro.close()))  # never start
    args = command + (["--data-dir", str(tmp_path)] if command[0] != "controllers" else [])
    r = CliRunner().invoke(app, args + ["--node-monitor-grace-period", value])
    assert started == [] and r.exit_code == 2
    assert "--node-monitor-grace-period" in " ".join(r.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


def test_server_flags_reach_the_server_config(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(cli_main, "run", lambda coro: (seen.append(coro.cr_frame.f_locals["cfg"]), coro.close()))
    r = CliRunner().invoke(app, ["server", "--data-dir", str(tmp_path), "--node-monitor-grace-period", "5s",
                                 "--default-unreachable-toleration-seconds", "2",
                                 "--default-not-ready-toleration-seconds", "3"])
    assert r.exit_code == 0, r.output
    (cfg,) = seen
    assert (cfg.node_monitor_grace_period, cfg.default_unreachable_toleration_seconds,
            cfg.default_not_ready_toleration_seconds) == (5.0, 2, 3)
    r = CliRunner().invoke(app, ["server", "--data-dir", str(tmp_path), "--default-unreachable-toleration-seconds",
                                 "-1"])
    assert r.exit_code == 2 and len(seen) == 1


def test_the_server_hands_its_grace_period_to_the_controllers_child(monkeypatch, tmp_path):
    calls = []

    async def run_controllers(url, token, ca, controllers, election=None, identity="", metrics_port=None,
                              options=None):
        calls.append(options)
    monkeypatch.setattr(controlplane, "run_controllers", run_controllers)
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("t")
    ca.write_text("pem")
    child = controlplane.ControlPlaneProcess("https://127.0.0.1:1", str(token), str(ca), str(tmp_path / "log"),
                                             node_monitor_grace_period=0.25)
    r = CliRunner().invoke(app, child.args[child.args.index("controllers"):])  # the child's command line
    assert r.exit_code == 0, r.output
    assert [c["nodelifecycle"] for c in calls] == [{"grace_seconds": 0.25}]
