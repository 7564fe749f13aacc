"""The `docker` runtime through the real kubectl: images pulled from a local registry,
one network namespace per pod on a bridge of the cluster's pod CIDR, logs, limits,
and containers adopted by a restarted agent.

The engine is Podman (`podman system service`, started by the agent itself), installed
by scripts/setup-containers.sh if missing. Nothing leaves the machine: the image comes
from a registry on loopback, the bridge network is internal, an unreachable route
covers the pod CIDR before the first pod starts, and pod IPs are contacted only once
they route over this cluster's bridge.
"""
from __future__ import annotations

import ipaddress
import json

import pytest

from . import containers as ct
from .harness import Cluster, LineReader, http_get, poll, shared_cluster, to_yaml


@pytest.fixture(scope="module")
def docker_cluster(tmp_path_factory, container_image):
    """One `sendo up --registry --runtime docker` for the module, on a pod CIDR of its own."""
    cidr, svc_cidr, net_args = ct.container_cidrs()
    # --registry without a port (then 5000, or the next free one): the option's value may be left out
    with shared_cluster(tmp_path_factory.mktemp("docker-cluster"),
                        ("--registry", "--runtime", "docker", *net_args)) as c:
        c.pod_cidr = cidr
        try:
            yield c
            registry = ct.registry_of(c)
            assert registry is not None, "sendo up --registry started no registry"
            service = ct.podman_service_of(c)
            if not ct.engine_socket_elsewhere():  # then sendo ran the engine itself...
                assert service is not None, "sendo started no podman system service of its own"
            c.stop()
            if service is not None:  # ...and stopped it when it stopped
                ct.wait_gone(service)
                assert not ct.podman_service_of(c), "the podman service outlived sendo"
            ct.wait_gone(registry)
            assert not ct.registry_of(c), "the registry outlived sendo"
        finally:
            c.stop()
            ct.cleanup_engine(c, cidr, svc_cidr)


def pod(name: str, image: str, *, command=None, args=None, restart="Never", **container) -> dict:
    c = {"name": "main", "image": image, **container}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": [c]}}


def phase(c: Cluster, name: str) -> str:
    return c.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout


def status(c: Cluster, name: str) -> dict:
    return c.kubectl_json("get", "pod", name).get("status") or {}


def events(c: Cluster, name: str) -> list[dict]:
    return c.kubectl_json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


# ---------------------------------------------------------------------------- images

def test_command_and_args_override_entrypoint_and_cmd_as_kubernetes_does(docker_cluster, container_image):
    image, _ = container_image
    c = docker_cluster
    c.kubectl("apply", "-f", "-", input=to_yaml(
        pod("defaults", image),
        pod("only-args", image, args=["from-args"]),
        pod("only-command", image, command=["/bin/echo", "from-command"]),
        pod("both", image, command=["/bin/echo"], args=["c", "$(GREETING)"], env=[{"name": "GREETING", "value": "hi"}]),
        pod("env-and-dir", image, command=["sh", "-c", 'echo "$GREETING in $(pwd)"'],
            env=[{"name": "GREETING", "value": "hello"}], workingDir="/work/here"),
    ))
    want = {"defaults": "entrypoint cmd", "only-args": "entrypoint from-args", "only-command": "from-command",
            "both": "c hi", "env-and-dir": "hello in /work/here"}
    for name, line in want.items():
        poll(lambda: phase(c, name) == "Succeeded", 90, what=f"pod {name} to succeed ({status(c, name)})")
        assert c.kubectl("logs", name).stdout.strip() == line, name

    st = status(c, "defaults")["containerStatuses"][0]
    assert st["image"] == image
    assert st["imageID"].startswith(image.rsplit(":", 1)[0] + "@sha256:"), st["imageID"]
    assert st["state"]["terminated"]["reason"] == "Completed"
    reasons = [(e["reason"], e["message"]) for e in events(c, "defaults")]
    assert ("Pulled", f'Container image "{image}" already present on machine') in reasons \
        or any(r == "Pulled" and m.startswith(f'Successfully pulled image "{image}" in ') for r, m in reasons), reasons


