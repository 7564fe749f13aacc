"""`sendo up --servers 3`: three etcd members and three API servers on loopback behind the
balancer the kubeconfig points at. One cluster for the module; the tests run in order:

0. every server accepts the others' tokens and opens their sealed Secrets;
1. kill -9 the server whose controllers hold the Lease (and those controllers: the machine
   "dies", nothing is given up cleanly) → kubectl through the kubeconfig answers at once,
   another server's controllers take the Lease, and a Deployment created after the kill
   gets Ready pods (scheduler, controllers and the agent's failover all worked);
2. kill -9 another server during a bounded stream of creates from the official `kubernetes`
   client (one connection per request, so the writes spread over the servers), retried
   on connection errors → every acknowledged write is listed at the end, and the Services
   among them got distinct cluster IPs from different servers;
   after each kill, `sendo up`'s supervisor starts the dead server again (logged);
3. a rolling restart (SIGTERM to each server in turn, the supervisor starts it again) while a
   bounded loop reads and writes through the kubeconfig's balancer with the official client,
   its retries turned off → not one request fails; kubectl works after each restart;
4. scheduled snapshots (every 10 s here, 2 kept): an Event in kube-system for each, the
   oldest pruned.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from .harness import Cluster, poll, ready_pods, to_yaml, unique_port, web_deployment

LEASE = ("-n", "kube-system", "lease", "sendo-controller-manager")
WRITES = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ha"), ("--servers", "3", "--no-ingress", "--node-name", "ha-node",
                                                 "--snapshot-schedule", "* * * * * */10", "--snapshot-retention", "2"))
    c.start_deadline = 240.0  # three etcd members and three servers on a loaded machine
    try:
        c.start()
        yield c
    finally:
        try:
            c.stop(90.0)
        finally:
            c._cleanup()


def servers(cluster: Cluster) -> dict[int, psutil.Process]:
    """The live `sendo server` children of `sendo up`, by PID."""
    out = {}
    for p in psutil.Process(cluster.pid).children():
        try:
            if "server" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = p
        except psutil.NoSuchProcess:
            continue
    return out


def holder(cluster: Cluster) -> str:
    r = cluster.kubectl("get", *LEASE, "-o", "jsonpath={.spec.holderIdentity}", check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def kill9(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def server_get(cluster: Cluster, port: int, path: str, token: str) -> tuple[int, dict]:
    """GET straight from one server (not through the balancer), trusting the kubeconfig's CA."""
    import base64
    import json
    import ssl
    import urllib.error
    import urllib.request
    ca = base64.b64decode(cluster.kubeconfig_data()["clusters"][0]["cluster"]["certificate-authority-data"])
    ctx = ssl.create_default_context(cadata=ca.decode())
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_servers_share_one_identity(cluster: Cluster):
    """Each server serves the certificate the kubeconfig's CA trusts, takes the admin token
    and a ServiceAccount token another server issued, and opens Secrets another sealed."""
    import json
    ports = json.loads((cluster.data_dir / "ha" / "layout.json").read_text())["servers"]
    assert len(ports) == 3
    admin = cluster.kubeconfig_data()["users"][0]["user"]["token"]
    cluster.kubectl("create", "secret", "generic", "shared", "--from-literal=k=v1")
    sa_token = cluster.kubectl("create", "token", "default").stdout.strip()
    for port in ports:
        code, secret = server_get(cluster, port, "/api/v1/namespaces/default/secrets/shared", admin)
        assert code == 200 and secret["data"]["k"] == "djE=", (port, code, secret)
        code, review = server_get(cluster, port, "/api/v1/namespaces/default/pods", sa_token)
        assert code in (200, 403), (port, code, review)  # authenticated (the account may not list pods)
        if code == 403:
            assert "system:serviceaccount:default:default" in review.get("message", ""), review
        assert server_get(cluster, port, "/api/v1/namespaces", "not-a-token")[0] == 401


