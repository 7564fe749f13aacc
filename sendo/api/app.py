"""The ASGI application: authentication, URL routing and HTTP framing of the REST API."""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml
from starlette.responses import Response, StreamingResponse

from .. import __version__
from ..kinds.base import Cause, unsupported
from ..kinds.fields import selectable
from ..kinds.registry import Registry
from ..store import Compacted, Store
from . import discovery, errors, openapi_proto, patch as patching, podlogs, portforward, protobuf, tokens as sa_tokens
from .errors import APIError
from .http import Request
from .meta import make_filter
from .resources import APPLY_PATCH, ResourceAPI, decode
from .table import table, wants_table
from .watch import WatchStream

log = logging.getLogger(__name__)
JSON = "application/json"
PUBLIC_PATHS = {"/version", "/version/", "/healthz", "/readyz", "/livez"}
# kinds whose DELETE answers with the deleted object; the others answer with a Status
RETURN_DELETED_OBJECT = {("", "pods"), ("", "services")}
FIELD_MANAGER_MAX = 128
_BOOLS = {"1": True, "t": True, "T": True, "true": True, "True": True, "TRUE": True,
          "0": False, "f": False, "F": False, "false": False, "False": False, "FALSE": False}


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


def json_response(body: Any, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status_code=status, media_type=JSON)


def error_response(e: APIError) -> Response:
    return json_response(e.status(), e.code)


@dataclass
class Target:
    """What a URL names: a group/version, maybe a resource, namespace, name, subresource."""

    group: str
    version: str
    plural: str = ""
    namespace: str | None = None
    name: str | None = None
    sub: str | None = None


def parse_path(path: str) -> Target | None:
    segs = [s for s in path.split("/") if s]
    if not segs:
        return None
    if segs[0] == "api" and len(segs) >= 2:
        group, version, rest = "", segs[1], segs[2:]
    elif segs[0] == "apis" and len(segs) >= 3:
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    t = Target(group, version)
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        t.namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    t.plural = rest[0] if rest else ""
    t.name = rest[1] if len(rest) > 1 else None
    t.sub = rest[2] if len(rest) > 2 else None
    return t


