"""ServiceAccount tokens: signing, TokenRequest, authentication, the default account,
and the agent side that keeps a token on disk for each pod."""
import base64
import os
import stat
import time

import orjson
import pytest

from sendo.agent.env import ConfigError
from sendo.agent.identity import TOKEN_DIR, PodIdentity
from sendo.api.tokens import TokenError, TokenSigner
from sendo.wire import NODE_HEADER
from sendo.client import ApiError, Client, kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.serviceaccounts import ServiceAccountsController
from conftest import wait_until

SA = kind("serviceaccounts")
PODS = kind("pods")
NS = kind("namespaces")


def claims_of(token: str) -> dict:
    body = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def sa(name, ns="default", **extra):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}, **extra}


def pod(name, ns="default", **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}], **spec}}


def token_path(ns, name):
    return f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"


async def request_token(client, name="robot", ns="default", **spec):
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    return await client.request("POST", token_path(ns, name), body=body)


async def works(server, token) -> bool:
    """Whether the API accepts the token: a SelfSubjectReview (which every authenticated
    user may ask, RBAC's system:basic-user) names the token's ServiceAccount."""
    c = Client(server.cfg.url, token, server.ca_pem)
    try:
        review = await c.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                 body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert review["status"]["userInfo"]["username"].startswith("system:serviceaccount:")
        return True
    except ApiError as e:
        assert e.status == 401 and e.body["reason"] == "Unauthorized", e
        return False
    finally:
        await c.close()


# ------------------------------------------------------------------ signing

def test_sign_and_verify_with_kubernetes_claims():
    signer = TokenSigner.generate()
    now = time.time()
    token, exp = signer.issue("team", "robot", "uid-1", None, 3600, {"pod": {"name": "p", "uid": "uid-p"}}, now)
    head = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert head == {"alg": "ES256", "kid": signer.key_id}
    c = signer.verify(token)
    assert c == claims_of(token)
    assert c["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert c["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert c["sub"] == "system:serviceaccount:team:robot"
    assert c["iat"] == c["nbf"] == int(now) and c["exp"] == exp == int(now) + 3600 and c["jti"]
    assert c["kubernetes.io"] == {"namespace": "team", "serviceaccount": {"name": "robot", "uid": "uid-1"},
                                  "pod": {"name": "p", "uid": "uid-p"}}
    assert signer.jwks()["keys"][0]["kid"] == signer.key_id


def test_expired_not_yet_valid_and_wrong_audience_are_refused():
    signer = TokenSigner.generate()
    now = time.time()
    token, exp = signer.issue("default", "robot", "u", None, 600, None, now)
    signer.verify(token, now=exp - 1)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=exp)
    with pytest.raises(TokenError, match="not valid yet"):
        signer.verify(token, now=now - 3600)
    vault, _ = signer.issue("default", "robot", "u", ["vault"], 600, None, now)
    assert signer.verify(vault, ["vault"])["aud"] == ["vault"]
    with pytest.raises(TokenError, match="audiences"):
        signer.verify(vault)


def test_other_keys_tampering_and_unsigned_tokens_are_refused():
    mine, theirs = TokenSigner.generate(), TokenSigner.generate()
    token, _ = theirs.issue("default", "robot", "u")
    with pytest.raises(TokenError, match="another key"):
        mine.verify(token)
    head, body, sig = token.split(".")
    no_kid = base64.urlsafe_b64encode(b'{"alg":"ES256"}').rstrip(b"=").decode()
    with pytest.raises(TokenError, match="invalid signature"):
        mine.verify(f"{no_kid}.{body}.{sig}")
    good, _ = mine.issue("default", "robot", "u")
    h, b, s = good.split(".")
    forged = base64.urlsafe_b64encode(orjson.dumps({**claims_of(good), "sub": "system:serviceaccount:x:y"}))
    with pytest.raises(TokenError, match="invalid signature"):
        mine.verify(f"{h}.{forged.rstrip(b'=').decode()}.{s}")
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(TokenError, match="algorithm"):
        mine.verify(f"{none}.{b}.")
    with pytest.raises(TokenError):
        mine.verify("eyJ.not.a-token")


def test_signing_key_is_kept_in_a_private_file(tmp_path):
    path = str(tmp_path / "server" / "sa.key")
    first = TokenSigner.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = TokenSigner.load_or_create(path)
    assert again.key_id == first.key_id
    token, _ = first.issue("default", "robot", "u")
    assert again.verify(token)["sub"] == "system:serviceaccount:default:robot"


# ------------------------------------------------------------------ through the API