def test_kill_9_of_the_leading_server_keeps_kubectl_working_and_loops_running(cluster: Cluster):
    assert "Try a failover: kill -9" in cluster.log_path.read_text(), "sendo up says how to try a failover"
    before = servers(cluster)
    assert len(before) == 3, before
    ident = poll(lambda: holder(cluster), 60, what="a controller Lease holder")
    controllers_pid = int(ident.split("_")[-2])
    leader = psutil.Process(controllers_pid).parent()
    assert leader is not None and leader.pid in before
    kill9([psutil.Process(controllers_pid), leader])  # its controllers first: no clean hand-over

    nodes = cluster.kubectl("get", "nodes", "-o", "name")  # at once, no retry: the balancer skips the dead one
    assert nodes.stdout.split() == ["node/ha-node"]
    new = poll(lambda: (h := holder(cluster)) and h != ident and h, 60, what="another holder of the Lease")
    assert psutil.Process(int(new.split("_")[-2])).parent().pid in set(before) - {leader.pid}

    # `sendo status` shows each server and its controllers, the dead one down
    st = subprocess.run([sys.executable, "-m", "sendo.cli.main", "status", "--data-dir", str(cluster.data_dir)],
                        capture_output=True, text=True, env=cluster.env(), timeout=60)
    servers_rows = [line.split() for line in st.stdout.splitlines() if line.startswith("apiserver ")][1:]
    ups = sorted(r[3] for r in servers_rows)
    assert len(servers_rows) == 3, st.stdout + st.stderr
    # the dead one is down (status exits 1), unless the supervisor has already started it again
    assert (ups == ["0", "1", "1"] and st.returncode == 1) or (ups == ["1", "1", "1"] and len(servers(cluster)) == 3), \
        st.stdout

    # pods reach the API through the balancer too: the `kubernetes` Service's endpoints name it
    eps = cluster.kubectl_json("get", "endpoints", "kubernetes")
    assert eps["subsets"][0]["ports"][0]["port"] == cluster.port

    port = unique_port()
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("after-kill", port, replicas=2)))
    poll(lambda: ready_pods(cluster, "app=after-kill", 2, port), 90,
         what="2 pods of a Deployment made after the kill Running and answering")
    restarted(cluster, leader.pid)


def restarted(cluster: Cluster, dead: int) -> dict[int, psutil.Process]:
    """`sendo up` started the dead server again: three live servers, the dead pid not among them, logged."""
    def back():
        live = servers(cluster)
        return live if len(live) == 3 and dead not in live else None
    live = poll(back, 120, what="the supervisor to start the killed server again")
    log = cluster.log_path.read_text()
    assert f"(pid {dead}) exited with" in log and "restarted: pid" in log, log[-3000:]
    return live


def test_kill_9_during_a_stream_of_writes_loses_no_acknowledged_write(cluster: Cluster):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    api = cluster.api()
    api.set_default_header("Connection", "close")  # a connection per request: writes spread over the servers
    core = client.CoreV1Api(api)
    acked: list[str] = []
    errors: list[str] = []
    labels = {"stream": "ha"}

    def body(i: int):
        meta = client.V1ObjectMeta(name=f"w{i}", labels=labels)
        if i % 5 == 0:
            return core.create_namespaced_service, client.V1Service(
                metadata=meta, spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]))
        return core.create_namespaced_config_map, client.V1ConfigMap(metadata=meta, data={"i": str(i)})

    def write() -> None:
        for i in range(WRITES):
            create, obj = body(i)
            deadline = time.monotonic() + 60
            retried = False
            while True:
                try:
                    create("default", obj)
                    acked.append(f"w{i}")
                    break
                except ApiException as e:
                    if e.status == 409 and retried:  # the lost answer's write had been made: it counts
                        acked.append(f"w{i}")
                        break
                    if e.status not in (500, 503, 504, 0):
                        errors.append(f"w{i}: {e.status} {e.reason}")
                        break
                except (HTTPError, OSError) as e:
                    if time.monotonic() > deadline:
                        errors.append(f"w{i}: {e}")
                        break
                retried = True
                time.sleep(0.2)  # back-off before retrying a write whose connection failed

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    poll(lambda: len(acked) >= WRITES // 4 or not writer.is_alive(), 60, interval=0.02, what="a quarter written")
    alive = servers(cluster)
    victim = next(iter(alive.values()))
    kill9([*victim.children(), victim])
    writer.join(180)
    assert not writer.is_alive(), f"the writes did not finish; {len(acked)} acknowledged"
    assert not errors, errors
    assert len(acked) == WRITES
    listed = {i.metadata.name for i in core.list_namespaced_config_map("default", label_selector="stream=ha").items}
    svcs = core.list_namespaced_service("default", label_selector="stream=ha").items
    listed |= {s.metadata.name for s in svcs}
    assert set(acked) <= listed, f"lost: {sorted(set(acked) - listed)}"
    ips = [s.spec.cluster_ip for s in svcs]
    assert len(ips) == WRITES // 5 and len(set(ips)) == len(ips), ips
    restarted(cluster, victim.pid)
    assert os.path.exists(cluster.kubeconfig)


def ready(cluster: Cluster, port: int) -> bool:
    """One server's /readyz (not through the balancer) answers 200."""
    import base64
    import ssl
    import urllib.request
    ca = base64.b64decode(cluster.kubeconfig_data()["clusters"][0]["cluster"]["certificate-authority-data"])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(
        context=ssl.create_default_context(cadata=ca.decode())))
    try:
        with opener.open(f"https://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status == 200
    except OSError:  # refused, or 503 (urllib's HTTPError is an OSError)
        return False


def by_port(procs: dict[int, psutil.Process], port: int) -> psutil.Process | None:
    for p in procs.values():
        args = p.cmdline()
        if "--port" in args and args[args.index("--port") + 1] == str(port):
            return p
    return None


def test_rolling_restart_of_every_server_keeps_the_api_answering(cluster: Cluster):
    import json
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    cfg.retries = False  # no silent retry by urllib3: every failure counts
    api = client.ApiClient(cfg)
    api.set_default_header("Connection", "close")  # a new connection through the balancer each time
    core = client.CoreV1Api(api)
    failures: list[str] = []
    done = threading.Event()
    counts = {"requests": 0}

    def loop() -> None:
        for i in range(5000):  # bounded; ends when the restarts are over
            if done.is_set():
                return
            try:
                if i % 2:
                    core.create_namespaced_config_map("default", client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(name=f"roll-{i}", labels={"roll": "yes"})))
                else:
                    core.list_namespaced_config_map("default", label_selector="roll=yes", limit=5)
            except (ApiException, HTTPError, OSError) as e:
                failures.append(f"{i}: {type(e).__name__} {getattr(e, 'status', '')} {str(e)[:200]}")
            counts["requests"] += 1

    ports = json.loads((cluster.data_dir / "ha" / "layout.json").read_text())["servers"]
    poll(lambda: len(servers(cluster)) == 3 and all(ready(cluster, p) for p in ports), 120, what="3 ready servers")
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        for port in ports:
            old = by_port(servers(cluster), port)
            assert old is not None
            sent = counts["requests"]
            old.send_signal(signal.SIGTERM)  # what a rolling upgrade does to each server in turn
            psutil.wait_procs([old], timeout=60)
            new = poll(lambda: (p := by_port(servers(cluster), port)) and p.pid != old.pid and ready(cluster, port)
                       and p, 120, what=f"the server on port {port} restarted and ready")
            assert new.pid != old.pid and counts["requests"] > sent, "the loop made requests during the restart"
            assert cluster.kubectl("get", "nodes", "-o", "name").stdout.split() == ["node/ha-node"]
    finally:
        done.set()
        t.join(60)
    assert not t.is_alive()
    assert counts["requests"] > 0 and not failures, f"{len(failures)} of {counts['requests']} failed: {failures[:5]}"


