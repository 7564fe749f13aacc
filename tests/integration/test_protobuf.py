"""Kubernetes protobuf request bodies (sendo.api.protobuf) as the real kubectl sends them.

kubectl's typed generators POST protobuf to a small fake API server on loopback, and the
decoded body must equal the JSON the same kubectl prints for the same command with
`--dry-run=client -o json`. The wire decoder alone is tested in tests/unit/test_protobuf.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sendo.api.protobuf import CONTENT_TYPE, ProtobufError, decode, is_protobuf

KUBECTL = Path(sys.executable).with_name("kubectl")


# --------------------------------------------------------------------------- rich objects

# A pod spec using most fields, written the way Go prints it (zero values of omitempty
# fields left out; pointer fields such as runAsUser: 0 or optional: false kept).
RICH_POD_SPEC: dict[str, Any] = {
    "volumes": [
        {"name": "cfg", "configMap": {"name": "app-config", "items": [{"key": "a", "path": "a.txt", "mode": 256}],
                                      "defaultMode": 420, "optional": False}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256, "optional": True}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "logs", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {"name": "tmp", "hostPath": {"path": "/tmp", "type": ""}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu",
                                                 "divisor": "1m"}}]}},
        {"name": "proj", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
            {"configMap": {"name": "c2", "items": [{"key": "k", "path": "p"}]}},
            {"secret": {"name": "s2", "optional": False}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}],
            "defaultMode": 420}},
        {"name": "nfs", "nfs": {"server": "10.0.0.1", "path": "/export", "readOnly": True}},
        {"name": "csi", "csi": {"driver": "x.csi.example", "readOnly": True, "volumeAttributes": {"k": "v"},
                                "nodePublishSecretRef": {"name": "csi-secret"}}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "fast", "volumeMode": "Filesystem"}}}},
        {"name": "img", "image": {"reference": "registry.local/data:1", "pullPolicy": "IfNotPresent"}},
    ],
    "initContainers": [
        {"name": "init", "image": "busybox", "command": ["sh", "-c", "true"], "resources": {}},
        {"name": "sidecar", "image": "envoy", "resources": {}, "restartPolicy": "Always"},
    ],
    "containers": [
        {"name": "app", "image": "app:1", "command": ["/app"], "args": ["--port", "8080", ""],
         "workingDir": "/srv",
         "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                   {"hostPort": 19090, "containerPort": 9090, "protocol": "UDP", "hostIP": "127.0.0.1"}],
         "envFrom": [{"configMapRef": {"name": "cm"}},
                     {"prefix": "S_", "secretRef": {"name": "sec", "optional": True}}],
         "env": [
             {"name": "PLAIN", "value": "v"}, {"name": "EMPTY"},
             {"name": "UNICODE", "value": "日本語 ✓"},
             {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
             {"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": "app", "resource": "limits.cpu",
                                                                "divisor": "1m"}}},
             {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": False}}},
             {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}}],
         "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                       "requests": {"cpu": "250m", "ephemeral-storage": "1Gi", "memory": "64Mi"}},
         "volumeMounts": [
             {"name": "cfg", "readOnly": True, "mountPath": "/etc/app"},
             {"name": "data", "mountPath": "/data", "subPath": "app", "mountPropagation": "HostToContainer"},
             {"name": "info", "mountPath": "/info", "subPathExpr": "$(POD)"}],
         "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "host": "127.0.0.1", "scheme": "HTTP",
                                       "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                           "initialDelaySeconds": 5, "timeoutSeconds": 2, "periodSeconds": 10,
                           "successThreshold": 1, "failureThreshold": 3},
         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
         "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30,
                          "terminationGracePeriodSeconds": 0},
         "lifecycle": {"postStart": {"exec": {"command": ["echo", "started"]}},
                       "preStop": {"sleep": {"seconds": 5}}},
         "terminationMessagePath": "/dev/termination-log",
         "terminationMessagePolicy": "FallbackToLogsOnError",
         "imagePullPolicy": "Always",
         "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "privileged": False,
                             "runAsUser": 0, "runAsGroup": 1000, "runAsNonRoot": False,
                             "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                             "seccompProfile": {"type": "RuntimeDefault"}},
         "stdin": True, "stdinOnce": True, "tty": True},
        {"name": "grpc", "image": "g:1", "resources": {},
         "livenessProbe": {"grpc": {"port": 9000, "service": ""}},
         "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}},
         "lifecycle": {"preStop": {"httpGet": {"path": "/stop", "port": 80}}}},
    ],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 0,
    "activeDeadlineSeconds": 600,
    "dnsPolicy": "None",
    "nodeSelector": {"disk": "ssd", "kubernetes.io/os": "linux"},
    "serviceAccountName": "robot",
    "serviceAccount": "robot",
    "automountServiceAccountToken": False,
    "nodeName": "n1",
    "hostNetwork": True,
    "hostPID": True,
    "securityContext": {"seLinuxOptions": {"level": "s0:c123,c456"}, "runAsUser": 1000, "runAsNonRoot": True,
                        "supplementalGroups": [1, 2, 1099511627776], "fsGroup": 2000,
                        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
                        "fsGroupChangePolicy": "OnRootMismatch"},
    "imagePullSecrets": [{"name": "regcred"}],
    "hostname": "h",
    "subdomain": "sub",
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchFields": [
                    {"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}]}}]},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
             "namespaces": ["x"], "topologyKey": "zone"}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                                "topologyKey": "kubernetes.io/hostname"}}]}},
    "schedulerName": "default-scheduler",
    "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
    "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["a.local", "b.local"]}],
    "priorityClassName": "high",
    "priority": -5,
    "dnsConfig": {"nameservers": ["127.0.0.53"], "searches": ["svc.local"],
                  "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
    "readinessGates": [{"conditionType": "example.com/ready"}],
    "enableServiceLinks": False,
    "preemptionPolicy": "Never",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                   "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": 2}],
    "setHostnameAsFQDN": True,
    "os": {"name": "linux"},
    "hostUsers": False,
}


RICH_JOB_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"job": "nightly"}, "annotations": {"a": "b"}},
    "spec": {"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 3600, "backoffLimit": 0,
             "podFailurePolicy": {"rules": [
                 {"action": "FailJob", "onExitCodes": {"containerName": "app", "operator": "In",
                                                       "values": [1, 42]}},
                 {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
             "ttlSecondsAfterFinished": 0, "completionMode": "Indexed", "suspend": False,
             "template": {"metadata": {"labels": {"job": "nightly"}},
                          "spec": {**RICH_POD_SPEC, "restartPolicy": "Never"}}},
}


# --------------------------------------------------------------------------- fake API server

RESOURCES: dict[str, list[tuple[str, str, bool]]] = {  # group/version → (plural, kind, namespaced)
    "v1": [("pods", "Pod", True), ("pods/eviction", "Eviction", True), ("configmaps", "ConfigMap", True),
           ("secrets", "Secret", True), ("namespaces", "Namespace", False),
           ("serviceaccounts", "ServiceAccount", True), ("serviceaccounts/token", "TokenRequest", True),
           ("services", "Service", True), ("resourcequotas", "ResourceQuota", True),
           ("nodes", "Node", False)],
    "apps/v1": [("deployments", "Deployment", True), ("deployments/scale", "Scale", True),
                ("replicasets", "ReplicaSet", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("clusterroles", "ClusterRole", False),
                                     ("rolebindings", "RoleBinding", True),
                                     ("clusterrolebindings", "ClusterRoleBinding", False)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "autoscaling/v1": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
                                ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False)],
    "authentication.k8s.io/v1": [("selfsubjectreviews", "SelfSubjectReview", False)],
}


# What the fake server adds to a created object so kubectl can print its usual answer.
REPLY_STATUS: dict[str, dict[str, Any]] = {
    "TokenRequest": {"token": "tok-123", "expirationTimestamp": "2030-01-01T00:00:00Z"},
    "SelfSubjectAccessReview": {"allowed": True},
    "SelfSubjectReview": {"userInfo": {"username": "admin", "groups": ["system:masters"]}},
}


def _discovery(path: str) -> dict[str, Any] | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups: dict[str, list[str]] = {}
        for gv in RESOURCES:
            if "/" in gv:
                g, v = gv.split("/")
                groups.setdefault(g, []).append(v)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
            for g, vs in groups.items()]}
    gv = path.removeprefix("/api/").removeprefix("/apis/")
    if gv in RESOURCES:
        resources = [{"name": plural, "singularName": "" if "/" in plural else kind.lower(), "namespaced": ns,
                      "kind": kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                     for plural, kind, ns in RESOURCES[gv]]
        for r in resources:
            if r["kind"] == "Eviction":  # kubectl drain looks for policy/v1 here
                r.update(group="policy", version="v1")
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
    return None


class FakeAPI:
    """Answers discovery and canned GETs, records every body sent to it, echoes creations."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, bytes]] = []  # method, path, content type, body
        self.objects: dict[str, dict[str, Any]] = {}  # path → JSON served on GET
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?")[0]
                ctype = self.headers.get("content-type", "")
                with api.lock:
                    api.requests.append((self.command, path, ctype, body))
                code, out = api.answer(self.command, path, ctype, body)
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, ctype: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method in ("GET", "PATCH"):  # a patch (kubectl cordon) answers the object unchanged
            found = _discovery(path) or self.objects.get(path)
            if found is not None:
                return 200, found
        elif method in ("POST", "PUT"):
            try:
                obj = decode(body) if is_protobuf(ctype) else json.loads(body)
            except ProtobufError as e:
                return 415, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 415,
                             "reason": "UnsupportedMediaType", "message": str(e)}
            md = obj.setdefault("metadata", {})
            md.setdefault("name", md.get("generateName", "") + "abcde")
            md.setdefault("namespace", "default")
            if obj.get("kind") in REPLY_STATUS:
                obj["status"] = REPLY_STATUS[obj["kind"]]
            return 201, obj
        elif method == "DELETE":
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                     "reason": "NotFound", "message": f"{path} not found"}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def api():
    a = FakeAPI()
    a.objects["/apis/apps/v1/namespaces/default/deployments/web"] = {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": "nginx", "resources": {}}]}}}}
    a.objects["/api/v1/namespaces/default/pods/rich"] = {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "rich", "namespace": "default", "uid": "uid-rich", "labels": {"app": "web"},
                     "annotations": {"note": "x"}},
        "spec": RICH_POD_SPEC}
    a.objects["/apis/batch/v1/namespaces/default/cronjobs/nightly"] = {
        "kind": "CronJob", "apiVersion": "batch/v1",
        "metadata": {"name": "nightly", "namespace": "default", "uid": "uid-nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": RICH_JOB_TEMPLATE}}
    a.objects["/api/v1/nodes/n1"] = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "uid": "uid-n1"}}
    yield a
    a.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("kubectl-home")