async def test_token_request_gives_a_token_the_api_accepts(server, client):
    created = await client.create(SA, sa("robot"))
    tr = await request_token(client)
    assert tr["kind"] == "TokenRequest" and tr["apiVersion"] == "authentication.k8s.io/v1"
    assert tr["spec"]["expirationSeconds"] == 3600
    assert tr["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    token = tr["status"]["token"]
    c = claims_of(token)
    assert c["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": created["metadata"]["uid"]}
    assert tr["status"]["expirationTimestamp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["exp"]))
    assert abs(c["exp"] - time.time() - 3600) < 10
    assert await works(server, token)
    user = await server.api.sa_tokens.authenticate(token)
    assert user.name == "system:serviceaccount:default:robot" and user.uid == created["metadata"]["uid"]
    assert user.groups == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]

    longer = await request_token(client, expirationSeconds=7200, audiences=["vault", "api"])
    assert longer["spec"]["expirationSeconds"] == 7200
    assert claims_of(longer["status"]["token"])["aud"] == ["vault", "api"]
    assert not await works(server, longer["status"]["token"])  # not meant for the API server


async def test_deleting_or_recreating_the_serviceaccount_revokes_its_tokens(server, client):
    await client.create(SA, sa("robot"))
    token = (await request_token(client))["status"]["token"]
    assert await works(server, token)
    await client.delete(SA, "default", "robot")
    assert not await works(server, token)
    await client.create(SA, sa("robot"))  # same name, new uid: still not the same account
    assert not await works(server, token)
    with pytest.raises(TokenError, match="recreated"):
        await server.api.sa_tokens.authenticate(token)


async def test_a_token_bound_to_a_pod_dies_with_the_pod(server, client):
    await client.create(SA, sa("robot"))
    p = await client.create(PODS, pod("worker", serviceAccountName="robot"))
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "worker"}
    tr = await request_token(client, boundObjectRef=ref)
    assert tr["spec"]["boundObjectRef"]["uid"] == p["metadata"]["uid"]
    token = tr["status"]["token"]
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "worker", "uid": p["metadata"]["uid"]}
    assert await works(server, token)
    user = await server.api.sa_tokens.authenticate(token)
    assert user.extra["authentication.kubernetes.io/pod-name"] == ["worker"]
    await client.delete(PODS, "default", "worker")  # not bound to a node: gone at once
    assert not await works(server, token)
    await client.create(PODS, pod("worker", serviceAccountName="robot"))  # a new pod, a new uid
    assert not await works(server, token)


async def test_token_request_errors(server, client):
    await client.create(SA, sa("robot"))
    with pytest.raises(ApiError) as e:
        await request_token(client, expirationSeconds=10)
    assert e.value.status == 422 and e.value.body["reason"] == "Invalid"
    assert "spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes" \
        in e.value.body["message"]
    with pytest.raises(ApiError) as e:
        await request_token(client, name="nobody")
    assert e.value.status == 404 and 'serviceaccounts "nobody" not found' in e.value.body["message"]
    with pytest.raises(ApiError) as e:
        await request_token(client, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "ghost"})
    assert e.value.status == 404 and 'pods "ghost" not found' in e.value.body["message"]
    await client.create(PODS, pod("other"))  # runs as default, not robot
    with pytest.raises(ApiError) as e:
        await request_token(client, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "other"})
    assert e.value.status == 400 and "different serviceaccount" in e.value.body["message"]
    await client.create(PODS, pod("mine", serviceAccountName="robot"))
    with pytest.raises(ApiError) as e:
        await request_token(client, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "mine",
                                                    "uid": "not-its-uid"})
    assert e.value.status == 409 and "does not match the UID in record" in e.value.body["message"]
    with pytest.raises(ApiError) as e:
        await request_token(client, boundObjectRef={"kind": "Deployment", "apiVersion": "v1", "name": "x"})
    assert e.value.status == 422 and "spec.boundObjectRef.kind" in e.value.body["message"]
    with pytest.raises(ApiError) as e:
        await client.request("GET", token_path("default", "robot"))
    assert e.value.status == 405


async def test_token_subresource_in_discovery_and_pods_default_to_the_default_account(client):
    doc = await client.request("GET", "/api/v1")
    entry = next(r for r in doc["resources"] if r["name"] == "serviceaccounts/token")
    assert entry["kind"] == "TokenRequest" and entry["group"] == "authentication.k8s.io"
    assert entry["version"] == "v1" and entry["verbs"] == ["create"]
    p = await client.create(PODS, pod("plain"))
    assert p["spec"]["serviceAccountName"] == "default" and p["spec"]["serviceAccount"] == "default"
    p = await client.create(PODS, pod("named", serviceAccountName="robot"))
    assert p["spec"]["serviceAccountName"] == "robot"
    p = await client.create(PODS, pod("old-style", serviceAccount="legacy"))
    assert p["spec"]["serviceAccountName"] == "legacy"
    # an update keeps it (a pod's spec is immutable)
    p["metadata"]["labels"] = {"a": "b"}
    assert (await client.update(PODS, p))["spec"]["serviceAccountName"] == "legacy"


