"""Pod sandboxes of the process runtime: one loopback IP per pod.

Every 127.x address is local to the machine, so a pod's processes can bind their own
pod IP without root and without a network namespace, and nothing sent to it can leave
the machine. IPs come from the node's podCIDR (a slice of 127.64.0.0/10 that the API
server gives each node). A sandbox is a small JSON record per pod, so a restarted agent
keeps every running pod's IP and never hands it to another pod.
"""
from __future__ import annotations

import ipaddress
import logging
import os

import orjson

from .base import Sandbox, SandboxConfig, SandboxError

log = logging.getLogger(__name__)


class PodIPs:
    """Pod IPs from the node's podCIDR; the network and broadcast addresses and .1 are never given."""

    def __init__(self) -> None:
        self.net: ipaddress.IPv4Network | None = None
        self.used: dict[str, str] = {}  # pod uid -> ip
        self._next = 2

    def assign(self, uid: str, wanted: str | None = None) -> str:
        if uid in self.used:
            return self.used[uid]
        if self.net is None:
            raise SandboxError("the node has no podCIDR yet")
        taken = set(self.used.values())
        if wanted and wanted not in taken and _in(wanted, self.net):
            self.used[uid] = wanted
            return wanted
        size = self.net.num_addresses
        for i in range(size - 3):
            n = 2 + (self._next - 2 + i) % (size - 3)
            ip = str(self.net.network_address + n)
            if ip not in taken:
                self._next = n + 1
                self.used[uid] = ip
                return ip
        raise SandboxError(f"no free pod IP left in {self.net}")

    def reserve(self, uid: str, ip: str) -> None:
        """An IP a pod already holds (read back after a restart)."""
        self.used[uid] = ip

    def release(self, uid: str) -> None:
        self.used.pop(uid, None)


def _in(ip: str, net: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


class LoopbackSandboxes:
    """The sandboxes themselves: `<dir>/<pod uid>.json`, written before the IP is used."""

    def __init__(self, directory: str):
        self.dir = directory
        self.ips = PodIPs()
        self.by_id: dict[str, Sandbox] = {}

    def load(self) -> None:
        """Take back the sandboxes recorded by an earlier agent, with their IPs."""
        if not os.path.isdir(self.dir):
            return
        for name in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, name)
            if not name.endswith(".json"):
                _unlink(path)  # e.g. a .tmp left by a crash mid-write
                continue
            try:
                with open(path, "rb") as f:
                    sb = Sandbox(**orjson.loads(f.read()))
            except (OSError, ValueError, TypeError) as e:
                log.warning("dropping unreadable sandbox record %s: %s", path, e)
                _unlink(path)
                continue
            self.by_id[sb.id] = sb
            self.ips.reserve(sb.pod_uid, sb.ip)

    def run(self, config: SandboxConfig) -> Sandbox:
        sb = self.by_id.get(config.pod_uid)
        if sb is not None:
            return sb
        ip = self.ips.assign(config.pod_uid, config.ip_hint)
        sb = Sandbox(id=config.pod_uid, pod_uid=config.pod_uid, namespace=config.namespace,
                     pod_name=config.pod_name, ip=ip, pod_dir=config.pod_dir)
        try:
            self._write(sb)
        except OSError as e:
            self.ips.release(config.pod_uid)
            raise SandboxError(f"cannot record the pod sandbox in {self.dir}: {e.strerror or e}") from e
        self.by_id[sb.id] = sb
        return sb

    def remove(self, sandbox_id: str) -> None:
        sb = self.by_id.pop(sandbox_id, None)
        if sb is not None:
            self.ips.release(sb.pod_uid)
        _unlink(os.path.join(self.dir, f"{sandbox_id}.json"))

    def _write(self, sb: Sandbox) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.dir, f"{sb.id}.json")
        with open(path + ".tmp", "wb") as f:
            f.write(orjson.dumps(sb))  # a dataclass: orjson writes it as asdict would
        os.replace(path + ".tmp", path)  # a crash leaves the old record or the new one


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