def test_a_latest_tag_is_always_pulled_and_a_missing_tag_backs_off(docker_cluster, container_image):
    image, registry = container_image
    c = docker_cluster
    missing = f"{registry.address}/sendo-test/busybox:no-such-tag"
    c.kubectl("apply", "-f", "-", input=to_yaml(pod("wrong-tag", missing, command=["true"])))

    def waiting(reason: str):
        st = (status(c, "wrong-tag").get("containerStatuses") or [{}])[0]
        w = (st.get("state") or {}).get("waiting") or {}
        return w if w.get("reason") == reason else None
    err = poll(lambda: waiting("ErrImagePull"), 60, what="ErrImagePull")
    assert missing in err["message"] and "manifest unknown" in err["message"], err
    backoff = poll(lambda: waiting("ImagePullBackOff"), 30, what="ImagePullBackOff")
    assert f'Back-off pulling image "{missing}"' in backoff["message"]
    failed = [e["message"] for e in events(c, "wrong-tag") if e["reason"] == "Failed"]
    assert failed and f'Failed to pull image "{missing}"' in failed[0] and "manifest unknown" in failed[0], failed
    assert phase(c, "wrong-tag") == "Pending"


def test_an_image_pull_secret_opens_a_registry_with_basic_auth(docker_cluster, container_image, tmp_path):
    c = docker_cluster
    reg = ct.start_registry(tmp_path / "private", "boat", "s3cret-oar")
    try:
        image = ct.build_and_push(reg, tmp_path / "image", creds="boat:s3cret-oar")
        c.kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server={reg.address}",
                  "--docker-username=boat", "--docker-password=s3cret-oar")
        with_secret = pod("with-secret", image, command=["echo", "pulled with a secret"])
        with_secret["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
        c.kubectl("apply", "-f", "-", input=to_yaml(with_secret, pod("without-secret", image, command=["true"])))
        poll(lambda: phase(c, "with-secret") == "Succeeded", 90, what=f"with-secret to succeed ({status(c, 'with-secret')})")
        assert c.kubectl("logs", "with-secret").stdout == "pulled with a secret\n"

        def refused():
            st = (status(c, "without-secret").get("containerStatuses") or [{}])[0]
            w = (st.get("state") or {}).get("waiting") or {}
            return w if w.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None
        w = poll(refused, 120, what="without-secret refused by the registry")
        assert image in w["message"] and "unauthorized" in w["message"].lower(), w
    finally:
        ct.remove_images_of(reg)
        reg.stop()


# ---------------------------------------------------------------------------- network

def test_pod_cidr_is_guarded_by_an_unreachable_route_and_limits_reach_the_engine(docker_cluster, container_image):
    image, _ = container_image
    c = docker_cluster
    c.kubectl("apply", "-f", "-", input=to_yaml(pod("guard", image, command=["sleep", "3600"],
                                                    resources={"limits": {"memory": "32Mi", "cpu": "250m"}})))
    poll(lambda: phase(c, "guard") == "Running", 90, what="a container pod running")
    # the limits, as the engine applies them: memory limit (no swap beyond it), CFS quota
    [cid] = ct.engine_containers(c, "io.sendo.pod-name=guard", "io.sendo.role=container")
    host = json.loads(ct.run(["podman", "inspect", cid]).stdout)[0]["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (32 * 2**20, 32 * 2**20)
    assert (host["CpuQuota"], host["CpuPeriod"]) == (25000, 100000)
    net = ipaddress.ip_network(c.pod_cidr)
    unassigned = str(net[-2])  # outside this node's /24, inside the pod CIDR
    assert "unreachable" in ct.run(["ip", "route", "show", "type", "unreachable", c.pod_cidr]).stdout
    assert ct.route_dev(unassigned).startswith("RTNETLINK answers: No route to host"), ct.route_dev(unassigned)
    ip = status(c, "guard")["podIP"]
    assert ipaddress.ip_address(ip) in net
    assert ct.route_dev(ip) == ct.bridge_of(c)
    c.kubectl("delete", "pod", "guard", "--wait=true", timeout=60)


def test_two_pods_on_the_same_port_answer_on_their_own_ips_and_behind_a_service_and_share_localhost(
        docker_cluster, container_image):
    image, _ = container_image
    c = docker_cluster
    serve = ("mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && "
             "exec httpd -f -p 0.0.0.0:8080 -h /www")
    # the sidecar reaches the web server over the pod's localhost (busybox nc: wget
    # segfaults under the engine's default seccomp profile)
    sidecar = ('mkdir -p /tmp; until printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc 127.0.0.1 8080 > /tmp/r 2>/dev/null '
               '&& grep -q hello /tmp/r; do sleep 0.2; done; grep hello /tmp/r; exec sleep 3600')
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                     {"name": "web", "image": image, "command": ["sh", "-c", serve],
                                      "ports": [{"containerPort": 8080}]},
                                     {"name": "sidecar", "image": image, "command": ["sh", "-c", sidecar]}]}}}}
    c.kubectl("apply", "-f", "-", input=to_yaml(dep))

    def running() -> list[dict] | None:
        items = c.kubectl_json("get", "pods", "-l", "app=web")["items"]
        ok = [p for p in items if p["status"].get("phase") == "Running" and p["status"].get("podIP")
              and all("running" in s["state"] for s in p["status"].get("containerStatuses") or [{"state": {}}])]
        return ok if len(ok) == 2 else None
    pods_ = poll(running, 120, what="two web pods running")
    answers = {}
    for p in pods_:
        ip, name = p["status"]["podIP"], p["metadata"]["name"]
        answers[name] = poll(lambda: _try_http(c, ip), 30, what=f"{name} answering on {ip}:8080")
        assert answers[name].strip() == f"hello from {name}"
        poll(lambda: f"hello from {name}" in c.kubectl("logs", name, "-c", "sidecar").stdout, 30,
             what="the sidecar reaching the web server over localhost")
    assert len({p["status"]["podIP"] for p in pods_}) == 2

    # a Service in front of them: the node's proxy, on a loopback ClusterIP, reaches both
    c.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    cluster_ip = c.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ipaddress.ip_address(cluster_ip).is_loopback
    seen: set[str] = set()

    def both_behind_the_service() -> bool:
        try:
            seen.add(http_get(cluster_ip, 80)[1].decode().strip())
        except OSError:
            pass
        return seen >= {f"hello from {n}" for n in answers}
    poll(both_behind_the_service, 60, what=f"both pods answering through the Service (seen {seen})")
    c.kubectl("delete", "service,deployment", "web", timeout=60)


