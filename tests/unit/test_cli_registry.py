"""`sendo up --registry [PORT]`: the option's value may be left out, and only loopback
addresses are accepted."""
from __future__ import annotations

import socket

import pytest

from sendo.cli import registry
from sendo.cli.main import _optional_values


def test_registry_without_a_value_means_auto():
    assert _optional_values(["up", "--registry"]) == ["up", "--registry", "auto"]
    assert _optional_values(["up", "--registry", "--runtime", "docker"]) == [
        "up", "--registry", "auto", "--runtime", "docker"]
    assert _optional_values(["up", "--registry", "5005"]) == ["up", "--registry", "5005"]


@pytest.mark.parametrize("value,parsed", [("auto", ("127.0.0.1", 5000, True)), ("5005", ("127.0.0.1", 5005, False)),
                                          ("127.0.0.2:5006", ("127.0.0.2", 5006, False)),
                                          ("localhost:5007", ("127.0.0.1", 5007, False))])
def test_addresses(value, parsed):
    assert registry.parse_address(value) == parsed


@pytest.mark.parametrize("value,error", [("0.0.0.0:5000", "not a loopback address"), ("10.1.2.3:5000", "loopback"),
                                         ("70000", "from 1 to 65535"), ("example.org:5000", "give a port")])
def test_bad_addresses_say_why(value, error):
    with pytest.raises(registry.RegistryError, match=error):
        registry.parse_address(value)


def test_a_taken_port_is_refused_when_given_and_skipped_when_not():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(registry.RegistryError, match=f"127.0.0.1:{port} is taken"):
            registry._pick_port("127.0.0.1", port, fallback=False)
        assert registry._pick_port("127.0.0.1", port, fallback=True) > port



def test_a_port_taken_after_the_probe_moves_the_registry_on(tmp_path, monkeypatch):
    """Two clusters started together both probe 5000 free; the one that loses the bind must not
    take the other's registry (answering on that port) for its own."""
    first = registry.LocalRegistry.start(str(tmp_path / "a"), "auto")
    port = int(first.address.rpartition(":")[2])
    try:
        monkeypatch.setattr(registry, "_pick_port", lambda host, p, fallback: p)  # every probe says "free"
        with pytest.raises(registry.RegistryError, match="taken by another process"):
            registry.LocalRegistry.start(str(tmp_path / "b"), str(port))  # a port given: refused
        monkeypatch.setattr(registry, "parse_address", lambda value: ("127.0.0.1", port, True))
        moved = registry.LocalRegistry.start(str(tmp_path / "c"), "auto")  # none given: the next one
        try:
            assert moved.address != first.address and moved.listening() and first.listening()
        finally:
            moved.stop()
    finally:
        first.stop()