def kubectl(api: FakeAPI, home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECONFIG": str(home / "none")}
    p = subprocess.run([str(KUBECTL), "--server", api.url, *args], env=env, capture_output=True,
                       text=True, timeout=60, cwd=home)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {p.stderr}")
    return p


def sent(api: FakeAPI, home: Path, *args: str) -> list[tuple[str, str, str, bytes]]:
    """Run kubectl and return the bodies it sent (method, path, content type, body)."""
    with api.lock:
        start = len(api.requests)
    kubectl(api, home, *args)
    with api.lock:
        return [r for r in api.requests[start:] if r[3]]


def one_protobuf(api: FakeAPI, home: Path, *args: str) -> tuple[str, dict[str, Any]]:
    bodies = sent(api, home, *args)
    assert len(bodies) == 1, [(m, p, c) for m, p, c, _ in bodies]
    method, path, ctype, body = bodies[0]
    assert ctype == CONTENT_TYPE and body.startswith(b"k8s\x00")
    return path, decode(body)


def dry_run_json(api: FakeAPI, home: Path, *args: str) -> dict[str, Any]:
    """The JSON kubectl prints for the same command (flags go before a `--`)."""
    cut = args.index("--") if "--" in args else len(args)
    flags = ("--dry-run=client", "-o", "json")
    return json.loads(kubectl(api, home, *args[:cut], *flags, *args[cut:]).stdout)


# --------------------------------------------------------------------------- kubectl generators

@pytest.fixture(scope="module")
def files(home):
    """Files the generators read: a text file, a binary file, a TLS key pair."""
    (home / "app.conf").write_text("port = 8080\nname = ünïcode\n")
    (home / "blob.bin").write_bytes(bytes(range(256)) + b"\x00\xff\xfe")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=web.example", "-keyout", str(home / "tls.key"),
                    "-out", str(home / "tls.crt")], check=True, capture_output=True, timeout=60)
    return home


