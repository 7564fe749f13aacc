"""RBAC and identities against a real API server: client certificates, the 401/403 wording,
escalation prevention, the reviews, the node authorizer, and the in-memory rule sets kept
true by the store watch (a write that did not go through this server's HTTP)."""
from __future__ import annotations

import os
import ssl

import aiohttp
import pytest

from sendo.client import ApiError, Client, kind
from sendo.pki import ensure_tls, issue_client_cert
from sendo.wire import NODE_HEADER
from tests.waiting import wait_until

RBAC = "rbac.authorization.k8s.io"
ROLES, BINDINGS = kind("roles", RBAC), kind("rolebindings", RBAC)
CLUSTER_ROLES, CLUSTER_BINDINGS = kind("clusterroles", RBAC), kind("clusterrolebindings", RBAC)
SECRETS, PODS, NODES = kind("secrets"), kind("pods"), kind("nodes")
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


class CertClient(Client):
    """The REST client with a client certificate instead of a token."""

    def __init__(self, server, cert: bytes, key: bytes, tmp_path):
        super().__init__(server.cfg.url, "", server.ca_pem)
        cert_file, key_file = tmp_path / "c.crt", tmp_path / "c.key"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        self.ssl.load_cert_chain(str(cert_file), str(key_file))

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"Accept": "application/json"},
                                                  connector=aiohttp.TCPConnector(ssl=self.ssl))
        return self._session


def tls_dir(server) -> str:
    return os.path.join(server.cfg.server_dir, "tls")


def binding(binding_name, role, role_kind="ClusterRole", ns="default", **subject):
    obj = {"metadata": {"name": binding_name, "namespace": ns},
           "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}, "subjects": [subject]}
    return obj


async def review(client, url, **attrs) -> bool:
    body = {"spec": {"resourceAttributes" if "resource" in attrs else "nonResourceAttributes": attrs}}
    return (await client.request("POST", url, body=body))["status"]["allowed"]


async def test_client_certificates_identify_users_and_rbac_decides(server, client, tmp_path):
    cert, key = issue_client_cert(tls_dir(server), "carol", ["qa"])
    carol = CertClient(server, cert, key, tmp_path)
    try:
        me = await carol.request("POST", WHOAMI, body={})
        assert me["status"]["userInfo"] == {"username": "carol", "groups": ["qa", "system:authenticated"]}
        with pytest.raises(ApiError) as e:
            await carol.list(SECRETS, "default")
        assert e.value.status == 403 and e.value.body["message"] == (
            'secrets is forbidden: User "carol" cannot list resource "secrets" in API group "" in the namespace '
            '"default"')
        assert e.value.body["details"] == {"kind": "secrets"}
        await client.create(BINDINGS, binding("qa-view", "view", kind="Group", name="qa", apiGroup=RBAC))
        assert (await carol.list(PODS, "default"))["items"] == []  # allowed on the very next request
        with pytest.raises(ApiError) as e:
            await carol.list(SECRETS, "default")  # view does not read Secrets
        assert e.value.status == 403
        with pytest.raises(ApiError) as e:
            await carol.list(PODS, "kube-system")  # a RoleBinding opens its namespace only
        assert e.value.status == 403
        assert await review(carol, SSAR, verb="get", resource="pods", subresource="log", namespace="default")
        assert not await review(carol, SSAR, verb="create", resource="pods", namespace="default")
        assert await review(carol, SSAR, verb="get", path="/version")  # public info
        rules = await carol.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                    body={"spec": {"namespace": "default"}})
        assert any("pods" in r["resources"] for r in rules["status"]["resourceRules"])
        with pytest.raises(ApiError) as e:  # asking about others is for those allowed to
            await carol.request("POST", SAR, body={"spec": {"user": "x", "resourceAttributes": {"verb": "get"}}})
        assert e.value.status == 403
    finally:
        await carol.close()