def _try_http(c: Cluster, ip: str) -> str | None:
    try:
        return ct.pod_http(c, ip, 8080)
    except OSError:
        return None


# ---------------------------------------------------------------------------- logs, limits

def test_logs_follow_and_previous_come_from_the_engine(docker_cluster, container_image):
    image, _ = container_image
    c = docker_cluster
    # it runs long enough for `kubectl logs -f` to attach on a loaded machine (a 1 s run
    # could end and sit in back-off before kubectl follows, which then prints nothing)
    script = 'echo "out $(date +%s%N)"; echo err >&2; sleep 12; echo done; exit 3'
    c.kubectl("apply", "-f", "-", input=to_yaml(pod("talker", image, command=["sh", "-c", script],
                                                    restart="Always")))
    poll(lambda: phase(c, "talker") == "Running", 90, what="talker running")
    follow = LineReader(c.kubectl_popen("logs", "-f", "talker").stdout)
    follow.wait_for("out ", 30)
    follow.wait_for("err", 30)
    follow.wait_for("done", 30)  # written a second later, while kubectl follows

    def restarted() -> dict | None:
        st = (status(c, "talker").get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount", 0) >= 1 else None
    st = poll(restarted, 60, what="talker restarted")
    assert st["lastState"]["terminated"]["exitCode"] == 3
    prev = c.kubectl("logs", "talker", "--previous").stdout
    assert prev.startswith("out ") and "err\n" in prev and prev.endswith("done\n"), prev
    c.kubectl("delete", "pod", "talker", "--wait=true", timeout=60)


def test_a_memory_limit_is_enforced_and_an_oom_kill_is_reported(docker_cluster, container_image):
    image, _ = container_image
    c = docker_cluster
    # tail keeps the last "line" of /dev/zero in memory, which never ends: it grows until
    # killed; without a CPU limit it is killed within milliseconds, often before its
    # cgroup is watched
    c.kubectl("apply", "-f", "-", input=to_yaml(
        pod("hungry", image, command=["tail", "-n", "1", "/dev/zero"], restart="Always",
            resources={"limits": {"memory": "16Mi", "cpu": "250m"}}),
        pod("hungry-fast", image, command=["tail", "-n", "1", "/dev/zero"], restart="Always",
            resources={"limits": {"memory": "16Mi"}})))

    def oom(name: str) -> dict | None:
        st = (status(c, name).get("containerStatuses") or [{}])[0]
        t = (st.get("lastState") or {}).get("terminated") or {}
        return t if t.get("reason") == "OOMKilled" else None
    for name in ("hungry", "hungry-fast"):
        t = poll(lambda: oom(name), 120, what=f"{name} OOM-killed and restarted")
        assert t["exitCode"] == 137
    c.kubectl("delete", "pod", "hungry", "hungry-fast", "--wait=true", timeout=60)


# ---------------------------------------------------------------------------- RuntimeClass, adoption

def test_a_pod_picks_docker_by_runtime_class_and_a_restarted_agent_adopts_its_container(tmp_path, container_image):
    """On a process-runtime node, `runtimeClassName: docker` runs an image; after kill -9
    of sendo, the container keeps running and the new agent adopts it: same container,
    no restart, no duplicate."""
    image, _ = container_image
    cidr, svc_cidr, net_args = ct.container_cidrs()
    c = Cluster(tmp_path, net_args)
    try:
        c.start()
        assert c.kubectl("get", "runtimeclass", "docker", "-o", "jsonpath={.handler}").stdout == "docker"
        p = pod("boat", image, command=["sleep", "3600"], restart="Always")
        p["spec"]["runtimeClassName"] = "docker"
        c.kubectl("apply", "-f", "-", input=to_yaml(p))
        poll(lambda: phase(c, "boat") == "Running", 90, what="the docker pod running")
        before = status(c, "boat")["containerStatuses"][0]
        assert before["containerID"].startswith("docker://")
        engine_id = before["containerID"].removeprefix("docker://")

        c.crash()
        assert ct.run(["podman", "inspect", "--format", "{{.State.Running}}", engine_id]).stdout.strip() == "true"
        c.start()

        def adopted() -> dict | None:
            st = (status(c, "boat").get("containerStatuses") or [{}])[0]
            return st if "running" in (st.get("state") or {}) and st.get("ready") else None
        poll(adopted, 60, what="the pod running again after the restart")
        after = status(c, "boat")["containerStatuses"][0]
        assert after["containerID"] == before["containerID"]
        assert after["restartCount"] == 0
        assert ct.engine_containers(c, "io.sendo.pod-name=boat", "io.sendo.role=container") == [engine_id]
        assert len(ct.engine_containers(c, "io.sendo.pod-name=boat", "io.sendo.role=sandbox")) == 1

        # a clean stop of sendo up stops its pods (infra containers included); the next
        # start runs the pod again in a fresh sandbox, leaving nothing of the old one
        c.restart()
        poll(lambda: (s := status(c, "boat").get("containerStatuses") or [{}])[0].get("restartCount") == 1
             and "running" in (s[0].get("state") or {}), 90, what="the pod running again after a clean restart")
        assert len(ct.engine_containers(c, "io.sendo.pod-name=boat", "io.sendo.role=sandbox")) == 1
        assert len(ct.engine_containers(c, "io.sendo.pod-name=boat", "io.sendo.role=container")) == 1

        c.kubectl("delete", "pod", "boat", "--wait=true", timeout=60)
        poll(lambda: not ct.engine_containers(c), 30, what="the pod's containers removed from the engine")
    finally:
        c._cleanup()
        ct.cleanup_engine(c, cidr, svc_cidr)


def test_volumes_are_bind_mounts_and_a_configmap_change_reaches_the_running_container(docker_cluster,
                                                                                      container_image):
    image, _ = container_image
    c = docker_cluster
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"mode": "blue"}}
    p = pod("mounted", image, restart="Always",
            command=["sh", "-c", "while true; do echo \"mode=$(cat /config/mode) shared=$(cat /shared/x) "
                                 "perm=$(stat -L -c %a /secret/key)\"; sleep 0.3; done"],
            volumeMounts=[{"name": "config", "mountPath": "/config"}, {"name": "shared", "mountPath": "/shared"},
                          {"name": "secret", "mountPath": "/secret"}])
    p["spec"]["containers"].append({"name": "side", "image": image, "volumeMounts": [
        {"name": "shared", "mountPath": "/data"}], "command": ["sh", "-c", "echo from-side > /data/x; exec sleep 3600"]})
    p["spec"]["volumes"] = [{"name": "config", "configMap": {"name": "web-config"}},
                            {"name": "shared", "emptyDir": {}},
                            {"name": "secret", "secret": {"secretName": "web-secret", "defaultMode": 0o400}}]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret"}, "stringData": {"key": "k"}}
    c.kubectl("apply", "-f", "-", input=to_yaml(cm, secret, p))

    def log() -> str:
        return c.kubectl("logs", "mounted", "-c", "main", check=False).stdout
    poll(lambda: "mode=blue shared=from-side perm=400" in log(), 90, what="the volumes inside the container")
    cm["data"]["mode"] = "green"
    c.kubectl("apply", "-f", "-", input=to_yaml(cm))
    poll(lambda: "mode=green shared=from-side perm=400" in log(), 30, what="the ConfigMap change in the container")
    c.kubectl("delete", "pod", "mounted", "--wait=false")