GENERATORS: dict[str, list[str]] = {
    "configmap-literal": ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=empty=",
                          "--from-literal=multi=line1\nline2"],
    "configmap-file": ["create", "configmap", "cm2", "--from-file=app.conf", "--from-file=bin=blob.bin",
                       "--append-hash"],
    "secret-generic": ["create", "secret", "generic", "s1", "--from-literal=user=admin",
                       "--from-file=blob.bin", "--type=Opaque"],
    "secret-tls": ["create", "secret", "tls", "s2", "--cert=tls.crt", "--key=tls.key"],
    "secret-docker-registry": ["create", "secret", "docker-registry", "s3", "--docker-server=reg.local:5000",
                               "--docker-username=u", "--docker-password=p@ss", "--docker-email=u@x.io"],
    "namespace": ["create", "namespace", "team-a"],
    "serviceaccount": ["create", "serviceaccount", "robot", "-n", "team-a"],
    "deployment": ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=8080"],
    "deployment-zero-replicas": ["create", "deployment", "idle", "--image=a", "--image=b", "--replicas=0"],
    "deployment-command": ["create", "deployment", "cmd", "--image=busybox", "--", "sleep", "3600"],
    "service-clusterip": ["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:8443"],
    "service-headless": ["create", "service", "clusterip", "db", "--clusterip=None", "--tcp=5432"],
    "service-nodeport": ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "service-loadbalancer": ["create", "service", "loadbalancer", "lb", "--tcp=80:http"],
    "service-externalname": ["create", "service", "externalname", "ext", "--external-name=db.example.com"],
    "job": ["create", "job", "once", "--image=busybox", "--", "sh", "-c", "echo hi; exit 0"],
    "cronjob": ["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *",
                "--restart=OnFailure", "--", "date"],
    "quota": ["create", "quota", "q", "--hard=cpu=1500m,memory=1Gi,pods=10,requests.storage=2T",
              "--scopes=NotBestEffort"],
    "priorityclass": ["create", "priorityclass", "high", "--value=1000000", "--description=important",
                      "--preemption-policy=Never"],
    "priorityclass-negative-default": ["create", "priorityclass", "low", "--value=-5", "--global-default"],
    "role": ["create", "role", "reader", "--verb=get,list,watch", "--resource=pods,deployments.apps",
             "--resource-name=a", "--resource-name=b"],
    "clusterrole": ["create", "clusterrole", "metrics", "--verb=get", "--non-resource-url=/metrics",
                    "--non-resource-url=/logs/*"],
    "clusterrole-aggregate": ["create", "clusterrole", "agg", "--aggregation-rule=rbac.example/agg=true"],
    "rolebinding": ["create", "rolebinding", "rb", "--role=reader", "--user=alice", "--group=devs",
                    "--serviceaccount=team-a:robot"],
    "clusterrolebinding": ["create", "clusterrolebinding", "crb", "--clusterrole=metrics", "--user=bob"],
    "pdb-min": ["create", "pdb", "pdb1", "--selector=app=web", "--min-available=50%"],
    "pdb-max": ["create", "poddisruptionbudget", "pdb2", "--selector=app in (a,b)", "--max-unavailable=1"],
    "ingress": ["create", "ingress", "ing", "--class=nginx", "--rule=foo.com/bar*=svc1:8080,tls=secret1",
                "--rule=/path=svc2:http", "--default-backend=defsvc:80", "--annotation=a=b"],
    "autoscale": ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu=80%", "--memory=500Mi"],
}