async def test_every_active_namespace_gets_a_default_serviceaccount(client):
    informers = InformerFactory(client)
    ctrl = ServiceAccountsController(client, informers)
    await informers.start()
    await ctrl.start()
    try:
        async def has_default(ns):
            return await client.get_or_none(SA, ns, "default") is not None
        await wait_until(lambda: has_default("default"), 10, what="default/default")
        await wait_until(lambda: has_default("kube-system"), 10, what="kube-system/default")
        await client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
        await wait_until(lambda: has_default("team"), 10, what="team/default")
        first = await client.get(SA, "team", "default")
        await client.delete(SA, "team", "default")

        async def recreated():
            again = await client.get_or_none(SA, "team", "default")
            return again is not None and again["metadata"]["uid"] != first["metadata"]["uid"]
        await wait_until(recreated, 10, what="team/default to be recreated")
    finally:
        await ctrl.stop()
        await informers.stop()


# ------------------------------------------------------------------ the agent's side

async def test_pod_identity_writes_refreshes_and_skips_tokens(server, client, tmp_path):
    await client.create(SA, sa("robot"))
    await client.create(SA, sa("quiet", automountServiceAccountToken=False))
    pods = {name: await client.create(PODS, pod(name, nodeName="n1", **spec)) for name, spec in (
        ("app", {"serviceAccountName": "robot"}), ("no-mount", {"automountServiceAccountToken": False}),
        ("quiet-app", {"serviceAccountName": "quiet"}),
        ("loud-app", {"serviceAccountName": "quiet", "automountServiceAccountToken": True}),
        ("orphan", {"serviceAccountName": "missing"}))}
    ready: list[str] = []
    # the agent's own credentials: the node token for node n1, which runs these pods
    node = Client(server.cfg.url, server.node_token, server.ca_pem, headers={NODE_HEADER: "n1"})
    ident = PodIdentity(node, server.cfg.url, server.ca_pem, str(tmp_path / "pods"),
                        alive=lambda uid: True, on_ready=ready.append)
    try:
        app = pods["app"]
        with pytest.raises(ConfigError, match="waiting for the service account token"):
            ident.env(app)  # not fetched yet
        await ident.ready(app)
        env = ident.env(app)
        d = env["SENDO_SERVICEACCOUNT_DIR"]
        assert d == str(tmp_path / "pods" / app["metadata"]["uid"] / TOKEN_DIR)
        assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
        assert env["KUBERNETES_SERVICE_PORT"] == str(server.cfg.port)
        assert ready == [app["metadata"]["uid"]]
        with open(os.path.join(d, "namespace")) as f:
            assert f.read() == "default"
        with open(os.path.join(d, "ca.crt"), "rb") as f:
            assert f.read() == server.ca_pem
        assert stat.S_IMODE(os.stat(os.path.join(d, "token")).st_mode) == 0o600
        with open(os.path.join(d, "token")) as f:
            token = f.read()
        assert claims_of(token)["kubernetes.io"]["pod"]["uid"] == app["metadata"]["uid"]
        assert claims_of(token)["sub"] == "system:serviceaccount:default:robot"
        assert await works(server, token)

        # renewed when due (80% of its lifetime; here: now)
        ident.entries[app["metadata"]["uid"]].refresh_at = 0

        def renewed():
            with open(os.path.join(d, "token")) as f:
                return f.read() != token
        await wait_until(renewed, 10, what="the token to be renewed")

        for name in ("no-mount", "quiet-app"):
            await ident.ready(pods[name])
            assert "SENDO_SERVICEACCOUNT_DIR" not in ident.env(pods[name]), name
            assert not os.path.exists(str(tmp_path / "pods" / pods[name]["metadata"]["uid"] / TOKEN_DIR))
        await ident.ready(pods["loud-app"])
        assert "SENDO_SERVICEACCOUNT_DIR" in ident.env(pods["loud-app"])
        await ident.ready(pods["orphan"])
        with pytest.raises(ConfigError, match='serviceaccounts "missing" not found'):
            ident.env(pods["orphan"])
    finally:
        await ident.close()
        await node.close()