class APIServer:
    def __init__(self, store: Store, registry: Registry, tokens: dict[str, User],
                 node_token: str | None = None, sa_signer: sa_tokens.TokenSigner | None = None):
        self.store = store
        self.registry = registry
        self.tokens = tokens
        self.node_token = node_token
        # ServiceAccount tokens (JWTs); without a key of the server's, one for this process only
        self.sa_tokens = sa_tokens.ServiceAccountTokens(store, registry, sa_signer or sa_tokens.TokenSigner.generate())
        self.api = ResourceAPI(store, registry)
        self.app = self.asgi

    async def asgi(self, scope, receive, send) -> None:
        """The ASGI entry point (lifespan events are not used)."""
        if scope["type"] == "websocket":  # pods/<name>/portforward (kubectl port-forward)
            await portforward.websocket(self, scope, receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    # ----------------------------------------------------------------- entry
    async def handle(self, request: Request) -> Response:
        path = request.url.path
        try:
            if path not in PUBLIC_PATHS:
                await self.authenticate(request)
            return await self.route(request, path)
        except APIError as e:
            return error_response(e)
        except Exception as e:  # never a bare 500 without a Status
            log.exception("internal error serving %s %s", request.method, path)
            return error_response(APIError(500, f"internal error: {type(e).__name__}: {e}"))

    async def authenticate(self, request: Request) -> User:
        """The admin and node tokens, or a ServiceAccount token (tokens.py). There is no
        authorization yet: every authenticated user, ServiceAccounts included, may do
        anything (RBAC comes later)."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            user = self.tokens.get(token)
            if user is not None:
                return user
            if sa_tokens.looks_like_jwt(token):
                try:
                    sa = await self.sa_tokens.authenticate(token)
                    return User(sa.name, sa.groups, sa.uid, sa.extra)
                except sa_tokens.TokenError as e:
                    log.info("refused a service account token: %s", e)
        raise APIError(401, "Unauthorized", "Unauthorized")

    async def route(self, request: Request, path: str) -> Response:
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # /version/ and /api/ are the same as without the slash
        if path in ("/healthz", "/readyz", "/livez"):
            return Response(b"ok", media_type="text/plain")
        if path == "/version":
            return json_response(version_info())
        if path == "/api":
            return json_response(discovery.api_versions())
        if path == "/apis":
            return json_response(discovery.api_group_list(self.registry))
        if path.startswith("/openapi/v3"):
            return await self.openapi_v3(path)
        if path == "/openapi/v2":  # kubectl asks for protobuf, other clients for JSON
            if openapi_proto.wants_protobuf(request.headers.get("accept")):
                return Response(await self.api.openapi.v2_protobuf(), media_type=openapi_proto.MEDIA_TYPE)
            return json_response(await self.api.openapi.v2())
        t = parse_path(path)
        if t is None:
            if path.startswith("/apis/") and path.count("/") == 2:
                g = discovery.api_group(self.registry, path.split("/")[2])
                if g:
                    return json_response(g)
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        if not t.plural:
            doc = discovery.resource_list(self.registry, t.group, t.version)
            if doc is None:
                raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
            return json_response(doc)
        r = self.registry.get(t.group, t.version, t.plural)
        if r is None:
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        if r.namespaced and t.namespace is None and t.name is not None:
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        if not r.namespaced and t.namespace is not None:
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        if t.sub and t.sub not in r.subresources:
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        return await self.serve(request, r, t)

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
            raise APIError(404, f"the server could not find the requested resource ({path})", "NotFound")
        return json_response(doc)

    # ----------------------------------------------------------------- verbs
    async def serve(self, request: Request, r, t: Target) -> Response:
        m = request.method
        q = request.query_params
        dry = "All" in q.getlist("dryRun")
        ns = t.namespace if r.namespaced else None
        if t.name is None:
            if m == "GET":
                if q.get("watch") in ("1", "true"):
                    return self.watch(request, r, ns)
                return await self.list(request, r, ns)
            if m == "POST":
                manager = field_manager(request, "CreateOptions")
                validation, warnings = field_validation(request, "CreateOptions"), []
                kv = await self.api.create(r, ns, await self.body(request), dry, manager, validation, warnings)
                return with_warnings(json_response(kv.value, 201), warnings)
            if m == "DELETE":
                return await self.delete_collection(request, r, ns)
            raise APIError(405, f"{m} is not supported on a collection", "MethodNotAllowed")
        if t.sub == "token":  # serviceaccounts/<name>/token: a TokenRequest
            if m != "POST":
                raise APIError(405, "token only supports POST (create)", "MethodNotAllowed")
            return json_response(await self.sa_tokens.token_request(ns, t.name, await self.body(request)), 201)
        if t.sub == "log":
            return await podlogs.serve(self, request, r, ns, t.name)
        if t.sub == "portforward":
            return await portforward.serve_http(self, request, ns, t.name)
        if t.sub == "binding":
            if m != "POST":
                raise APIError(405, "binding only supports POST", "MethodNotAllowed")
            await self.api.bind(r, ns, t.name, await self.body(request))
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, 201)
        if t.sub == "scale":
            return await self.scale(request, r, ns, t.name, dry)
        if m == "GET":
            kv = await self.api.get_kv(r, ns, t.name)
            if wants_table(request.headers.get("accept")):
                obj = decode(kv.value)
                return json_response(table(r, [obj], {"resourceVersion": str(kv.mod_rev)},
                                           q.get("includeObject")))
            return json_response(kv.value)
        if m == "PUT":
            manager = field_manager(request, "UpdateOptions")
            validation, warnings = field_validation(request, "UpdateOptions"), []
            kv = await self.api.update(r, ns, t.name, await self.body(request), t.sub, dry, manager,
                                       validation, warnings)
            return with_warnings(json_response(kv.value), warnings)
        if m == "PATCH":
            ctype = request.headers.get("content-type", "").split(";")[0].strip()
            apply = ctype == APPLY_PATCH
            manager = field_manager(request, "PatchOptions", apply)
            validation, warnings = field_validation(request, "PatchOptions"), []
            if apply:
                kv, created = await self.api.apply(r, ns, t.name, await request.body(), manager,
                                                   query_bool(q, "force"), t.sub, dry, validation, warnings)
                return with_warnings(json_response(kv.value, 201 if created else 200), warnings)
            kv = await self.api.patch(r, ns, t.name, ctype, await request.body(), t.sub, dry, manager,
                                      validation, warnings)
            return with_warnings(json_response(kv.value), warnings)
        if m == "DELETE":
            options = await self.delete_options(request)
            kv, gone = await self.api.delete(r, ns, t.name, options, dry)
            if not gone or (r.group, r.plural) in RETURN_DELETED_OBJECT:
                return json_response(kv.value)
            return json_response(deleted_status(r, kv))
        raise APIError(405, f"{m} is not supported here", "MethodNotAllowed")

    async def body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            raise errors.bad_request("the request has no body")
        ctype = request.headers.get("content-type", JSON).split(";")[0].strip()
        if protobuf.is_protobuf(ctype):
            return self._protobuf(raw)
        try:
            if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
                return yaml.safe_load(raw)
            if ctype and ctype not in (JSON, "*/*", "text/plain"):
                raise APIError(415, f"the body content type {ctype!r} is not supported; send "
                               "application/json or application/yaml", "UnsupportedMediaType")
            return orjson.loads(raw)
        except (orjson.JSONDecodeError, yaml.YAMLError) as e:
            raise errors.bad_request(f"the request body is not valid {ctype}: {e}")

    @staticmethod
    def _protobuf(raw: bytes) -> dict[str, Any]:
        """kubectl's typed commands send Kubernetes protobuf; inside, everything is JSON."""
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise APIError(415, str(e), "UnsupportedMediaType")

    async def delete_options(self, request: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await request.body()
        if raw and protobuf.is_protobuf(request.headers.get("content-type", "")):
            opts = self._protobuf(raw)  # kubectl drain --disable-eviction
        elif raw:
            try:
                opts = orjson.loads(raw) or {}
            except orjson.JSONDecodeError as e:
                raise errors.bad_request(f"DeleteOptions is not valid JSON: {e}")
            if not isinstance(opts, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
        q = request.query_params
        if q.get("gracePeriodSeconds") is not None:
            opts["gracePeriodSeconds"] = q["gracePeriodSeconds"]
        if q.get("propagationPolicy"):
            opts["propagationPolicy"] = q["propagationPolicy"]
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", "", [
                unsupported("propagationPolicy", policy, ["Foreground", "Background", "Orphan"])])
        return opts

    async def list(self, request: Request, r, ns: str | None) -> Response:
        q = request.query_params
        match = make_filter(q.get("labelSelector"), q.get("fieldSelector"), selectable(r))
        rv = q.get("resourceVersion") or ""
        revision = 0
        if rv and rv != "0" and q.get("resourceVersionMatch") == "Exact":
            revision = int(rv) if rv.isdigit() else -1
            if revision < 0:
                raise errors.bad_request(f'invalid resourceVersion "{rv}"')
        try:
            kvs, rev = await self.api.list_kvs(r, ns, revision)
        except Compacted as e:
            raise errors.gone(f"too old resource version: {e.requested} ({e.compact_rev})")
        limit = int(q.get("limit") or 0)
        cont = q.get("continue")
        start_key = None
        if cont:
            try:
                c = orjson.loads(base64.urlsafe_b64decode(cont + "=="))
                rev, start_key = int(c["rv"]), c["start"]
            except Exception:
                raise errors.bad_request("the continue token is not valid; start the list again")
            if rev != self.store.revision:
                try:
                    kvs, rev = await self.api.list_kvs(r, ns, rev)
                except Exception:
                    raise errors.gone("the continue token is too old; start the list again")
        if start_key is not None:
            kvs = [kv for kv in kvs if kv.key > start_key]
        as_table = wants_table(request.headers.get("accept"))
        items: list[Any] = []
        next_key = None
        for kv in kvs:
            if match is None and not as_table:
                items.append(kv.value)
            else:
                obj = decode(kv.value)
                if match is not None and not match(obj):
                    continue
                items.append(obj)
            if limit and len(items) >= limit:
                next_key = kv.key
                break
        list_meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if next_key is not None and next_key != kvs[-1].key:
            token = orjson.dumps({"rv": rev, "start": next_key})
            list_meta["continue"] = base64.urlsafe_b64encode(token).decode().rstrip("=")
        if as_table:
            return json_response(table(r, items, list_meta, q.get("includeObject")))
        head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version, "metadata": list_meta})
        parts = [v if isinstance(v, bytes) else orjson.dumps(v) for v in items]
        return Response(head[:-1] + b',"items":[' + b",".join(parts) + b"]}", media_type=JSON)

    def watch(self, request: Request, r, ns: str | None) -> Response:
        q = request.query_params
        timeout = q.get("timeoutSeconds")
        send_initial = q.get("sendInitialEvents")
        match = make_filter(q.get("labelSelector"), q.get("fieldSelector"), selectable(r))
        ws = WatchStream(self.store, r, ns, match,
                         q.get("resourceVersion"), float(timeout) if timeout else None,
                         q.get("allowWatchBookmarks") in ("1", "true"),
                         None if send_initial is None else send_initial == "true",
                         wants_table(request.headers.get("accept")))
        return StreamingResponse(ws.stream(), media_type=JSON,
                                 headers={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})

    async def delete_collection(self, request: Request, r, ns: str | None) -> Response:
        q = request.query_params
        match = make_filter(q.get("labelSelector"), q.get("fieldSelector"), selectable(r))
        options = await self.delete_options(request)
        kvs, rev = await self.api.list_kvs(r, ns)
        deleted = []
        for kv in kvs:
            obj = decode(kv.value)
            if match is not None and not match(obj):
                continue
            try:
                dkv, _ = await self.api.delete(r, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                                               options, "All" in q.getlist("dryRun"))
                deleted.append(dkv.value)
            except APIError as e:
                if e.code != 404:
                    raise
        head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version,
                             "metadata": {"resourceVersion": str(self.store.revision)}})
        return Response(head[:-1] + b',"items":[' + b",".join(deleted) + b"]}", media_type=JSON)

    async def scale(self, request: Request, r, ns: str | None, name: str, dry: bool) -> Response:
        m = request.method
        if m == "GET":
            return json_response(self.api.scale_of(r, await self.api.get(r, ns, name)))
        if m == "PUT":
            manager = field_manager(request, "UpdateOptions")
            body = await self.body(request)
            return json_response(await self.api.update_scale(r, ns, name, lambda _: body, dry, manager))
        if m == "PATCH":
            ctype = request.headers.get("content-type", "").split(";")[0].strip()
            manager = field_manager(request, "PatchOptions", ctype == APPLY_PATCH)
            try:
                p = orjson.loads(await request.body())
            except orjson.JSONDecodeError as e:
                raise errors.bad_request(f"the patch is not valid JSON: {e}")

            def apply(scale):
                try:
                    if ctype == "application/json-patch+json":
                        return patching.json_patch(scale, p)
                    if ctype == "application/strategic-merge-patch+json":
                        return patching.strategic_merge_patch(scale, p, "Scale")
                    return patching.json_merge_patch(scale, p)
                except patching.PatchError as e:
                    raise APIError(422, e.message, "Invalid")
            return json_response(await self.api.update_scale(r, ns, name, apply, dry, manager))
        raise APIError(405, f"{m} is not supported on scale", "MethodNotAllowed")


