"""The ASGI application: authentication, URL routing and HTTP framing of the REST API."""
from __future__ import annotations

import base64
import functools
import logging
import time
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from .. import __version__
from ..kinds.base import Cause, unsupported
from ..kinds.fields import selectable
from ..kinds.meta import SelectorError, make_filter
from ..kinds.registry import Registry
from ..kinds.rbac import GROUP as RBAC_GROUP
from ..kinds.rbac import REVIEW_GROUPS
from ..observe import METRICS_CONTENT_TYPE, Health, exposition, is_health_path
from ..serving import CLIENT_CERT
from ..store import Compacted, Store, StoreError
from ..wire import NODE_HEADER
from . import (console, conversion, discovery, errors, eviction, inflight, limits, metricsapi, openapi_proto,
               podexec, podlogs, portforward, protobuf, proxy, reviews, rotation, webhooks)
from .admission import AdmissionOptions
from . import patch as patching
from . import tokens as sa_tokens
from .apimetrics import MUTATING, APIMetrics, TimedStore
from .audit import Auditor, audit_begin, audit_end
from .component_policy import COMPONENT_USERS
from .errors import APIError
from .http import Request
from .nodeauth import NodeAuthorizer, NodeGraph, restrict_node_writes
from .options import (
    ANONYMOUS,
    Authorizer,
    RequestOptions,
    User,
    forbidden,
    set_current_user,
    verb_of,
)
from .rbac import Authorizer as RBACAuthorizer
from .rbac import EscalationGuard, RBACState
from .paths import Target, parse_path
from .query import Query
from .resources import APPLY_PATCH, ResourceAPI, decode
from .table import answer_form, transform
from .watch import WatchStream

log = logging.getLogger(__name__)
JSON = "application/json"
PUBLIC_PATHS = {"/version", "/version/", "/healthz", "/readyz", "/livez"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# kinds whose DELETE answers with the deleted object; the others answer with a Status
RETURN_DELETED_OBJECT = {("", "pods"), ("", "services"), ("", "persistentvolumeclaims"), ("", "persistentvolumes"),
                         ("storage.k8s.io", "storageclasses")}
FIELD_MANAGER_MAX = 128
# the options kind each write method's query parameters belong to (named in 422s)
OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions",
                "DELETE": "DeleteOptions"}
__all__ = ["APIServer", "User", "parse_path"]


def json_response(body: Any, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status_code=status, media_type=JSON)


def error_response(e: APIError) -> Response:
    response = json_response(e.status(), e.code)
    retry = (e.details or {}).get("retryAfterSeconds") if e.code == 429 else None
    if retry:
        response.headers["Retry-After"] = str(retry)  # what client-go and kubectl wait before trying again
    return response


