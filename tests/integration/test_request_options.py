"""The user and options of a request reach the authorization step and ResourceAPI, and errors
are Status bodies field for field as kube-apiserver writes them."""
import orjson

from sendo.api.options import Decision

from test_request_robustness import CMS, call, cm

STATUS_KEYS = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]


class Recorder:
    """An authorizer that records what it is asked and denies what ``deny`` names."""

    def __init__(self, deny=()):
        self.asked: list[tuple[str, str, str, str | None, str | None]] = []
        self.deny = set(deny)

    async def authorize(self, options, verb, target):
        self.asked.append((options.user.name, verb, target.plural, target.namespace, target.sub))
        return Decision(verb not in self.deny, "denied by the test" if verb in self.deny else "")


async def test_a_denying_authorizer_yields_kubernetes_403(server):
    server.api.authorizer = Recorder(deny={"get", "list", "delete"})
    await call(server, "POST", CMS, cm("guarded"))
    status, body, _ = await call(server, "GET", f"{CMS}/guarded")
    assert status == 403
    assert list(body) == STATUS_KEYS
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "guarded" is forbidden: User "admin" cannot get resource "configmaps" '
                   'in API group "" in the namespace "default": denied by the test',
        "reason": "Forbidden", "details": {"name": "guarded", "kind": "configmaps"}, "code": 403}
    status, body, _ = await call(server, "GET", "/apis/apps/v1/deployments")
    assert status == 403 and body["message"] == (
        'deployments.apps is forbidden: User "admin" cannot list resource "deployments" in API group "apps" '
        "at the cluster scope: denied by the test")
    assert body["details"] == {"group": "apps", "kind": "deployments"}
    status, _, _ = await call(server, "DELETE", f"{CMS}/guarded")
    assert status == 403
    server.api.authorizer = Recorder()
    status, _, _ = await call(server, "GET", f"{CMS}/guarded")
    assert status == 200  # the denied delete deleted nothing


async def test_discovery_is_authorized_by_path(server):
    rec = server.api.authorizer = Recorder(deny={"get"})
    status, body, _ = await call(server, "GET", "/apis")
    assert status == 403 and body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'forbidden: User "admin" cannot get path "/apis": denied by the test', "reason": "Forbidden",
        "details": {}, "code": 403}
    allow = server.api.authorizer = Recorder()
    for path in ("/api", "/api/v1", "/apis/apps", "/openapi/v3"):
        status, _, _ = await call(server, "GET", path)
        assert status == 200
    status, _, _ = await call(server, "GET", "/version")
    assert status == 200  # public, as kube-apiserver's system:public-info-viewer makes it
    assert rec.asked == [("admin", "get", "", None, None)] and len(allow.asked) == 4


async def test_authorization_sees_the_authenticated_user_and_the_kubernetes_verb(server):
    rec = server.api.authorizer = Recorder()
    await call(server, "POST", CMS, cm("v"))
    await call(server, "GET", f"{CMS}/v")
    await call(server, "GET", CMS)
    await call(server, "PATCH", f"{CMS}/v", {"data": {"a": "b"}}, "application/merge-patch+json")
    await call(server, "PUT", "/api/v1/namespaces/default/configmaps/v", (await call(server, "GET", f"{CMS}/v"))[1])
    await call(server, "GET", "/api/v1/namespaces/default/pods/nope/log")
    await call(server, "DELETE", f"{CMS}/v")
    await call(server, "DELETE", CMS)
    await call(server, "GET", f"{CMS}?watch=true&timeoutSeconds=1")
    verbs = [(who, verb, plural, sub) for who, verb, plural, ns, sub in rec.asked]
    assert verbs == [("admin", "create", "configmaps", None), ("admin", "get", "configmaps", None),
                     ("admin", "list", "configmaps", None), ("admin", "patch", "configmaps", None),
                     ("admin", "get", "configmaps", None), ("admin", "update", "configmaps", None),
                     ("admin", "get", "pods", "log"), ("admin", "delete", "configmaps", None),
                     ("admin", "deletecollection", "configmaps", None), ("admin", "watch", "configmaps", None)]
    assert {ns for *_, ns, _ in rec.asked} == {"default"}


async def test_status_bodies_carry_kubernetes_fields_in_order(server):
    status, body, _ = await call(server, "GET", f"{CMS}/missing")
    assert status == 404 and list(body) == STATUS_KEYS
    assert body["details"] == {"name": "missing", "kind": "configmaps"}
    status, body, _ = await call(server, "GET", "/api/v1/nothings")
    assert status == 404 and body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound", "details": {},
        "code": 404}
    status, body, _ = await call(server, "PUT", CMS, cm("x"))
    assert status == 405 and body["reason"] == "MethodNotAllowed" and list(body) == STATUS_KEYS
    assert body["message"] == 'update is not supported on resources of kind "configmaps"'
    status, body, _ = await call(server, "POST", f"{CMS}?fieldValidation=Loose", cm("x"))
    assert status == 422 and list(body) == STATUS_KEYS
    assert body["details"] == {"group": "meta.k8s.io", "kind": "CreateOptions", "causes": [
        {"reason": "FieldValueNotSupported", "field": "fieldValidation",
         "message": 'Unsupported value: "Loose": supported values: "Ignore", "Strict", "Warn"'}]}
    status, body, _ = await call(server, "GET", CMS, headers={"Authorization": "Bearer wrong"})
    assert status == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert orjson.dumps(body).startswith(b'{"kind":"Status","apiVersion":"v1","metadata":{}')
