"""Leader election through a coordination.k8s.io/v1 Lease, over the real API: one leader at a time,
takeover after the lease runs out, at once after a release; and on two `sendo server`s sharing a
3-member etcd, kill -9 of the leader (server and its controllers) hands the loops to the other,
which keeps working when an etcd member dies as well."""
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from sendo.client import ApiError, Client, kind
from sendo.client.leaderelection import LEASES, LeaderElector, Timings
from sendo.kinds.meta import micro_now
from sendo.server import free_port
from sendo.store.etcd_local import LocalEtcd
from tests.waiting import wait_until

FAST = Timings(1.0, 0.6, 0.1)


async def test_one_leader_then_takeover_after_expiry_and_at_once_after_release(client):
    a = LeaderElector(client, "test-lease", "a", timings=FAST)
    b = LeaderElector(client, "test-lease", "b", timings=FAST)
    assert await a.try_acquire_or_renew() and a.is_leader
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert results == [True, False] and not b.is_leader  # a renews; b sees a fresh lease
    lease = await client.get(LEASES, "kube-system", "test-lease")
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 1
    # a stops renewing (as a killed leader does): b takes over once it has seen the lease unchanged for 1 s
    t0 = time.monotonic()
    await asyncio.wait_for(b.acquire(), 30)
    assert time.monotonic() - t0 >= 0.9
    lease = await client.get(LEASES, "kube-system", "test-lease")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # the old leader learns it lost
    renewed = (await client.get(LEASES, "kube-system", "test-lease"))["spec"]["renewTime"]
    holding = asyncio.create_task(b.hold())

    async def renewed_again() -> bool:
        return (await client.get(LEASES, "kube-system", "test-lease"))["spec"]["renewTime"] != renewed
    await wait_until(renewed_again, 30, what="b renewing its lease while it holds it")
    assert not holding.done() and b.is_leader
    holding.cancel()
    await b.release()
    t0 = time.monotonic()
    await asyncio.wait_for(a.acquire(), 30)  # released: no wait for expiry
    assert time.monotonic() - t0 < 0.9
    await a.release()  # stops a's renewer thread before the server stops


