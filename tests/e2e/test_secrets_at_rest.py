"""Secrets encrypted at rest, on by default: `kubectl create secret` leaves no trace of the
value in the store's files, `sendo secrets rotate-key` seals everything with a new key
while the official client keeps reading, and the cluster reads its Secrets after a restart."""
from __future__ import annotations

import base64
import subprocess
import sys
import threading

import yaml

from .harness import REPO

VALUE = "s3cr3t-at-rest-value"


def store_bytes(cluster) -> bytes:
    d = cluster.data_dir / "server"
    return b"".join(p.read_bytes() for p in (d / "state.db", d / "state.db-wal") if p.exists())


def key_names(cluster) -> list[str]:
    doc = yaml.safe_load((cluster.data_dir / "server" / "encryption-config.yaml").read_text())
    return [k["name"] for k in doc["resources"][0]["providers"][0]["aesgcm"]["keys"]]


def test_secrets_are_sealed_rotated_online_and_read_after_restart(cluster):
    from kubernetes import client
    cfg = cluster.data_dir / "server" / "encryption-config.yaml"
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    for i in range(20):
        cluster.kubectl("create", "secret", "generic", f"db-{i}", f"--from-literal=password={VALUE}-{i}")
    cluster.kubectl("create", "configmap", "plain", "--from-literal=note=visible-configmap-text")
    raw = store_bytes(cluster)
    assert VALUE.encode() not in raw and base64.b64encode(VALUE.encode())[:16] not in raw
    assert b"k8s:enc:aesgcm:v1:" in raw
    before = key_names(cluster)

    api = client.CoreV1Api(cluster.api())
    failures, reads, stop = [], [0], threading.Event()

    def read_loop():
        while not stop.is_set() and reads[0] < 5000:  # bounded
            try:
                s = api.read_namespaced_secret(f"db-{reads[0] % 20}", "default")
                assert base64.b64decode(s.data["password"]).decode().startswith(VALUE)
                reads[0] += 1
            except Exception as e:  # any failed read fails the test
                failures.append(repr(e))
                return
    t = threading.Thread(target=read_loop)
    t.start()
    try:
        r = subprocess.run([sys.executable, "-m", "sendo.cli.main", "secrets", "rotate-key",
                            "--data-dir", str(cluster.data_dir)], capture_output=True, text=True, timeout=300,
                           cwd=str(REPO), stdin=subprocess.DEVNULL, env=cluster.env())
    finally:
        stop.set()
        t.join(60)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "sealed with key" in r.stdout + r.stderr
    assert not failures and reads[0] > 0, failures
    after = key_names(cluster)
    assert len(after) == 1 and after != before
    raw = store_bytes(cluster)
    assert VALUE.encode() not in raw and before[0].encode() not in raw  # nothing sealed with the old key

    # a user without system:masters may not rotate (the node identity here)
    import ssl
    import urllib.error
    import urllib.request

    from sendo.wire import NODE_HEADER
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "server" / "tls" / "ca.crt"))
    node_token = (cluster.data_dir / "server" / "node-token").read_text().strip()
    req = urllib.request.Request(f"https://127.0.0.1:{cluster.port}/sendo/v1/encryption/rotate", data=b"{}",
                                 method="POST", headers={"Authorization": f"Bearer {node_token}", NODE_HEADER: "vm"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    try:
        opener.open(req, timeout=30)
        raise AssertionError("the node identity rotated the key")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and b"system:masters" in e.read()

    cluster.restart()
    out = cluster.kubectl("get", "secret", "db-7", "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(out).decode() == f"{VALUE}-7"