class APIServer:
    def __init__(self, store: Store, registry: Registry, tokens: dict[str, User],
                 node_token: str | None = None, sa_signer: sa_tokens.TokenSigner | None = None,
                 authorizer: Authorizer | None = None, auditor: Auditor | None = None,
                 admission_options: AdmissionOptions | None = None):
        self.metrics = APIMetrics(registry)  # /metrics
        self.store = store = TimedStore(store, self.metrics)  # type: ignore[assignment]
        self.registry = registry
        self.health = Health()  # /healthz, /livez, /readyz; the server adds its own checks
        self.health.add("store", self._store_check, live=True)
        self.metrics_api = metricsapi.MetricsAPI(self)  # metrics.k8s.io (kubectl top, the HPA)
        self.inflight = inflight.InflightLimit()  # requests served at once, per priority level and user
        self.tokens = tokens
        self.node_token = node_token
        # ServiceAccount tokens (JWTs); without a key of the server's, one for this process only
        self.sa_tokens = sa_tokens.ServiceAccountTokens(store, registry, sa_signer or sa_tokens.TokenSigner.generate())
        self.api = ResourceAPI(store, registry, admission_options)
        # RBAC (rbac.py) and the node authorizer (nodeauth.py), from in-memory state the store feeds
        self.rbac = RBACState(store)
        self.node_graph = NodeGraph(store)
        self.rbac_authorizer = RBACAuthorizer(self.rbac, NodeAuthorizer(self.node_graph))
        self.authorizer: Authorizer = authorizer or self.rbac_authorizer
        self.api.guards.update(EscalationGuard(self.rbac, self.rbac_authorizer).guards())
        self.api.guards[("", "nodes")] = restrict_node_writes
        self.api.guards[("coordination.k8s.io", "leases")] = restrict_node_writes
        self.auditor = auditor  # the audit log (audit.py), when --audit-policy-file asks for one
        self.encryption_config: str | None = None  # the file of the keys Secrets are sealed with (rotation.py)
        self._converted: dict[str, ResourceAPI] = {}  # versions served from another stored version
        self.app = self.asgi

    async def start(self) -> None:
        """The authorizers' in-memory state: read from the store, then kept by watches."""
        self.rbac.start()
        await self.node_graph.start()

    async def stop(self) -> None:
        await self.rbac.stop()
        await self.node_graph.stop()

    async def asgi(self, scope, receive, send) -> None:
        """The ASGI entry point (lifespan events are not used)."""
        if scope["type"] == "websocket":  # pods/<name>/exec, /attach, /portforward
            if podexec.is_exec_path(scope["path"]):
                await podexec.websocket(self, scope, receive, send)
            else:
                await portforward.websocket(self, scope, receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def _store_check(self) -> str | None:
        await self.store.get("/registry/core/namespaces/default")
        return None

    # ----------------------------------------------------------------- entry
    async def handle(self, request: Request) -> Response:
        """Serve one request, counted and timed for /metrics (apimetrics.py)."""
        m = self.metrics
        kind = "mutating" if request.method in MUTATING else "readOnly"
        m.inflight[kind] += 1
        t0 = time.perf_counter()
        try:
            response = await self._handle(request)
        finally:
            m.inflight[kind] -= 1
        m.request(request.method, request.labels or (request.method, "", "", "", "", "", "apiserver"),
                  response.status_code, time.perf_counter() - t0)
        return response

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        user, record = None, None
        try:
            public = path in PUBLIC_PATHS or is_health_path(path) or console.owns(path)
            user = ANONYMOUS if public else await self.authenticate(request)
            set_current_user(user)
            if self.auditor is not None:
                record = audit_begin(self.auditor, request, user)
            held = None if public or inflight.long_running(request.method, path, request.query_params) \
                else self.inflight.acquire(user, request.method)
            try:
                response = await self.route(request, path, user)
            finally:
                self.inflight.release(held)
        except APIError as e:
            response = error_response(e)
        except SelectorError as e:
            response = error_response(errors.bad_request(str(e)))
        except StoreError as e:  # the datastore did not answer (an etcd member down, …): the client retries
            log.warning("datastore error serving %s %s: %s", request.method, path, e)
            response = error_response(APIError(503, f"the datastore is unavailable: {e}", "ServiceUnavailable"))
        except Exception as e:  # never a bare 500 without a Status
            log.exception("internal error serving %s %s", request.method, path)
            response = error_response(APIError(500, f"internal error: {type(e).__name__}: {e}"))
        if self.auditor is not None:
            if user is None:  # refused before it had a user: recorded as the anonymous caller
                record = audit_begin(self.auditor, request, ANONYMOUS)
            if record is not None:
                audit_end(record, request, response)
        return response

    def api_of(self, r) -> ResourceAPI:
        """The operations for `r`: over a view of the store for a version stored as another
        (autoscaling/v1 HorizontalPodAutoscalers; conversion.py)."""
        return conversion.api_for(self.api, r, self._converted)

    async def authenticate(self, request: Request) -> User:
        """A client certificate the cluster CA signed (CN = user, O = groups), the admin
        token, the node token (with the node named in ``X-Sendo-Node``), or a ServiceAccount
        token (tokens.py); what the user may do is ``authorize``'s question."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            user = await self.authenticate_token(auth[7:].strip(), request.headers.get(NODE_HEADER, ""))
            if user is None:
                raise unauthorized()
            return user
        subject = (request.scope.get("state") or {}).get(CLIENT_CERT)
        if subject is not None:
            name, groups = subject
            return User(name, [*groups, "system:authenticated"])
        raise unauthorized()

    async def authenticate_token(self, token: str, node_name: str = "") -> User | None:
        """Who a bearer token speaks for (None: no one); also answers TokenReviews."""
        if token == self.node_token and self.node_token:
            return node_user(node_name)
        user = self.tokens.get(token)
        if user is not None:
            return user
        if sa_tokens.looks_like_jwt(token):
            try:
                sa = await self.sa_tokens.authenticate(token)
                return User(sa.name, sa.groups, sa.uid, sa.extra)
            except sa_tokens.TokenError as e:
                log.info("refused a service account token: %s", e)
        return None

    async def authorize(self, options: RequestOptions, verb: str, t: "Target") -> None:
        """Between routing and serving: may ``options.user`` do ``verb`` on ``t``? (403 if not)"""
        decision = await self.authorizer.authorize(options, verb, t)
        if not decision.allowed:
            refusal = forbidden(options, verb, t, decision.reason)
            if options.user.name in COMPONENT_USERS:  # one of sendo's own loops lacks a right: its role is wrong
                log.warning("refused a cluster component: %s", refusal.message)
            raise refusal

    async def route(self, request: Request, path: str, user: User = ANONYMOUS) -> Response:
        if console.owns(path):  # the web console's static files (console.py)
            return console.serve(request.method, path)
        if proxied := proxy.split(path):  # pods|services|nodes/<id>/proxy/<path>: the path is kept as sent
            return await self.serve_proxy(request, proxied[0], user)
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # /version/ and /api/ are the same as without the slash
        if is_health_path(path):
            status, text = await self.health.answer(path, request.query_params.multi_items())
            return Response(text.encode(), status_code=status, media_type="text/plain")
        if path == "/version":
            return json_response(version_info())
        if path == rotation.PATH:
            if request.method != "POST":
                raise APIError(405, f"{rotation.PATH} takes POST", "MethodNotAllowed")
            return json_response(await rotation.rotate(self.store, self.encryption_config, user))
        if path == "/metrics":
            await self.authorize(RequestOptions(user), "get", Target("", "", path=path))
            await self.metrics.count_objects(self.store)
            return Response(exposition(self.metrics.registry), media_type=METRICS_CONTENT_TYPE)
        t = parse_path(path)
        if t is not None and t.group == metricsapi.GROUP and t.plural:
            return await self.serve_metrics(request, t, user)
        if t is None or not t.plural:  # discovery and OpenAPI: authorized by path, as Kubernetes does
            await self.authorize(RequestOptions(user), request.method.lower(), Target("", "", path=path))
            return await self.non_resource(path, t, request.headers.get("accept"))
        r = self.registry.get(t.group, t.version, t.plural)
        if r is None or (r.namespaced and t.namespace is None and t.name is not None) or \
                (not r.namespaced and t.namespace is not None) or (t.sub and t.sub not in r.subresources):
            raise errors.no_route()
        q = Query(request.query_params)
        options = request.options = RequestOptions(user)
        if request.method == "GET" and t.name is None:
            t.field_selector = q.str("fieldSelector") or ""
        watch = request.method == "GET" and t.name is None and q.bool("watch")
        request.labels = request_labels(request, t, watch)
        webhooks.REQUEST_OPTIONS.set(options)  # admission webhooks are told who asks
        await self.authorize(options, verb_of(request.method, t, watch), t)
        if r.group in REVIEW_GROUPS:
            return await self.review(request, r, t, user)
        response = await self.serve(request, r, t, q, options)
        if r.group == RBAC_GROUP and request.method in WRITE_METHODS:
            self.rbac.invalidate()  # the writer's next request is decided by what it wrote
        return response

    async def review(self, request: Request, r, t: Target, user: User) -> Response:
        if request.method != "POST" or t.name is not None:
            raise errors.method_not_supported(r, request.method, t.sub)
        answer = await reviews.serve(self.rbac_authorizer, self.rbac, r.plural, await self.body(request), user,
                                     t.namespace if r.namespaced else None, self.authenticate_token)
        return json_response(answer, 201)

    async def serve_proxy(self, request: Request, base: str, user: User) -> Response:
        """pods/proxy, services/proxy, nodes/proxy (proxy.py): authorized as the subresource."""
        t = parse_path(base)
        r = self.registry.get(t.group, t.version, t.plural) if t is not None else None
        if t is None or r is None or not t.name or "proxy" not in r.subresources:
            raise errors.no_route()
        raw = request.scope.get("raw_path") or request.url.path.encode()
        rest = proxy.split(raw.decode("latin-1").partition("?")[0])
        options = request.options = RequestOptions(user)
        request.labels = request_labels(request, t, False)
        await self.authorize(options, verb_of(request.method, t, False), t)
        return await proxy.serve(self, request, t.plural, t.namespace, t.name, base, rest[1] if rest else "")

    async def serve_metrics(self, request: Request, t: Target, user: User) -> Response:
        """metrics.k8s.io, served by the API server itself (metricsapi.py)."""
        q = Query(request.query_params)
        watch = request.method == "GET" and t.name is None and q.bool("watch")
        request.labels = request_labels(request, t, watch)
        await self.authorize(RequestOptions(user), verb_of(request.method, t, watch), t)
        return await self.metrics_api.serve(request, t, q)

    async def non_resource(self, path: str, t: Target | None, accept: str | None = None) -> Response:
        if path == "/api":
            return json_response(discovery.api_versions())
        if path == "/apis":
            groups = discovery.api_group_list(self.registry)
            groups["groups"].append(metricsapi.discovery_group())
            return json_response(groups)
        if path == f"/apis/{metricsapi.GROUP}":
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **metricsapi.discovery_group()})
        if path == f"/apis/{metricsapi.API_VERSION}":
            return json_response(metricsapi.resource_list())
        if path.startswith("/openapi/v3"):
            return await self.openapi_v3(path)
        if path == "/openapi/v2":  # kubectl asks for protobuf, other clients for JSON
            if openapi_proto.wants_protobuf(accept):
                return Response(await self.api.openapi.v2_protobuf(), media_type=openapi_proto.MEDIA_TYPE)
            return json_response(await self.api.openapi.v2())
        if t is None and path.startswith("/apis/") and path.count("/") == 2:
            g = discovery.api_group(self.registry, path.split("/")[2])
            if g:
                return json_response(g)
        doc = discovery.resource_list(self.registry, t.group, t.version) if t is not None else None
        if doc is None:
            raise errors.no_route()
        return json_response(doc)

    async def openapi_v3(self, path: str) -> Response:
        rest = path[len("/openapi/v3"):].strip("/")
        if not rest:
            return json_response(self.api.openapi.root())
        parts = rest.split("/")
        doc = None
        if parts[0] == "api" and len(parts) == 2:
            doc = await self.api.openapi.group_version("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = await self.api.openapi.group_version(parts[1], parts[2])
        if doc is None:
            raise errors.no_route()
        return json_response(doc)

    # ----------------------------------------------------------------- verbs
    async def serve(self, request: Request, r, t: Target, q: Query, opts: RequestOptions) -> Response:
        m = request.method
        ns = t.namespace if r.namespaced else None
        if m in OPTIONS_KIND:
            write_options(request, q, opts, OPTIONS_KIND[m])
        if t.name is None:
            if m == "GET":
                if q.bool("watch"):
                    return await self.watch(request, q, r, ns)
                return await self.list(request, q, r, ns)
            if m == "POST":
                kv = await self.api_of(r).create(r, ns, await self.body(request), opts)
                return with_warnings(json_response(kv.value, 201), opts.warnings)
            if m == "DELETE":
                return await self.delete_collection(request, q, r, ns, opts)
            raise errors.method_not_supported(r, m)
        if t.sub == "token":  # serviceaccounts/<name>/token: a TokenRequest
            if m != "POST":
                raise errors.method_not_supported(r, m, "token")
            return json_response(await self.sa_tokens.token_request(ns, t.name, await self.body(request)), 201)
        if t.sub == "log":
            return await podlogs.serve(self, request, q, r, ns, t.name)
        if t.sub == "portforward":
            return await portforward.serve_http(self, request, ns, t.name)
        if t.sub in podexec.SUBRESOURCES:
            return await podexec.serve_http(self, request, ns, t.name, t.sub)
        if t.sub == "binding":
            if m != "POST":
                raise errors.method_not_supported(r, m, "binding")
            await self.api_of(r).bind(r, ns, t.name, await self.body(request))
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, 201)
        if t.sub == "eviction":
            if m != "POST":
                raise errors.method_not_supported(r, m, "eviction")
            body = await self.body(request)
            return json_response(await eviction.evict(self.api, self.registry, r, ns, t.name, body, opts), 201)
        if t.sub == "scale":
            return await self.scale(request, r, ns, t.name, opts)
        if m == "GET":
            form = answer_form(request.headers.get("accept"), "get")
            kv = await self.api_of(r).get_kv(r, ns, t.name)
            if form is not None:
                return json_response(transform(r, form, [decode(kv.value)], {"resourceVersion": str(kv.mod_rev)},
                                               q.str("includeObject")))
            return json_response(kv.value)
        if m == "PUT":
            kv = await self.api_of(r).update(r, ns, t.name, await self.body(request), t.sub, opts)
            return with_warnings(json_response(kv.value), opts.warnings)
        if m == "PATCH":
            ctype = content_type(request)
            if ctype == APPLY_PATCH:
                kv, created = await self.api_of(r).apply(r, ns, t.name, await request.body(), t.sub, opts)
                return with_warnings(json_response(kv.value, 201 if created else 200), opts.warnings)
            kv = await self.api_of(r).patch(r, ns, t.name, ctype, await request.body(), t.sub, opts)
            return with_warnings(json_response(kv.value), opts.warnings)
        if m == "DELETE":
            kv, gone = await self.api_of(r).delete(r, ns, t.name, await self.delete_options(request, q, opts), opts)
            if not gone or (r.group, r.plural) in RETURN_DELETED_OBJECT:
                return json_response(kv.value)
            return json_response(deleted_status(r, kv))
        raise errors.method_not_supported(r, m, t.sub)

    async def body(self, request: Request) -> Any:
        request.decoded = await self._decode_body(request)
        return request.decoded

    async def _decode_body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            raise errors.bad_request("the request has no body")
        ctype = content_type(request) or JSON
        if protobuf.is_protobuf(ctype):
            return limits.check_depth(self._protobuf(raw))
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                return limits.check_depth(limits.load_yaml(raw))
            except limits.yaml.YAMLError as e:
                raise errors.bad_request(f"the request body is not valid {ctype}: {e}")
        if ctype not in (JSON, "*/*", "text/plain"):
            raise APIError(415, f"the body content type {ctype!r} is not supported; send "
                           "application/json or application/yaml", "UnsupportedMediaType")
        return limits.check_json_depth(raw, decode_json(raw, "the request body"))

    @staticmethod
    def _protobuf(raw: bytes) -> dict[str, Any]:
        """kubectl's typed commands send Kubernetes protobuf; inside, everything is JSON."""
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise APIError(415, str(e), "UnsupportedMediaType")

    async def delete_options(self, request: Request, q: Query, opts: RequestOptions) -> dict[str, Any]:
        """DeleteOptions from the body and the query (the query wins), checked by type before
        anything is deleted; a body's ``dryRun`` counts as the query's does."""
        body: Any = {}
        raw = await request.body()
        if raw and protobuf.is_protobuf(content_type(request)):
            body = self._protobuf(raw)  # kubectl drain --disable-eviction
        elif raw:
            body = decode_json(raw, "DeleteOptions")
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
        limits.check_depth(body, "DeleteOptions")
        for name in ("gracePeriodSeconds",):
            v = body.get(name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise errors.bad_request(f"DeleteOptions.{name} must be an integer, not {v!r}")
        dry = body.get("dryRun")
        if dry is not None:
            if not isinstance(dry, list) or any(v != "All" for v in dry):
                raise errors.invalid("DeleteOptions", "meta.k8s.io", "", [
                    unsupported("dryRun", dry, ["All"])])
            opts.dry_run = opts.dry_run or bool(dry)
        grace = q.int("gracePeriodSeconds")
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if q.str("propagationPolicy"):
            body["propagationPolicy"] = q.str("propagationPolicy")
        if q.str("orphanDependents") is not None:
            body["orphanDependents"] = q.bool("orphanDependents")
        policy = body.get("propagationPolicy")
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "meta.k8s.io", "", [
                unsupported("propagationPolicy", policy, ["Foreground", "Background", "Orphan"])])
        return body

    async def list_revision(self, q: Query) -> int:
        """The revision a list is read at: 0 (the latest) unless resourceVersionMatch=Exact."""
        rv = q.str("resourceVersion") or ""
        match = q.choice("resourceVersionMatch", ["Exact", "NotOlderThan"], "ListOptions")
        if match and not rv:
            raise errors.invalid("ListOptions", "meta.k8s.io", "", [Cause(
                "resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden unless resourceVersion "
                "is provided", "FieldValueForbidden")])
        if rv and not rv.isdigit():
            raise errors.bad_request(f'invalid resourceVersion "{rv}": must be a non-negative integer')
        if match != "Exact" or rv == "0":
            return 0
        await self.check_reached(int(rv))
        return int(rv)

    async def check_reached(self, rv: int) -> None:
        """A resourceVersion beyond the store's newest (as this server knows it, then as the store
        says: another server may have written it) is too large."""
        if rv > self.store.revision and rv > await self.store.latest_revision():
            raise errors.too_large_resource_version(rv, self.store.revision)

    async def list(self, request: Request, q: Query, r, ns: str | None) -> Response:
        form = answer_form(request.headers.get("accept"), "list")
        match = make_filter(q.str("labelSelector"), q.str("fieldSelector"), selectable(r))
        try:
            kvs, rev = await self.api_of(r).list_kvs(r, ns, await self.list_revision(q))
        except Compacted as e:
            raise errors.gone(f"too old resource version: {e.requested} ({e.compact_rev})")
        limit = q.int("limit") or 0
        cont = q.str("continue")
        start_key = None
        if cont:
            try:
                c = orjson.loads(base64.urlsafe_b64decode(cont + "=="))
                rev, start_key = int(c["rv"]), c["start"]
            except Exception:
                raise errors.bad_request("the continue token is not valid; start the list again")
            if rev != self.store.revision:
                try:
                    kvs, rev = await self.api_of(r).list_kvs(r, ns, rev)
                except Exception:
                    raise errors.gone("the continue token is too old; start the list again")
        if start_key is not None:
            kvs = [kv for kv in kvs if kv.key > start_key]
        items: list[Any] = []
        next_key = None
        for kv in kvs:
            if match is None and form is None:
                items.append(kv.value)
            else:
                obj = decode(kv.value)
                if match is not None and not match(obj):
                    continue
                items.append(obj)
            if limit > 0 and len(items) >= limit:
                next_key = kv.key
                break
        list_meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if next_key is not None and next_key != kvs[-1].key:
            token = orjson.dumps({"rv": rev, "start": next_key})
            list_meta["continue"] = base64.urlsafe_b64encode(token).decode().rstrip("=")
        if form is not None:
            return json_response(transform(r, form, items, list_meta, q.str("includeObject")))
        head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version, "metadata": list_meta})
        parts = [v if isinstance(v, bytes) else orjson.dumps(v) for v in items]
        return Response(head[:-1] + b',"items":[' + b",".join(parts) + b"]}", media_type=JSON)

    async def watch(self, request: Request, q: Query, r, ns: str | None) -> Response:
        form = answer_form(request.headers.get("accept"), "watch")
        timeout = q.int("timeoutSeconds")
        rv = q.str("resourceVersion")
        if rv and rv.isdigit():
            await self.check_reached(int(rv))
        match = make_filter(q.str("labelSelector"), q.str("fieldSelector"), selectable(r))
        ws = WatchStream(self.api_of(r).store, r, ns, match, rv,  # type: ignore[arg-type]
                         float(timeout) if timeout else None,  # absent or 0: the server's default
                         q.bool("allowWatchBookmarks"), q.opt_bool("sendInitialEvents"),
                         form)
        stream = self.metrics.watching(ws.stream(), (r.group, r.version, r.kind))
        return StreamingResponse(stream, media_type=JSON,
                                 headers={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})

    async def delete_collection(self, request: Request, q: Query, r, ns: str | None,
                                opts: RequestOptions) -> Response:
        match = make_filter(q.str("labelSelector"), q.str("fieldSelector"), selectable(r))
        options = await self.delete_options(request, q, opts)
        kvs, rev = await self.api_of(r).list_kvs(r, ns)
        deleted = []
        for kv in kvs:
            obj = decode(kv.value)
            if match is not None and not match(obj):
                continue
            try:
                dkv, _ = await self.api_of(r).delete(r, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                                               options, opts)
                deleted.append(dkv.value)
            except APIError as e:
                if e.code != 404:
                    raise
        head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version,
                             "metadata": {"resourceVersion": str(self.store.revision)}})
        return Response(head[:-1] + b',"items":[' + b",".join(deleted) + b"]}", media_type=JSON)

    async def scale(self, request: Request, r, ns: str | None, name: str, opts: RequestOptions) -> Response:
        m = request.method
        if m == "GET":
            return json_response(self.api.scale_of(r, await self.api.get(r, ns, name)))
        if m == "PUT":
            body = await self.body(request)
            return json_response(await self.api.update_scale(r, ns, name, lambda _: body, opts))
        if m == "PATCH":
            ctype = content_type(request)
            raw = await request.body()
            p = limits.check_json_depth(raw, decode_json(raw, "the patch"), "the patch")

            def apply(scale):
                try:
                    if ctype == "application/json-patch+json":
                        return patching.json_patch(scale, p)
                    if ctype == "application/strategic-merge-patch+json":
                        return patching.strategic_merge_patch(scale, p, "Scale")
                    return patching.json_merge_patch(scale, p)
                except patching.PatchError as e:
                    raise APIError(422, e.message, "Invalid")
            return json_response(await self.api.update_scale(r, ns, name, apply, opts))
        raise errors.method_not_supported(r, m, "scale")


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def node_user(name: str) -> User | None:
    """The identity of an agent: ``system:node:<name>`` in ``system:nodes``. The node token
    without a node name authenticates no one."""
    if not name or len(name) > 253 or not all(c.isalnum() or c in "-." for c in name):
        log.info("refused the node token without a valid %s header", NODE_HEADER)
        return None
    return User(f"system:node:{name}", ["system:nodes", "system:authenticated"])