async def test_a_certificate_from_another_ca_is_refused_and_anonymous_gets_401(server, tmp_path):
    other = ensure_tls(str(tmp_path / "other-ca"))
    cert, key = issue_client_cert(os.path.dirname(other.ca_cert), "mallory", ["system:masters"])
    mallory = CertClient(server, cert, key, tmp_path)
    try:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            await mallory.request("GET", "/api/v1/namespaces")
    finally:
        await mallory.close()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        for path, code in (("/version", 200), ("/healthz", 200), ("/livez", 200), ("/api", 401),
                           ("/api/v1/namespaces/default/pods", 401), ("/openapi/v2", 401)):
            async with s.get(server.cfg.url + path) as r:
                assert r.status == code, path
        async with s.get(server.cfg.url + "/api/v1/pods", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401 and (await r.json())["reason"] == "Unauthorized"


async def sa_client(server, client, name: str) -> Client:
    await client.create(kind("serviceaccounts"), {"metadata": {"name": name, "namespace": "default"}})
    tr = await client.request("POST", f"/api/v1/namespaces/default/serviceaccounts/{name}/token", body={})
    return Client(server.cfg.url, tr["status"]["token"], server.ca_pem)


async def test_escalation_is_refused_unless_held_or_granted_bind_or_escalate(server, client):
    dave = await sa_client(server, client, "dave")  # admin of the namespace default
    await client.create(BINDINGS, binding("dave-admin", "admin", kind="ServiceAccount", name="dave"))
    try:
        await dave.create(BINDINGS, binding("x-edit", "edit", kind="User", name="x", apiGroup=RBAC))  # held
        with pytest.raises(ApiError) as e:
            await dave.create(BINDINGS, binding("x-root", "cluster-admin", kind="User", name="x", apiGroup=RBAC))
        assert e.value.status == 403 and "attempting to grant RBAC permissions not currently held" in \
            e.value.body["message"]
        with pytest.raises(ApiError) as e:
            await dave.create(ROLES, {"metadata": {"name": "nodes", "namespace": "default"},
                                      "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})
        assert e.value.status == 403 and '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}' in \
            e.value.body["message"]
        role = await dave.create(ROLES, {"metadata": {"name": "pods", "namespace": "default"},
                                         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        with pytest.raises(ApiError) as e:  # a patch that widens a role is checked like a create
            await dave.patch(ROLES, "default", "pods", {"rules": [{"apiGroups": ["*"], "resources": ["*"],
                                                                  "verbs": ["*"]}]})
        assert e.value.status == 403
        assert role["rules"][0]["verbs"] == ["get"]
        # the bind verb on one ClusterRole lets dave bind it without holding it
        await client.create(CLUSTER_ROLES, {"metadata": {"name": "binder"}, "rules": [
            {"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"]}]})
        await client.create(BINDINGS, binding("dave-binder", "binder", kind="ServiceAccount", name="dave"))
        await dave.create(BINDINGS, binding("x-root", "cluster-admin", kind="User", name="x", apiGroup=RBAC))
    finally:
        await dave.close()


async def test_token_reviews_say_who_a_token_is_and_never_echo_it(server, client):
    robot = await sa_client(server, client, "robot")
    url = "/apis/authentication.k8s.io/v1/tokenreviews"
    try:
        answer = await client.request("POST", url, body={"spec": {"token": robot.token}})
        assert answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == "system:serviceaccount:default:robot"
        assert "token" not in answer["spec"]
        bad = await client.request("POST", url, body={"spec": {"token": "nope"}})
        assert "authenticated" not in bad["status"] and bad["status"]["error"]
        with pytest.raises(ApiError) as e:  # asking is a permission of its own
            await robot.request("POST", url, body={"spec": {"token": robot.token}})
        assert e.value.status == 403
        with pytest.raises(ApiError) as e:
            await client.request("POST", url, body={"spec": {}})
        assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "spec.token"
    finally:
        await robot.close()


async def test_invalid_rbac_objects_get_422_naming_the_field(client):
    with pytest.raises(ApiError) as e:
        await client.create(ROLES, {"metadata": {"name": "r", "namespace": "default"},
                                    "rules": [{"apiGroups": [""], "resources": ["pods"]}]})
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "rules[0].verbs"
    await client.create(BINDINGS, binding("b", "view", kind="User", name="u", apiGroup=RBAC))
    with pytest.raises(ApiError) as e:
        await client.patch(BINDINGS, "default", "b", {"roleRef": {"name": "edit"}})
    assert e.value.status == 422 and "cannot change roleRef" in e.value.body["message"]
    role = await client.create(CLUSTER_ROLES, {"metadata": {"name": "system:custom"}, "rules": []})
    assert role["metadata"]["name"] == "system:custom"  # RBAC names are path segments


async def test_rules_follow_writes_that_bypass_this_servers_http(server, client):
    """Another API server sharing the store writes a binding: the watch brings it in."""
    sa = await sa_client(server, client, "watcher")
    try:
        with pytest.raises(ApiError):
            await sa.list(PODS, "default")
        r = server.registry.get(RBAC, "v1", "rolebindings")
        await server.api.api.create(r, "default", binding("sa-view", "view", kind="ServiceAccount", name="watcher"))

        async def allowed():
            try:
                return (await sa.list(PODS, "default"))["items"] == []
            except ApiError:
                return False
        await wait_until(allowed, timeout=30, what="the watched binding to take effect")
    finally:
        await sa.close()


async def test_a_node_reads_only_what_its_pods_use_and_writes_only_itself(server, client):
    await client.create(SECRETS, {"metadata": {"name": "used", "namespace": "default"}, "data": {"k": "dg=="}})
    await client.create(SECRETS, {"metadata": {"name": "unused", "namespace": "default"}, "data": {"k": "dg=="}})
    await client.create(PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "x", "envFrom": [{"secretRef": {"name": "used"}}]}]}})
    n1 = Client(server.cfg.url, server.node_token, server.ca_pem, headers={NODE_HEADER: "n1"})
    n2 = Client(server.cfg.url, server.node_token, server.ca_pem, headers={NODE_HEADER: "n2"})
    anonymous_node = Client(server.cfg.url, server.node_token, server.ca_pem)
    try:
        assert (await n1.get(SECRETS, "default", "used"))["data"] == {"k": "dg=="}
        me = await n1.request("POST", WHOAMI, body={})
        assert me["status"]["userInfo"]["username"] == "system:node:n1"
        rules = await n1.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                 body={"spec": {"namespace": "default"}})
        assert rules["status"]["incomplete"] is True  # the node authorizer's part is not a list of rules
        for c, name in ((n1, "unused"), (n2, "used")):
            with pytest.raises(ApiError) as e:
                await c.get(SECRETS, "default", name)
            assert e.value.status == 403
        with pytest.raises(ApiError) as e:
            await n1.list(SECRETS, "default")
        assert e.value.status == 403
        # the kubelet's per-object watch: a list selecting exactly the one it uses
        one = await n1.list(SECRETS, "default", fieldSelector="metadata.name=used")
        assert [s["metadata"]["name"] for s in one["items"]] == ["used"]
        for c, selector in ((n1, "metadata.name=unused"), (n2, "metadata.name=used"),
                            (n1, "metadata.name=used,type=Opaque")):
            with pytest.raises(ApiError) as e:
                await c.list(SECRETS, "default", fieldSelector=selector)
            assert e.value.status == 403, selector
        # PersistentVolumes: read by every node; a local-path one changed only by its node
        pvs = kind("persistentvolumes")
        await client.create(pvs, {"metadata": {"name": "pv-n1", "annotations": {"sendo.io/local-path-node": "n1"}},
                                  "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                           "hostPath": {"path": "/tmp/pv-n1"}}})
        assert [p["metadata"]["name"] for p in (await n2.list(pvs))["items"]] == ["pv-n1"]
        await n1.patch(pvs, None, "pv-n1", {"metadata": {"labels": {"seen": "n1"}}})
        with pytest.raises(ApiError) as e:
            await n2.patch(pvs, None, "pv-n1", {"metadata": {"labels": {"seen": "n2"}}})
        assert e.value.status == 403
        await n1.create(NODES, {"metadata": {"name": "n1"}})
        with pytest.raises(ApiError) as e:
            await n1.create(NODES, {"metadata": {"name": "n2"}})
        assert e.value.status == 403 and 'node "n1" is not allowed to modify node "n2"' in e.value.body["message"]
        await n1.patch(PODS, "default", "p", {"status": {"phase": "Running"}}, sub="status")
        with pytest.raises(ApiError) as e:
            await n2.patch(PODS, "default", "p", {"status": {"phase": "Failed"}}, sub="status")
        assert e.value.status == 403
        with pytest.raises(ApiError) as e:
            await anonymous_node.list(PODS, "default")  # the node token names a node or no one
        assert e.value.status == 401
        # the node's token requests: only for the ServiceAccount its pod runs as
        await client.create(kind("serviceaccounts"), {"metadata": {"name": "default", "namespace": "default"}})
        await n1.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", body={})
        with pytest.raises(ApiError) as e:
            await n2.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", body={})
        assert e.value.status == 403
    finally:
        for c in (n1, n2, anonymous_node):
            await c.close()
