"""The agent's `podman system service` socket: in the agent's state dir when the path fits a
unix socket (107 bytes), else in a short private temp dir (a deep data dir made bind fail
with EINVAL and no container ever started); the log and the working dir stay in the state dir."""
import os

from sendo.agent.runtime.engine import SUN_PATH_MAX, PodmanService


def test_a_short_state_dir_keeps_its_socket(tmp_path):
    s = PodmanService(str(tmp_path))
    assert s.socket == str(tmp_path / "podman.sock")


def test_a_deep_state_dir_gets_a_socket_path_the_kernel_takes(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    s = PodmanService(str(deep))
    try:
        assert len(os.fsencode(s.socket)) <= SUN_PATH_MAX and os.path.isdir(os.path.dirname(s.socket))
        assert s.log_path == str(deep / "podman-service.log") and s.state_dir == str(deep)
    finally:
        s.stop()
    assert not os.path.exists(os.path.dirname(s.socket))  # the short dir goes with the service