def request_labels(request: Request, t: Target, watch: bool) -> tuple[str, ...]:
    """apiserver_request_total's verb, group, version, resource, subresource, scope, component,
    as kube-apiserver names them (LIST and WATCH apart from GET, APPLY apart from PATCH)."""
    m = request.method
    if m == "GET":
        verb = "GET" if t.name else ("WATCH" if watch else "LIST")
    elif m == "DELETE" and not t.name:
        verb = "DELETECOLLECTION"
    elif m == "PATCH" and request.headers.get("content-type", "").startswith(APPLY_PATCH):
        verb = "APPLY"
    else:
        verb = m
    if t.sub in ("portforward", "exec", "attach", "proxy"):
        verb = "CONNECT"
    scope = "resource" if t.name else ("namespace" if t.namespace else "cluster")
    return (verb, t.group, t.version, t.plural, t.sub or "", scope, "apiserver")


def content_type(request: Request) -> str:
    """The body's media type, lowercased; a charset other than UTF-8 is refused (415), as
    every Kubernetes body format is UTF-8."""
    raw = request.headers.get("content-type", "")
    media, _, params = raw.partition(";")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise APIError(415, f'the body charset "{charset}" is not supported: send UTF-8',
                           "UnsupportedMediaType")
    return media.strip().lower()