# ---------------------------------------------------------------------------- securityContext

def test_security_context_is_applied_by_the_engine_and_refused_where_it_cannot_be(docker_cluster, container_image):
    """Users, groups, a read-only root, capabilities and privileged mode seen from inside
    the containers through `kubectl exec`; runAsNonRoot with a root image and a
    process-runtime pod asking for a read-only root wait in CreateContainerConfigError
    with the reason, read through the official client, and a Failed Event."""
    from kubernetes import client
    image, _ = container_image
    c = docker_cluster
    sleep = ["sleep", "3600"]
    secure = pod("secure", image, command=sleep, securityContext={
        "runAsUser": 1001, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False})
    secure["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]}
    nocaps = pod("nocaps", image, command=sleep, securityContext={"capabilities": {"drop": ["ALL"]}})
    priv = pod("priv", image, command=sleep, securityContext={"privileged": True})
    rootimage = pod("rootimage", image, command=sleep)
    rootimage["spec"]["securityContext"] = {"runAsNonRoot": True}
    hostro = pod("host-ro", image, command=sleep, securityContext={"readOnlyRootFilesystem": True})
    hostro["spec"]["runtimeClassName"] = "process"
    bad = pod("bad-sc", image, command=sleep, securityContext={"privileged": True, "allowPrivilegeEscalation": False})
    bad["spec"]["securityContext"] = {"runAsUser": -1}
    r = c.kubectl("apply", "-f", "-", input=to_yaml(bad), check=False)
    assert r.returncode != 0 and "spec.securityContext.runAsUser: Invalid value: -1" in r.stderr, r.stderr
    assert "cannot set `allowPrivilegeEscalation` to false and `privileged` to true" in r.stderr, r.stderr
    c.kubectl("apply", "-f", "-", input=to_yaml(secure, nocaps, priv, rootimage, hostro))
    for name in ("secure", "nocaps", "priv"):
        poll(lambda: phase(c, name) == "Running", 90, what=f"{name} running ({status(c, name)})")

    def sh(name: str, script: str) -> tuple[int, str]:
        r = c.kubectl("exec", name, "--", "sh", "-c", script, check=False)
        return r.returncode, r.stdout + r.stderr
    assert sh("secure", "id -u; id -g; id -G") == (0, "1001\n3000\n3000 4000\n")  # the container's runAsUser wins
    code, out = sh("secure", "touch /written")
    assert code != 0 and "Read-only file system" in out, out
    assert sh("secure", "grep NoNewPrivs /proc/self/status") == (0, "NoNewPrivs:\t1\n")
    # a root without capabilities cannot chown; the privileged container can, and can mount
    code, out = sh("nocaps", "touch /dev/shm/f && chown 1:1 /dev/shm/f")
    assert code != 0 and "Operation not permitted" in out, out
    assert sh("nocaps", "grep CapEff /proc/self/status") == (0, "CapEff:\t0000000000000000\n")
    code, out = sh("nocaps", "mkdir -p /dev/shm/m && mount -t tmpfs t /dev/shm/m")
    assert code != 0, out
    assert sh("priv", "touch /dev/shm/f && chown 1:1 /dev/shm/f && mkdir -p /dev/shm/m && "
                      "mount -t tmpfs t /dev/shm/m && echo ok") == (0, "ok\n")

    v1 = client.CoreV1Api(c.api())

    def waiting(name: str) -> client.V1ContainerStateWaiting | None:
        sts = v1.read_namespaced_pod_status(name, "default").status.container_statuses or []
        w = sts[0].state.waiting if sts else None
        return w if w is not None and w.reason == "CreateContainerConfigError" else None
    w = poll(lambda: waiting("rootimage"), 90, what="rootimage refused")
    assert w.message.startswith("container has runAsNonRoot and image will run as root (pod: \"rootimage_default("), w
    w = poll(lambda: waiting("host-ro"), 60, what="the process-runtime pod refused")
    assert "process runtime cannot honour securityContext readOnlyRootFilesystem" in w.message, w.message
    assert phase(c, "host-ro") == "Pending" and phase(c, "rootimage") == "Pending"
    for name in ("rootimage", "host-ro"):
        failed = [e["message"] for e in events(c, name) if e["reason"] == "Failed"]
        assert failed and failed[0].startswith("Error: "), (name, failed)
    c.kubectl("delete", "pod", "secure", "nocaps", "priv", "rootimage", "host-ro", "--wait=false")


# ---------------------------------------------------------------------------- sendo up --registry

def test_an_image_pushed_to_the_registry_of_sendo_up_runs_in_a_pod(docker_cluster, tmp_path):
    """`sendo up --registry` printed where its registry is and how to push; an image
    built here and pushed there with podman is pulled by a pod."""
    import re
    c = docker_cluster
    m = re.search(r"Image registry at (127\.0\.0\.1:\d+) ", c.log_path.read_text(errors="replace"))
    assert m, c.log_tail(60)
    address = m.group(1)
    assert f"podman push --tls-verify=false {address}/hello:1" in c.log_path.read_text(errors="replace")
    reg = ct.Registry(address, None, tmp_path)  # sendo's: only its address is used here
    image = ct.build_and_push(reg, tmp_path / "image")
    try:
        c.kubectl("run", "from-registry", f"--image={image}", "--restart=Never", "--command", "--",
                  "echo", "pulled from sendo's registry")
        poll(lambda: phase(c, "from-registry") == "Succeeded", 90,
             what=f"the pod of the pushed image ({status(c, 'from-registry')})")
        assert c.kubectl("logs", "from-registry").stdout == "pulled from sendo's registry\n"
        pulled = [e["message"] for e in events(c, "from-registry") if e["reason"] == "Pulled"]
        assert pulled and pulled[0].startswith(f'Successfully pulled image "{image}"'), pulled
    finally:
        ct.remove_images_of(reg)