# ----------------------------------------------------------------- renewals in their own thread
# A leader in its own process: it blocks its event loop (a synchronous read of stdin) until the test writes a line.
BLOCKED_HOLDER = """
import asyncio, sys
from sendo.client import Client
from sendo.client.leaderelection import LeaderElector, Timings

async def main(url, token, ca_file):
    client = Client(url, token, open(ca_file, "rb").read())
    e = LeaderElector(client, "blocked-lease", "blocked", timings=Timings(6.0, 4.0, 0.5))
    await e.acquire()
    holding = asyncio.create_task(e.hold())
    await asyncio.sleep(0)
    print("blocking", flush=True)
    sys.stdin.readline()
    print("unblocked", e.is_leader and not holding.done(), flush=True)
    holding.cancel()
    await e.release()
    await client.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_leader_whose_event_loop_is_blocked_keeps_its_lease(server, client, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(server.ca_pem)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BLOCKED_HOLDER, server.cfg.url, server.admin_token, str(ca),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line == b"blocking\n", (line, (await proc.stderr.read())[-3000:])
        other = LeaderElector(client, "blocked-lease", "other", timings=Timings(1.5, 1.0, 0.25))
        blocked_at, renewals = time.monotonic(), set()

        async def renewed_while_blocked() -> str | bool:
            """The loop stays blocked for twice the lease duration (6 s: on a loaded machine a
            renewal can be a second or two late, which is not what this test is about); meanwhile
            the Lease is renewed and never taken."""
            if await other.try_acquire_or_renew():
                return "taken by another candidate"
            spec = (await client.get(LEASES, "kube-system", "blocked-lease"))["spec"]
            if spec["holderIdentity"] != "blocked":
                return f"held by {spec['holderIdentity']}"
            renewals.add(spec["renewTime"])
            return len(renewals) >= 3 and time.monotonic() - blocked_at > 2 * 6.0
        assert await wait_until(renewed_while_blocked, 60, interval=0.2, what="renewals while the loop is blocked") \
            is True
        proc.stdin.write(b"\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"unblocked True\n"
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert (await client.get(LEASES, "kube-system", "blocked-lease"))["spec"].get("holderIdentity") is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def start_controllers(server, tmp_path, identity: str) -> tuple[subprocess.Popen, str]:
    """`sendo controllers` as a leader-electing candidate (default timings: 3/2/0.5 s), logging to a file."""
    (tmp_path / "token").write_text(server.admin_token)
    (tmp_path / "ca.pem").write_bytes(server.ca_pem)
    log = str(tmp_path / f"{identity}.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sendo.cli.main", "controllers", "--server", server.cfg.url,
             "--token-file", str(tmp_path / "token"), "--ca-cert", str(tmp_path / "ca.pem"), "--controllers", "podgc",
             "--leader-elect", "--leader-elect-identity", identity, "--metrics-port", str(free_port())],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    return proc, log


async def leading(client: Client, identity: str, proc: subprocess.Popen, log: str) -> None:
    async def holds() -> bool:
        assert proc.poll() is None, open(log).read()[-3000:]
        lease = await client.get_or_none(LEASES, "kube-system", "sendo-controller-manager")
        return ((lease or {}).get("spec") or {}).get("holderIdentity") == identity
    await wait_until(holds, 90, interval=0.2, what=f"{identity} leading")


async def test_a_leader_whose_lease_is_taken_exits_at_once(server, client, tmp_path):
    proc, log = start_controllers(server, tmp_path, "old")
    try:
        await leading(client, "old", proc, log)

        async def taken() -> bool:
            lease = await client.get(LEASES, "kube-system", "sendo-controller-manager")
            lease["spec"] = {**lease["spec"], "holderIdentity": "intruder", "renewTime": micro_now()}
            try:
                await client.update(LEASES, lease)
            except ApiError as e:
                assert e.status == 409, e  # a renewal came first: again
                return False
            return True
        await wait_until(taken, 30, what="the Lease taken by force")
        await wait_until(lambda: proc.poll() is not None, 60, what="the old leader exiting")
        assert proc.returncode == 1
        assert "leadership lost (the lease is held by intruder): exiting at once" in open(log).read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_leader_that_cannot_renew_exits_within_its_renew_deadline(server, client, tmp_path):
    proc, log = start_controllers(server, tmp_path, "cut-off")
    try:
        await leading(client, "cut-off", proc, log)
        # the API server runs on this test's event loop: waiting synchronously stops it answering, so
        # every renewal fails, and only the leader's watchdog can end it
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        assert proc.returncode == 1, open(log).read()[-3000:]
        assert "leadership lost (not renewed for 2 s (the renew deadline)): exiting at once" in open(log).read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_timings_are_refused():
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        Timings(2.0, 2.0, 0.5).check()


# ----------------------------------------------------------------- two servers on one etcd
class ServerProc:
    def __init__(self, data_dir: str, datastore: str):
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.log = open(os.path.join(data_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sendo.cli.main", "server", "--data-dir", data_dir, "--port", str(free_port()),
             "--datastore", datastore], stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(b"export KUBECONFIG="):
                self.ready.set()

    def client(self) -> Client:
        import yaml
        cfg = yaml.safe_load(open(os.path.join(self.data_dir, "kubeconfig")))
        import base64
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        return Client(cfg["clusters"][0]["cluster"]["server"], cfg["users"][0]["user"]["token"], ca)

    def controllers_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children() if "controllers" in c.cmdline()]
        except psutil.NoSuchProcess:
            return []

    def kill9(self):
        """kill -9 of the server and its controllers: nothing gives the Lease up."""
        for pid in self.controllers_pids():
            os.kill(pid, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def deployment(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]}}}}


async def test_kill_9_of_the_leader_hands_the_control_loops_to_another_server(tmp_path):
    etcd = LocalEtcd(str(tmp_path / "etcd"), n=3).start()
    servers: list[ServerProc] = []
    clients: list[Client] = []
    try:
        url = f"{etcd.url}/ha"
        servers = [ServerProc(str(tmp_path / f"s{i}"), url) for i in range(2)]
        for s in servers:  # both start at once on one store
            await wait_until(lambda: s.ready.is_set() or s.proc.poll() is not None, 120, what="sendo server ready")
            assert s.ready.is_set(), open(os.path.join(s.data_dir, "server.log")).read()[-3000:]
        clients = [s.client() for s in servers]

        async def holder(c: Client) -> int | None:
            lease = await c.get_or_none(LEASES, "kube-system", "sendo-controller-manager")
            ident = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
            parts = ident.split("_")
            return int(parts[-2]) if len(parts) >= 3 else None

        pid = await wait_until(lambda: holder(clients[0]), 60, what="a leader")
        leader = next(i for i, s in enumerate(servers) if pid in s.controllers_pids())
        other = 1 - leader
        # exactly one place runs the loops: a Deployment gets one ReplicaSet and its pods
        await clients[other].create(kind("deployments", "apps"), deployment("before"))

        async def pods_of(c: Client, app: str) -> int:
            return len((await c.list(kind("pods"), "default", labelSelector=f"app={app}"))["items"])
        await wait_until(lambda: pods_of(clients[other], "before"), 60, what="pods of the first Deployment")
        rs = (await clients[other].list(kind("replicasets", "apps"), "default"))["items"]
        assert len(rs) == 1
        follower_log = open(os.path.join(servers[other].data_dir, "server", "controllers.log")).read()
        assert "is now the leader" not in follower_log

        servers[leader].kill9()
        t0 = time.monotonic()

        async def taken():
            p = await holder(clients[other])
            return p if p in servers[other].controllers_pids() else None
        new = await wait_until(taken, 60, what="the other server's controllers taking the lease", interval=0.1)
        took = time.monotonic() - t0
        print(f"failover in {took:.1f}s")
        assert new in servers[other].controllers_pids()
        # one etcd member dies too (the first the servers' gRPC channels picked): the other two keep quorum,
        # the channel moves to them, and the new leader acts: a Deployment created after both kills gets its pods
        etcd.kill(etcd.members[0])

        async def created():
            try:
                await clients[other].create(kind("deployments", "apps"), deployment("after"))
            except ApiError as e:
                if e.status == 409:
                    return True  # an earlier try went through
                assert e.status == 503, e  # the store was moving to another member: try again
                return False
            return True
        await wait_until(created, 60, what="a Deployment created through the surviving server", interval=0.2)

        async def both_pods():
            return await pods_of(clients[other], "after") == 2
        await wait_until(both_pods, 60, what="pods of the Deployment created after the kill")
    finally:
        for c in clients:
            await c.close()
        for s in servers:
            if s.proc.poll() is None:
                s.stop()
        etcd.stop()