def decode_json(raw: bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"{what} is not valid JSON: {e}")


def write_options(request: Request, q: Query, opts: RequestOptions, kind: str) -> None:
    """Fill a write's options from the query; every bad value is refused before anything is written."""
    opts.dry_run = q.dry_run(kind)
    if kind == "DeleteOptions":
        return
    apply = kind == "PatchOptions" and content_type(request) == APPLY_PATCH
    opts.field_manager = field_manager(request, q, kind, apply)
    opts.field_validation = q.choice("fieldValidation", ["Ignore", "Strict", "Warn"], kind)
    opts.force = apply and q.bool("force")


def field_manager(request: Request, q: Query, options_kind: str, apply: bool = False) -> str:
    """Who a write is recorded under: ?fieldManager=, else the client's User-Agent up to
    its first "/" (kubectl-client-side-apply, kubectl-edit, …), as Kubernetes does.
    Apply must name itself; ``force`` belongs to apply alone."""
    given = q.str("fieldManager") or ""
    causes: list[Cause] = []
    if options_kind == "PatchOptions":
        if not apply and "force" in q:
            causes.append(Cause("force", "Forbidden: may not be specified for non-apply patch",
                                "FieldValueForbidden"))
        if apply and not given:
            causes.append(Cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired"))
    if len(given.encode()) > FIELD_MANAGER_MAX:
        causes.append(Cause("fieldManager", f"Too long: may not be more than {FIELD_MANAGER_MAX} bytes",
                            "FieldValueTooLong"))
    for i, ch in enumerate(given if not given.isprintable() else ""):
        if not ch.isprintable():
            causes.append(Cause("fieldManager", f'Invalid value: "{given}": invalid character '
                                f"U+{ord(ch):04X} (at position {i})"))
            break
    if causes:
        raise errors.invalid(options_kind, "meta.k8s.io", "", causes)
    if given:
        return given
    return _agent_manager(request.headers.get("user-agent", ""))


@functools.lru_cache(maxsize=1024)  # a client sends the same User-Agent with every write
def _agent_manager(user_agent: str) -> str:
    prefix = "".join(ch for ch in user_agent.split("/")[0] if ch.isprintable())
    while len(prefix.encode()) > FIELD_MANAGER_MAX:
        prefix = prefix[:-1]
    return prefix


def warning_header(text: str) -> str:
    """`299 - "text"` with the text quoted as Go's strconv.Quote would for the characters a
    header cannot carry: a newline in a field name must not end the header (and with it the
    response, after the object was stored)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    # header values go out as latin-1: carry UTF-8 bytes through it unchanged
    return f'299 - "{"".join(out)}"'.encode().decode("latin-1")


def with_warnings(response: Response, warnings: list[str]) -> Response:
    """One `Warning: 299 - "text"` header per warning (kubectl prints them)."""
    for text in warnings:
        response.headers.append("Warning", warning_header(text))
    return response


def deleted_status(r, kv) -> dict[str, Any]:
    meta = orjson.loads(kv.value)["metadata"]
    details = {"name": meta.get("name"), "kind": r.plural, "uid": meta.get("uid")}
    if r.group:
        details["group"] = r.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def version_info() -> dict[str, str]:
    import platform
    return {"major": "1", "minor": "37", "gitVersion": f"v1.37.0-sendo.{__version__}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "python" +
            platform.python_version(), "compiler": "cpython", "platform": f"linux/{platform.machine()}"}