def go_json(want: Any) -> Any:
    """kubectl's JSON as the decoder renders it: Go prints a nil list without omitempty
    as null (PolicyRule-less ClusterRole `rules`), the decoder leaves it out, as a
    hand-written body would."""
    if isinstance(want, dict):
        return {k: go_json(v) for k, v in want.items() if v is not None}
    if isinstance(want, list):
        return [go_json(v) for v in want]
    return want


def same_object(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal apart from status: kubectl sends an empty one, which the decoder returns as {}."""
    assert got.pop("status", {}) == {}
    want.pop("status", None)
    assert got == go_json(want)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_kubectl_generator_body_decodes_to_the_json_kubectl_prints(api, home, files, name):
    args = GENERATORS[name]
    _, got = one_protobuf(api, home, *args)
    same_object(got, dry_run_json(api, home, *args))


@pytest.mark.parametrize("args", [
    ["run", "pod1", "--image=busybox", "--env=A=b", "--env=EMPTY=", "--labels=l=v,tier=web", "--port=80",
     "--", "cmd", "arg1"],
    ["run", "pod2", "--image=busybox", "--restart=Never", "--image-pull-policy=IfNotPresent",
     "--annotations=note=hello", "--privileged", "--command", "--", "sh", "-c", "sleep 1"],
])
def test_kubectl_run_body_matches_its_dry_run(api, home, args):
    """kubectl 1.37 sends `run` as JSON; should it switch to protobuf, the same holds."""
    bodies = sent(api, home, *args)
    assert len(bodies) == 1
    _, _, ctype, body = bodies[0]
    got = decode(body) if is_protobuf(ctype) else json.loads(body)
    same_object(got, dry_run_json(api, home, *args))


# --------------------------------------------------------------------------- whole pod specs

def test_job_from_cronjob_carries_the_whole_pod_template(api, home):
    """`create job --from=cronjob/…` re-sends a stored template: every PodSpec field survives."""
    path, got = one_protobuf(api, home, "create", "job", "manual-run", "--from=cronjob/nightly")
    assert path == "/apis/batch/v1/namespaces/default/jobs"
    assert got["metadata"]["name"] == "manual-run"
    assert got["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                                   "uid": "uid-nightly", "controller": True}]
    assert got["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert got["spec"] == RICH_JOB_TEMPLATE["spec"]


def test_debug_copy_carries_the_whole_pod(api, home):
    path, got = one_protobuf(api, home, "debug", "rich", "--copy-to=rich-copy", "--image=busybox",
                             "--container=dbg", "--same-node", "--keep-labels", "--keep-annotations",
                             "--keep-liveness", "--keep-readiness", "--keep-startup")
    assert path == "/api/v1/namespaces/default/pods"
    assert got["metadata"]["labels"] == {"app": "web"}
    spec = got["spec"]
    dbg = spec["containers"].pop()
    assert dbg["name"] == "dbg" and dbg["image"] == "busybox"
    assert spec.pop("shareProcessNamespace") is True  # kubectl debug's --share-processes
    assert spec == RICH_POD_SPEC


def test_debug_node_pod(api, home):
    _, got = one_protobuf(api, home, "debug", "node/n1", "--image=busybox")
    assert got["metadata"]["name"].startswith("node-debugger-n1-")
    assert got["spec"]["volumes"] == [{"name": "host-root", "hostPath": {"path": "/"}}]
    assert got["spec"]["nodeName"] == "n1" and got["spec"]["hostPID"] is True
    assert got["spec"]["tolerations"] == [{"operator": "Exists"}]


# --------------------------------------------------------------------------- other typed clients

def test_create_token(api, home):
    path, got = one_protobuf(api, home, "create", "token", "robot", "--duration=10m", "--audience=vault",
                             "--audience=api", "--bound-object-kind=Pod", "--bound-object-name=p1",
                             "--bound-object-uid=uid-p1")
    assert path == "/api/v1/namespaces/default/serviceaccounts/robot/token"
    assert got == {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                   "spec": {"audiences": ["vault", "api"], "expirationSeconds": 600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1", "uid": "uid-p1"}},
                   "status": {}}


@pytest.mark.parametrize("args, spec", [
    (["get", "pods", "-n", "team-a"], {"resourceAttributes": {"namespace": "team-a", "verb": "get", "resource": "pods"}}),
    (["create", "deployments.apps", "--subresource=scale"],
     {"resourceAttributes": {"namespace": "default", "verb": "create", "group": "apps", "resource": "deployments",
                             "subresource": "scale"}}),
    (["get", "/logs/kube"], {"nonResourceAttributes": {"path": "/logs/kube", "verb": "get"}}),
])
def test_auth_can_i(api, home, args, spec):
    path, got = one_protobuf(api, home, "auth", "can-i", *args)
    assert path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert got == {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {},
                   "spec": spec, "status": {}}


def test_auth_can_i_list_and_whoami(api, home):
    _, got = one_protobuf(api, home, "auth", "can-i", "--list", "-n", "team-a")
    assert got["kind"] == "SelfSubjectRulesReview" and got["spec"] == {"namespace": "team-a"}
    _, got = one_protobuf(api, home, "auth", "whoami")
    assert got == {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                   "status": {}}


def test_drain_without_eviction_sends_protobuf_delete_options(api, home):
    api.objects["/api/v1/pods"] = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"kind": "Pod", "apiVersion": "v1",
         "metadata": {"name": "gone", "namespace": "default", "uid": "uid-gone", "ownerReferences": [
             {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "uid-rs", "controller": True}]},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}]}
    try:
        bodies = sent(api, home, "drain", "n1", "--disable-eviction", "--grace-period=0", "--timeout=30s")
    finally:
        del api.objects["/api/v1/pods"]
    deletes = [(p, c, b) for m, p, c, b in bodies if m == "DELETE"]
    assert len(deletes) == 1
    path, ctype, body = deletes[0]
    assert path == "/api/v1/namespaces/default/pods/gone" and ctype == CONTENT_TYPE
    # gracePeriodSeconds 0 (delete now) is a pointer in Go: the zero must survive
    assert decode(body) == {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
