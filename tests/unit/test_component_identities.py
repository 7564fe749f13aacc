"""The identities of sendo's own scheduler and control loops: every loop has one, every
identity has a default ClusterRole bound to exactly it, the roles allow what the loops do
and refuse what they never need, and the server's client certificates for them are
written once and renewed when they no longer hold."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from sendo import controlplane
from sendo.api.bootstrap_policy import cluster_role_bindings, cluster_roles
from sendo.api.component_policy import COMPONENT_USERS, CONTROLLER_RULES
from sendo.api.rbac import rules_of
from sendo.cli.main import app
from sendo.pki import ensure_client_cert, ensure_tls

ROLES = {r["metadata"]["name"]: r for r in cluster_roles()}
BINDINGS = {b["metadata"]["name"]: b for b in cluster_role_bindings()}


def can(user: str, verb: str, group: str, resource: str, sub: str | None = None, name: str | None = None) -> bool:
    """Whether the default cluster role bindings let ``user`` do it (users, or ServiceAccounts)."""
    for b in BINDINGS.values():
        for s in b["subjects"]:
            who = s["name"] if s["kind"] == "User" else f"system:serviceaccount:{s.get('namespace')}:{s['name']}"
            if s["kind"] != "Group" and who == user and any(
                    r.allows(verb, group, resource, sub, name) for r in rules_of(ROLES[b["roleRef"]["name"]])):
                return True
    return False


def user_of(loop: str) -> str:
    return controlplane.component_identities()[controlplane.identity_file(loop)][0]


def test_every_loop_has_an_identity_with_a_default_role_bound_to_it():
    ids = controlplane.component_identities()
    for loop in controlplane.CONTROLLERS:
        assert controlplane.identity_file(loop) in ids, loop
    assert {u for u, _ in ids.values()} == COMPONENT_USERS
    # one controller role per ServiceAccount a loop uses, and no role without a loop
    assert set(controlplane.SERVICE_ACCOUNTS.values()) == set(CONTROLLER_RULES)
    for user, groups in ids.values():
        assert len(user) <= 64 and all(len(g) <= 64 for g in groups)  # a certificate's name attributes
        assert can(user, "create", "", "events"), user  # every component records Events


SCHED = "system:kube-scheduler"
KCM = "system:kube-controller-manager"


@pytest.mark.parametrize("user, verb, group, resource, sub, name, allowed", [
    (SCHED, "create", "", "pods", "binding", "web-1", True),
    (SCHED, "watch", "", "nodes", None, None, True),
    (SCHED, "patch", "", "pods", "status", "web-1", True),
    (SCHED, "get", "", "secrets", None, "db", False),
    (SCHED, "list", "", "configmaps", None, None, False),
    (SCHED, "delete", "", "pods", None, "web-1", False),
    (SCHED, "create", "", "pods", None, None, False),
    (KCM, "watch", "", "secrets", None, None, True),  # the shared informers follow every kind
    (KCM, "get", "", "secrets", None, "db", False),
    (KCM, "update", "coordination.k8s.io", "leases", None, "sendo-controller-manager", True),
    (KCM, "update", "coordination.k8s.io", "leases", None, "someone-elses", False),
    (KCM, "create", "", "pods", None, None, False),
])
def test_scheduler_and_controller_manager_hold_only_what_they_use(user, verb, group, resource, sub, name, allowed):
    assert can(user, verb, group, resource, sub, name) is allowed


@pytest.mark.parametrize("loop, verb, group, resource, sub, allowed", [
    ("deployment", "create", "apps", "replicasets", None, True),
    ("deployment", "update", "apps", "deployments", "status", True),
    ("deployment", "create", "", "pods", None, False),  # the ReplicaSet's loop makes pods
    ("replicaset", "create", "", "pods", None, True),
    ("replicaset", "delete", "apps", "deployments", None, False),
    ("job", "create", "", "pods", None, True),
    ("job", "get", "", "secrets", None, False),
    ("cronjob", "create", "batch", "jobs", None, True),
    ("cronjob", "create", "", "pods", None, False),
    ("endpoints", "create", "discovery.k8s.io", "endpointslices", None, True),
    ("endpoints", "delete", "", "pods", None, False),
    ("garbagecollector", "delete", "apps", "replicasets", None, True),  # any kind: named broad on purpose
    ("garbagecollector", "create", "", "pods", None, False),
    ("namespace", "delete", "", "configmaps", None, True),
    ("nodelifecycle", "patch", "", "nodes", "status", True),
    ("nodelifecycle", "get", "", "secrets", None, False),
    ("serviceaccount", "create", "", "serviceaccounts", None, True),
    ("serviceaccount", "create", "", "pods", None, False),
    ("clusterrole-aggregation", "escalate", "rbac.authorization.k8s.io", "clusterroles", None, True),
    ("clusterrole-aggregation", "create", "rbac.authorization.k8s.io", "clusterrolebindings", None, False),
    ("csrsigning", "update", "certificates.k8s.io", "certificatesigningrequests", "status", True),
    ("addons", "create", "rbac.authorization.k8s.io", "clusterrolebindings", None, True),
    ("function", "create", "", "services", None, True),  # its functions' Services (an e2e 403 found it)
    ("function", "create", "", "secrets", None, False),
    ("function", "delete", "", "configmaps", None, True),  # packed sources it replaced (an e2e 403 found it)
    ("function", "create", "", "configmaps", None, False),
])
def test_each_controller_acts_under_its_own_role(loop, verb, group, resource, sub, allowed):
    assert can(user_of(loop), verb, group, resource, sub, "x") is allowed


def test_the_roles_are_named_and_bound_as_kubernetes_names_them():
    b = BINDINGS["system:controller:deployment-controller"]
    assert b["roleRef"]["name"] == "system:controller:deployment-controller"
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": "deployment-controller", "namespace": "kube-system"}]
    assert BINDINGS[SCHED]["subjects"][0]["name"] == SCHED and BINDINGS[SCHED]["subjects"][0]["kind"] == "User"
    assert user_of("scheduler") == SCHED
    assert user_of("deployment") == "system:serviceaccount:kube-system:deployment-controller"


def _subject(path: str) -> tuple[str, list[str]]:
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return (cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])


def test_component_certificates_are_written_once_and_renewed_when_they_no_longer_hold(tmp_path):
    ca_dir = str(tmp_path / "tls")
    ensure_tls(ca_dir)
    crt, key = str(tmp_path / "c" / "x.crt"), str(tmp_path / "c" / "x.key")
    os.makedirs(tmp_path / "c")
    assert ensure_client_cert(ca_dir, crt, key, "system:kube-scheduler") is True
    assert _subject(crt) == ("system:kube-scheduler", [])
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert ensure_client_cert(ca_dir, crt, key, "system:kube-scheduler") is False  # still good: kept
    assert ensure_client_cert(ca_dir, crt, key, "u", ["g1", "g2"]) is True  # another subject
    assert _subject(crt) == ("u", ["g1", "g2"])
    other = str(tmp_path / "other")
    ensure_tls(other)
    for name in ("ca.crt", "ca.key"):  # a new CA: what the old one signed is no longer trusted
        os.replace(os.path.join(other, name), os.path.join(ca_dir, name))
    assert ensure_client_cert(ca_dir, crt, key, "u", ["g1", "g2"]) is True
    os.unlink(key)
    assert ensure_client_cert(ca_dir, crt, key, "u", ["g1", "g2"]) is True


def test_credentials_name_what_is_missing_and_clients_present_their_certificate(tmp_path):
    creds = controlplane.Credentials(directory=str(tmp_path))
    missing = creds.missing(["scheduler", "deployment"])
    assert [os.path.basename(p) for p in missing] == [
        "deployment-controller.crt", "deployment-controller.key", "kube-controller-manager.crt",
        "kube-controller-manager.key", "kube-scheduler.crt", "kube-scheduler.key"]
    with pytest.raises(FileNotFoundError, match="kube-scheduler.crt"):
        controlplane.ControlPlane("https://127.0.0.1:1", creds, None, "scheduler")
    ca_dir = str(tmp_path / "tls")
    ensure_tls(ca_dir)
    for name, (user, groups) in controlplane.component_identities().items():
        ensure_client_cert(ca_dir, str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"), user, groups)
    cp = controlplane.ControlPlane("https://127.0.0.1:1", creds, None, "scheduler,deployment,job")
    clients = {n: loop.client for n, loop in cp.loops.items()}
    assert len({id(c) for c in clients.values()} | {id(cp.client)}) == 4  # one identity each
    assert "Authorization" not in clients["job"].headers
    shared = controlplane.ControlPlane("https://127.0.0.1:1", "tok", None, "scheduler,deployment")
    assert {id(loop.client) for loop in shared.loops.values()} == {id(shared.client)}
    assert shared.client.headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize("extra", [[], ["--token-file", "t", "--credentials-dir", "d"]])
def test_controllers_needs_exactly_one_way_to_authenticate(monkeypatch, extra):
    started = []
    monkeypatch.setattr(controlplane, "run_controllers", lambda *a, **k: started.append(a))
    r = CliRunner().invoke(app, ["controllers", "--server", "https://127.0.0.1:1", *extra])
    assert r.exit_code == 2 and started == []
    assert "--token-file" in r.output and "--credentials-dir" in r.output


def test_the_server_child_gets_the_credentials_directory(tmp_path):
    child = controlplane.ControlPlaneProcess("https://127.0.0.1:1", "", "ca", str(tmp_path / "log"),
                                             credentials_dir=str(tmp_path / "components"))
    assert "--token-file" not in child.args
    assert child.args[child.args.index("--credentials-dir") + 1] == str(tmp_path / "components")


def test_user_add_binds_a_cluster_role_in_one_namespace_only():
    from sendo.cli.users import binding
    b = binding("bob", "team-b", "edit")
    assert b["kind"] == "RoleBinding" and b["metadata"] == {
        "name": "bob-edit", "namespace": "team-b", "labels": {"app.kubernetes.io/managed-by": "sendo-user-add"}}
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    assert b["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]


def test_the_expiry_check_renews_a_certificate_near_its_end(tmp_path, monkeypatch):
    from sendo import pki
    ca_dir = str(tmp_path / "tls")
    ensure_tls(ca_dir)
    crt, key = str(tmp_path / "x.crt"), str(tmp_path / "x.key")
    assert ensure_client_cert(ca_dir, crt, key, "u")
    monkeypatch.setattr(pki, "RENEW_BEFORE", dt.timedelta(days=365 * 20))  # every certificate is near its end
    assert ensure_client_cert(ca_dir, crt, key, "u")


def test_the_components_draw_on_a_budget_of_their_own_not_the_users():
    from sendo.api.inflight import InflightLimit, level_of
    from sendo.api.options import User
    limit = InflightLimit(readonly=2, mutating=2)
    user = User("alice", ["system:authenticated"])
    limit.acquire(user, "POST")  # alice holds her fair share (half) of the workload budget
    for name in ("system:kube-scheduler", "system:serviceaccount:kube-system:job-controller"):
        assert level_of(User(name, ["system:authenticated"])) == "workload-high"
    tickets = [limit.acquire(User("system:serviceaccount:kube-system:job-controller", []), "POST") for _ in range(2)]
    assert all(t is not None and t.level == "workload-high" for t in tickets)  # not held back by alice
    assert level_of(User("system:serviceaccount:kube-system:coredns", [])) == "workload"  # only sendo's own
