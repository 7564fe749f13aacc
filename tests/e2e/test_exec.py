"""pods/exec and pods/attach through the real kubectl (WebSocket v5.channel.k8s.io) and the
official Python client (v4.channel.k8s.io), for both runtimes, in one cluster: `sendo up
--runtime docker` runs the container pods, and pods with `runtimeClassName: process`
run as host processes next to them.

Covered: exit codes on the error channel, stdout and stderr apart, stdin (`-i` with
piped input, its end reaching the command), `-it` with a TTY driven through a
pseudo-terminal, `kubectl cp` both ways (tar over exec), `kubectl attach` to a
container's own stdin, and the Python client's `stream()`.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest

from . import containers as ct
from .harness import KUBECTL, REPO, Cluster, http_get, poll, shared_cluster, to_yaml, unique_port

RUNTIMES = ("docker", "process")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, container_image):
    """One cluster for the module: both runtimes, one pod of each kept running."""
    image, _ = container_image
    cidr, svc_cidr, net_args = ct.container_cidrs()
    with shared_cluster(tmp_path_factory.mktemp("exec-cluster"), ("--runtime", "docker", *net_args)) as c:
        c.service_cidr = svc_cidr
        try:
            c.kubectl("apply", "-f", "-", input=to_yaml(*(sleeper(rt, image) for rt in RUNTIMES)))
            for rt in RUNTIMES:
                poll(lambda rt=rt: c.kubectl("get", "pod", f"sleeper-{rt}", "-o",
                                             "jsonpath={.status.phase}").stdout == "Running",
                     120, what=f"pod sleeper-{rt} to run")
            yield c
        finally:
            c.stop()
            ct.cleanup_engine(c, cidr, svc_cidr)


def sleeper(runtime: str, image: str) -> dict:
    spec: dict = {"terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"],
                                  "env": [{"name": "GREETING", "value": f"hello from {runtime}"}]}]}
    if runtime == "process":  # the image is not used: the command runs on the host
        spec["runtimeClassName"] = "process"
    else:  # a file only the container has: its exec readiness probe must run inside it
        spec["containers"][0].update(command=["sh", "-c", "echo ok > /ready-in-container; exec sleep 3600"],
                                     readinessProbe={"exec": {"command": ["cat", "/ready-in-container"]},
                                                     "periodSeconds": 1})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"sleeper-{runtime}"}, "spec": spec}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_streams_output_apart_reads_stdin_and_returns_the_exit_code(cluster: Cluster, runtime):
    pod = f"sleeper-{runtime}"
    r = cluster.kubectl("exec", pod, "--", "sh", "-c", 'echo "out $GREETING"; echo err >&2; exit 3', check=False)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == f"out hello from {runtime}\n"
    assert r.stderr == "err\ncommand terminated with exit code 3\n", r.stderr  # kubectl's own line last
    assert cluster.kubectl("exec", pod, "--", "true").returncode == 0

    # stdin: its end reaches the command (v5's close signal), so `wc` can finish
    data = "".join(f"line {i}\n" for i in range(2000))
    r = cluster.kubectl("exec", "-i", pod, "--", "sh", "-c", "wc -l; exit 7", input=data, check=False)
    assert (r.returncode, r.stdout.strip()) == (7, "2000"), (r.returncode, r.stdout, r.stderr)

    missing = cluster.kubectl("exec", pod, "--", "no-such-command-here", check=False)
    assert missing.returncode != 0 and "no-such-command-here" in missing.stderr, missing


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kubectl_cp_copies_into_and_out_of_a_container(cluster: Cluster, runtime, tmp_path):
    pod = f"sleeper-{runtime}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    (src / "blob.bin").write_bytes(bytes(range(256)) * 400)
    # a relative path: the container's working directory (the pod's directory for the process runtime)
    cluster.kubectl("exec", pod, "--", "mkdir", "-p", "tmp")  # the test image has only /bin
    cluster.kubectl("cp", str(src), f"{pod}:tmp/copied")
    assert cluster.kubectl("exec", pod, "--", "cat", "tmp/copied/a.txt").stdout == "alpha\n"
    out = tmp_path / "back"
    cluster.kubectl("cp", f"{pod}:tmp/copied", str(out))
    assert (out / "a.txt").read_text() == "alpha\n"
    assert (out / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_with_a_tty_is_interactive_and_resizable(cluster: Cluster, runtime):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))  # rows, columns
    p = subprocess.Popen([str(KUBECTL), "exec", "-it", f"sleeper-{runtime}", "--", "sh"], stdin=slave,
                         stdout=slave, stderr=slave, env=cluster.env(), cwd=str(REPO), start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(done, seconds: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            if select.select([master], [], [], min(0.5, seconds))[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # kubectl exited: the pty's other side is closed
                    return
    try:
        read_until(lambda: b"# " in seen or b"$ " in seen or p.poll() is not None, 60)  # the shell's prompt
        # kubectl sends the terminal's size on the resize channel from a goroutine of its
        # own, which may reach the shell after the prompt: ask until it has arrived
        deadline = time.monotonic() + 30
        while b"33 101" not in seen and p.poll() is None and time.monotonic() < deadline:
            os.write(master, b"stty size\n")
            read_until(lambda: b"33 101" in seen or p.poll() is not None, 1)
        os.write(master, b"echo $((6*7))x; exit 4\n")
        read_until(lambda: p.poll() is not None, 60)
        assert p.wait(30) == 4, seen
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        os.close(master)
    assert b"42x" in seen, seen
    assert b"33 101" in seen, seen  # kubectl sent the terminal's size on the resize channel


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_attach_writes_to_the_containers_own_stdin_and_streams_its_output(cluster: Cluster, runtime, container_image):
    image, _ = container_image
    name = f"reader-{runtime}"
    body = sleeper(runtime, image)
    body["metadata"]["name"] = name
    body["spec"]["restartPolicy"] = "Never"
    body["spec"]["containers"][0].update(command=["sh", "-c", 'read line; echo "got $line"'], stdin=True)
    cluster.kubectl("apply", "-f", "-", input=to_yaml(body))
    poll(lambda: cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Running",
         120, what=f"pod {name} to run")
    r = cluster.kubectl("attach", "-i", name, input="over the wire\n", check=False, timeout=90)
    assert "got over the wire" in r.stdout, (r.returncode, r.stdout, r.stderr)
    poll(lambda: cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Succeeded",
         60, what=f"pod {name} to end")
    assert cluster.kubectl("logs", name).stdout == "got over the wire\n"


def test_an_exec_probe_of_a_container_runs_inside_it(cluster: Cluster):
    assert not os.path.exists("/ready-in-container")
    poll(lambda: cluster.kubectl("get", "pod", "sleeper-docker", "-o",
                                 'jsonpath={.status.conditions[?(@.type=="Ready")].status}').stdout == "True",
         60, what="sleeper-docker Ready through its exec readiness probe")


def test_the_python_client_streams_exec_and_reads_the_exit_code(cluster: Cluster):
    from kubernetes import client
    from kubernetes.stream import stream
    v1 = client.CoreV1Api(cluster.api())
    for runtime in RUNTIMES:
        out = stream(v1.connect_get_namespaced_pod_exec, f"sleeper-{runtime}", "default",
                     command=["sh", "-c", "echo $GREETING"], stderr=True, stdin=False, stdout=True, tty=False)
        assert out == f"hello from {runtime}\n", out
        resp = stream(v1.connect_get_namespaced_pod_exec, f"sleeper-{runtime}", "default",
                      command=["sh", "-c", "read x; echo got-$x; echo e >&2; exit 5"], stderr=True, stdin=True,
                      stdout=True, tty=False, _preload_content=False)
        resp.write_stdin("abc\n")
        resp.run_forever(timeout=60)
        assert resp.read_stdout() == "got-abc\n"
        assert resp.read_stderr() == "e\n"
        assert resp.returncode == 5
        resp.close()
    with pytest.raises(client.ApiException) as e:
        stream(v1.connect_get_namespaced_pod_exec, "sleeper-docker", "default", container="nope",
               command=["true"], stderr=True, stdin=False, stdout=True, tty=False)
    assert "container nope is not valid for pod sleeper-docker" in str(e.value)


# ---------------------------------------------------------------------------- network

WEB = "mkdir -p /www && echo \"hello from $HOSTNAME\" > /www/index.html && exec httpd -f -p 0.0.0.0:8080 -h /www"


def test_a_container_reaches_a_service_by_name_and_a_host_port_reaches_a_container(cluster: Cluster, container_image):
    """Inside a container: resolv.conf names the cluster DNS (on the twin of its ClusterIP),
    `web.default.svc.cluster.local` resolves to the twin of the Service's ClusterIP, and an
    HTTP request to it reaches a pod of the Service. On the node: the container's hostPort
    answers on loopback. The twin range is unreachable but for the node's local route."""
    image, _ = container_image
    port = unique_port()
    web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": image, "command": ["sh", "-c", WEB],
                                    "ports": [{"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}]}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web, svc))
    poll(lambda: cluster.kubectl("get", "pod", "web", "-o", "jsonpath={.status.phase}").stdout == "Running",
         120, what="pod web to run")
    cluster_ip = cluster.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    net = ipaddress.ip_network(cluster.service_cidr)
    twin = str(net.network_address + (int(ipaddress.ip_address(cluster_ip)) - int(ipaddress.ip_address("127.32.0.0"))))

    # the node: the twin range is held locally, an address of it that nothing holds goes nowhere else
    assert "unreachable" in ct.run(["ip", "route", "show", "type", "unreachable", cluster.service_cidr]).stdout
    assert ct.route_dev(str(net.network_address + 65000)) == "lo"

    resolv = cluster.kubectl("exec", "sleeper-docker", "--", "cat", "/etc/resolv.conf").stdout
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv, resolv
    assert "ndots:5" in resolv, resolv

    def lookup() -> str:
        r = cluster.kubectl("exec", "sleeper-docker", "--", "nslookup", "web.default.svc.cluster.local", check=False)
        assert twin in r.stdout, r.stdout + r.stderr
        return r.stdout
    poll(lookup, 60, what=f"web.default.svc.cluster.local to resolve to {twin} inside the container")
    short = cluster.kubectl("exec", "sleeper-docker", "--", "nslookup", "web", check=False).stdout
    assert twin in short, short  # through the search list

    def fetch() -> str:
        r = cluster.kubectl("exec", "sleeper-docker", "--", "sh", "-c",
                            f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc {twin} 80', check=False)
        assert "hello from web" in r.stdout, r.stdout + r.stderr
        return r.stdout
    poll(fetch, 60, what="an HTTP answer through the Service from inside a container")

    # hostPort: the node's loopback, relayed into the pod's network namespace
    def host_port() -> bytes:
        status, body = http_get("127.0.0.1", port)
        assert status == 200, status
        return body
    assert b"hello from web" in poll(host_port, 60, what=f"hostPort {port} to answer")