def field_manager(request: Request, options_kind: str, apply: bool = False) -> str:
    """Who a write is recorded under: ?fieldManager=, else the client's User-Agent up to
    its first "/" (kubectl-client-side-apply, kubectl-edit, …), as Kubernetes does.
    Apply must name itself; ``force`` belongs to apply alone."""
    q = request.query_params
    given = q.get("fieldManager") or ""
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
    for i, ch in enumerate(given):
        if not ch.isprintable():
            causes.append(Cause("fieldManager", f'Invalid value: "{given}": invalid character '
                                f"U+{ord(ch):04X} (at position {i})"))
            break
    if causes:
        raise errors.invalid(options_kind, "meta.k8s.io", "", causes)
    if given:
        return given
    prefix = "".join(ch for ch in request.headers.get("user-agent", "").split("/")[0] if ch.isprintable())
    while len(prefix.encode()) > FIELD_MANAGER_MAX:
        prefix = prefix[:-1]
    return prefix


def field_validation(request: Request, options_kind: str) -> str:
    """?fieldValidation=Strict|Warn|Ignore: what to do with unknown fields (absent: as Ignore)."""
    value = request.query_params.get("fieldValidation") or ""
    if value not in ("", "Ignore", "Warn", "Strict"):
        raise errors.invalid(options_kind, "meta.k8s.io", "", [
            unsupported("fieldValidation", value, ["", "Ignore", "Strict", "Warn"])])
    return value


def with_warnings(response: Response, warnings: list[str]) -> Response:
    """One `Warning: 299 - "text"` header per warning (kubectl prints them)."""
    for text in warnings:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        # header values go out as latin-1: carry UTF-8 bytes through it unchanged
        response.headers.append("Warning", f'299 - "{quoted}"'.encode().decode("latin-1"))
    return response


def query_bool(q, name: str) -> bool:
    value = q.get(name)
    if value is None or value == "":
        return False
    if value not in _BOOLS:
        raise errors.bad_request(f'invalid value for "{name}": {value!r} is not a boolean')
    return _BOOLS[value]


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