def test_scheduled_snapshots_make_events_and_keep_the_newest(cluster: Cluster):
    def saved():
        evs = cluster.kubectl_json("get", "events", "-n", "kube-system", "--field-selector", "reason=SnapshotSaved")
        assert all(e["reason"] == "SnapshotSaved" for e in evs["items"])
        return evs["items"] or None
    evs = poll(saved, 120, what="an Event for a scheduled snapshot")
    assert all(e["type"] == "Normal" and ".etcd" in e["message"] for e in evs), evs
    snaps = cluster.data_dir / "servers" / "s0" / "snapshots"
    poll(lambda: any("pruned: /" in e["message"] for e in saved() or []), 120, what="a snapshot that pruned the oldest")
    kept = [n for n in os.listdir(snaps) if n.startswith("scheduled-") and n.endswith(".etcd")]
    assert 1 <= len(kept) <= 3, kept  # 2 kept; a third may be being written right now


def test_a_snapshot_through_the_api_with_kubectl_and_the_python_client(cluster: Cluster):
    """`kubectl create` of a sendo.dev Snapshot: one of the servers takes it (one claim) and its
    status names the file; the official client reads the same object."""
    from kubernetes import client
    cluster.kubectl("create", "-f", "-", input=to_yaml(
        {"apiVersion": "sendo.dev/v1alpha1", "kind": "Snapshot", "metadata": {"name": "before-change"}}))
    phase = poll(lambda: cluster.kubectl("get", "snapshot", "before-change", "-o",
                                         "jsonpath={.status.phase}").stdout.strip() in ("Completed", "Failed")
                 and cluster.kubectl("get", "snapshot", "before-change", "-o", "jsonpath={.status.phase}").stdout,
                 120, what="the Snapshot taken")
    assert phase.strip() == "Completed"
    obj = client.CustomObjectsApi(cluster.api()).get_cluster_custom_object(
        "sendo.dev", "v1alpha1", "snapshots", "before-change")
    path = obj["status"]["path"]
    assert path.endswith(".etcd") and os.path.exists(path) and path.startswith(str(cluster.data_dir / "servers"))
    table = cluster.kubectl("get", "snapshots").stdout
    assert "before-change" in table and "Completed" in table and path in table
