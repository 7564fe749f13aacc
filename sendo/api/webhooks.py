"""Admission webhooks: the Validating/MutatingWebhookConfigurations of the store, called on
create, update and delete.

* The configurations are kept in memory, loaded once and refreshed from a store watch, so a
  write that no webhook matches costs two list checks.
* A webhook matches a request by its rules (operations, groups, versions, resources with
  ``*`` and ``resource/subresource``, scope), its namespaceSelector (the labels of the
  object's namespace; a Namespace is matched by its own labels; cluster-scoped objects
  always match) and its objectSelector (the labels of the new or the old object).
* Each is sent an ``admission.k8s.io/v1`` AdmissionReview over HTTPS, verified with the
  webhook's caBundle (the system's roots without one), to its ``url`` or to a ready endpoint
  address of the Service it names (the certificate must name ``<service>.<namespace>.svc``).
* Mutating webhooks run first, one after another, ordered by configuration name; their
  JSONPatch is applied to the object. Validating webhooks then run concurrently.
* ``allowed: false`` refuses the request with the webhook's status (400 by default); a
  webhook that cannot be called or answers nonsense refuses it too (``failurePolicy: Fail``,
  503, ``failed calling webhook "<name>": …``) or is skipped (``Ignore``). Warnings become
  ``Warning`` headers, audit annotations go to the request's audit event.
* Writes to the webhook configurations themselves are never sent to webhooks (so a broken
  webhook cannot lock its own fix out), as in Kubernetes.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ..kinds.admissionregistration import GROUP, webhooks_of
from ..kinds.base import Resource
from ..kinds.meta import selector_matches
from ..kinds.registry import Registry
from ..store import Store, StoreError
from . import errors
from . import patch as patching
from .options import RequestOptions

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PREFIX = f"/registry/{GROUP}/"
REVIEW_VERSION = "admission.k8s.io/v1"
# the options of the request being served (set by the API server per request): who asks,
# and where warnings go, for writes that reach the store through ResourceAPI.modify
REQUEST_OPTIONS: contextvars.ContextVar[RequestOptions | None] = contextvars.ContextVar("webhook_request",
                                                                                       default=None)
OPTIONS_KINDS = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class CallFailed(Exception):
    """The webhook could not be called or answered something that is not a usable review."""


@dataclass
class Attributes:
    """One admission request: what is done to which object, by whom."""

    operation: str  # CREATE, UPDATE, DELETE
    r: Resource
    subresource: str
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    opts: RequestOptions
    options: Obj = field(default_factory=dict)  # the Create/Update/DeleteOptions sent along
    patched: bool = False  # a mutating webhook changed the object

    @property
    def labels(self) -> list[dict]:
        return [((o.get("metadata") or {}).get("labels") or {}) for o in (self.obj, self.old) if o]


# ----------------------------------------------------------------- matching
def _split(resource: str) -> tuple[str, str]:
    res, _, sub = resource.partition("/")
    return res, sub


def rule_matches(rule: Obj, a: Attributes) -> bool:
    """Whether one RuleWithOperations covers the request (Kubernetes' rule matcher)."""
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    groups, versions = rule.get("apiGroups") or [], rule.get("apiVersions") or []
    if "*" not in groups and a.r.group not in groups:
        return False
    if "*" not in versions and a.r.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and a.namespace:
        return False
    if scope == "Namespaced" and not a.namespace:
        return False
    for item in rule.get("resources") or []:
        res, sub = _split(item)
        if (res == "*" or res == a.r.plural) and (sub == "*" or sub == a.subresource):
            return True
    return False


def hook_matches(hook: Obj, a: Attributes, namespace_labels: dict | None) -> bool:
    """Rules, then the object selector, then the namespace selector (``namespace_labels``
    None: the object is cluster-scoped and not a Namespace, which every selector matches)."""
    if not any(isinstance(rule, dict) and rule_matches(rule, a) for rule in hook.get("rules") or []):
        return False
    obj_sel = hook.get("objectSelector")
    if obj_sel and not any(selector_matches(obj_sel, labels) for labels in a.labels or [{}]):
        return False
    ns_sel = hook.get("namespaceSelector")
    return not ns_sel or namespace_labels is None or selector_matches(ns_sel, namespace_labels)


# ----------------------------------------------------------------- reviews
def review_request(hook: Obj, a: Attributes) -> Obj:
    r, user = a.r, a.opts.user
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    gvr = {"group": r.group, "version": r.version, "resource": r.plural}
    req: Obj = {"uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk,
                "requestResource": gvr, "name": a.name, "operation": a.operation,
                "userInfo": {"username": user.name, "uid": user.uid, "groups": list(user.groups),
                             **({"extra": user.extra} if user.extra else {})},
                "object": a.obj, "oldObject": a.old, "dryRun": a.opts.dry_run,
                "options": {"kind": OPTIONS_KINDS[a.operation], "apiVersion": "meta.k8s.io/v1", **a.options}}
    if a.subresource:
        req["subResource"] = a.subresource
    if a.namespace:
        req["namespace"] = a.namespace
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "request": req}


@dataclass
class Verdict:
    allowed: bool
    status: Obj
    patch: list | None
    warnings: list[str]
    annotations: dict[str, str]


def read_response(body: Any, uid: str, mutating: bool) -> Verdict:
    """The webhook's answer, checked as Kubernetes checks it (CallFailed when unusable)."""
    if not isinstance(body, dict):
        raise CallFailed("the response is not a JSON object")
    if body.get("apiVersion") != REVIEW_VERSION or body.get("kind") != "AdmissionReview":
        raise CallFailed(f'expected webhook response of {REVIEW_VERSION}, Kind=AdmissionReview, got '
                         f'{body.get("apiVersion")}, Kind={body.get("kind")}')
    resp = body.get("response")
    if not isinstance(resp, dict):
        raise CallFailed("webhook response was absent")
    if resp.get("uid") != uid:
        raise CallFailed(f"expected response.uid={uid!r}, got {resp.get('uid')!r}")
    allowed = resp.get("allowed")
    if not isinstance(allowed, bool):
        raise CallFailed("response.allowed must be a boolean")
    status = resp.get("status") if isinstance(resp.get("status"), dict) else {}
    warnings = [w for w in resp.get("warnings") or [] if isinstance(w, str)]
    annotations = {k: v for k, v in (resp.get("auditAnnotations") or {}).items()
                   if isinstance(k, str) and isinstance(v, str)} if isinstance(resp.get("auditAnnotations"), dict) else {}
    ops = None
    patch = resp.get("patch")
    if patch is not None and allowed:
        if not mutating:
            raise CallFailed("validating webhook may not return a patch")
        if resp.get("patchType") != "JSONPatch":
            raise CallFailed(f"unsupported patch type {resp.get('patchType')!r}")
        try:
            ops = orjson.loads(base64.b64decode(patch, validate=True))
        except (binascii.Error, ValueError, TypeError) as e:
            raise CallFailed(f"the patch is not base64-encoded JSON: {e}")
        if not isinstance(ops, list):
            raise CallFailed("the patch is not a JSON patch (a list of operations)")
    return Verdict(allowed, status, ops, warnings, annotations)


def denied(name: str, status: Obj) -> errors.APIError:
    """The refusal a denying webhook's status makes (Kubernetes' wording and defaults)."""
    code = status.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code < 600:
        code = 400
    head = f'admission webhook "{name}" denied the request'
    message, reason = status.get("message"), status.get("reason")
    if isinstance(message, str) and message:
        text = f"{head}: {message}"
    elif isinstance(reason, str) and reason:
        text = f"{head}: {reason}"
    else:
        text = f"{head} without explanation"
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    return errors.APIError(code, text, reason if isinstance(reason, str) and reason else None, details)


def call_failed(name: str, why: str) -> errors.APIError:
    return errors.APIError(503, f'failed calling webhook "{name}": {why}', "ServiceUnavailable")


def apply_patch(obj: Obj, ops: list) -> None:
    """A mutating webhook's JSONPatch, applied in place; the object's identity (kind, name,
    namespace, uid) stays as it was."""
    try:
        new = patching.json_patch(obj, ops)
    except patching.PatchError as e:
        raise CallFailed(f"the patch does not apply: {e.message}")
    if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
        raise CallFailed("the patch must leave an object with metadata")
    meta = obj["metadata"]
    for key in ("name", "namespace", "uid", "generateName"):
        if key in meta:
            new["metadata"][key] = meta[key]
        else:
            new["metadata"].pop(key, None)
    new["apiVersion"], new["kind"] = obj.get("apiVersion"), obj.get("kind")
    meta.clear()
    meta.update(new.pop("metadata"))
    obj.clear()
    obj.update(new)
    obj["metadata"] = meta


# ----------------------------------------------------------------- the webhooks
class Webhooks:
    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.namespaces = registry.get("", "v1", "namespaces")
        self.services = registry.get("", "v1", "services")
        self.endpoints = registry.get("", "v1", "endpoints")
        self.mutating: list[Obj] = []  # the webhooks, in the order they are called
        self.validating: list[Obj] = []
        self._loaded = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._watch: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    # ---- the cache
    async def _ensure(self) -> None:
        async with self._lock:
            if self._loaded:
                return
            rev = await self._reload()
            self._loaded = True
            self._task = asyncio.create_task(self._watch_loop(rev), name="webhook-configurations")

    async def _reload(self) -> int:
        kvs, rev = await self.store.list(PREFIX)
        mutating, validating = [], []
        for kv in sorted(kvs, key=lambda kv: kv.key.rsplit("/", 1)[-1]):  # by configuration name
            hooks = webhooks_of(orjson.loads(kv.value))
            (mutating if "/mutatingwebhookconfigurations/" in kv.key else validating).extend(hooks)
        self.mutating, self.validating = mutating, validating
        return rev

    async def _watch_loop(self, rev: int) -> None:
        while True:
            try:
                self._watch = self.store.watch(PREFIX, rev)
                async for ev in self._watch:
                    rev = ev.kv.mod_rev
                    await self._reload()
            except StoreError as e:
                log.warning("webhook configuration watch ended (%s); re-listing", e)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook configuration watch failed; re-listing")
                await asyncio.sleep(1)  # back-off before listing again
            rev = await self._reload()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ---- admission
    async def mutate(self, a: Attributes) -> None:
        """Call the matching mutating webhooks in order, applying their patches to ``a.obj``."""
        if not self._loaded:
            await self._ensure()
        if not self.mutating or a.r.group == GROUP:
            return
        hooks = await self._matching(self.mutating, a)
        for hook in hooks:
            verdict = await self._call(hook, a, True)
            if verdict is not None and verdict.patch and a.obj is not None and a.operation != "DELETE":
                try:
                    apply_patch(a.obj, verdict.patch)
                    a.patched = True
                except CallFailed as e:
                    self._failed(hook, e)

    async def validate(self, a: Attributes) -> None:
        """Call the matching validating webhooks concurrently; the first refusal wins."""
        if not self._loaded:
            await self._ensure()
        if not self.validating or a.r.group == GROUP:
            return
        hooks = await self._matching(self.validating, a)
        if hooks:
            await asyncio.gather(*(self._call(h, a, False) for h in hooks))

    async def _matching(self, hooks: list[Obj], a: Attributes) -> list[Obj]:
        ns_labels: dict | None = None
        if a.r.plural == "namespaces" and not a.r.group:
            ns_labels = a.labels[0] if a.labels else {}
        elif a.namespace and any(h.get("namespaceSelector") for h in hooks):
            kv = await self.store.get(self.namespaces.key(None, a.namespace))
            ns_labels = ((orjson.loads(kv.value).get("metadata") or {}).get("labels") or {}) if kv else {}
        found = [h for h in hooks if hook_matches(h, a, ns_labels)]
        if found and a.opts.dry_run:
            for h in found:
                if h.get("sideEffects") not in ("None", "NoneOnDryRun"):
                    raise errors.bad_request(f'admission webhook "{h.get("name")}" has side effects and does not '
                                             "support dry run")
        return found

    async def _call(self, hook: Obj, a: Attributes, mutating: bool) -> Verdict | None:
        review = review_request(hook, a)
        try:
            body = await self._post(hook, review)
            verdict = read_response(body, review["request"]["uid"], mutating)
        except CallFailed as e:
            self._failed(hook, e)
            return None
        name = hook.get("name", "")
        a.opts.warnings.extend(verdict.warnings)
        for k, v in verdict.annotations.items():
            a.opts.audit_annotations[f"{name}/{k}"] = v
        if not verdict.allowed:
            raise denied(name, verdict.status)
        return verdict

    @staticmethod
    def _failed(hook: Obj, e: CallFailed) -> None:
        name = hook.get("name", "")
        if hook.get("failurePolicy") == "Ignore":
            log.info('failed calling webhook "%s" (failurePolicy Ignore): %s', name, e)
            return
        raise call_failed(name, str(e))

    # ---- the call
    def _context(self, bundle: str | None) -> ssl.SSLContext:
        ctx = self._contexts.get(bundle or "")
        if ctx is None:
            ctx = ssl.create_default_context()
            if bundle:
                try:
                    ctx.load_verify_locations(cadata=base64.b64decode(bundle).decode())
                except (ssl.SSLError, ValueError, binascii.Error) as e:
                    raise CallFailed(f"the caBundle cannot be read: {e}")
            self._contexts[bundle or ""] = ctx
        return ctx

    async def _target(self, cc: Obj) -> tuple[str, str | None]:
        """The URL to POST to and, for a service, the host name its certificate must carry."""
        if cc.get("url"):
            return cc["url"], None
        svc = cc.get("service") or {}
        ns, name, port = svc.get("namespace", ""), svc.get("name", ""), svc.get("port") or 443
        service_kv = await self.store.get(self.services.key(ns, name))
        if service_kv is None:
            raise CallFailed(f'service "{ns}/{name}" not found')
        ports = (orjson.loads(service_kv.value).get("spec") or {}).get("ports") or []
        port_name = next((p.get("name") or "" for p in ports if p.get("port") == port), None)
        if port_name is None:
            raise CallFailed(f'service "{ns}/{name}" has no port {port}')
        ep_kv = await self.store.get(self.endpoints.key(ns, name))
        subsets = (orjson.loads(ep_kv.value).get("subsets") or []) if ep_kv else []
        for subset in subsets:
            addrs = [x.get("ip") for x in subset.get("addresses") or [] if x.get("ip")]
            target = next((p.get("port") for p in subset.get("ports") or []
                           if (p.get("name") or "") == port_name or len(subset.get("ports")) == 1), None)
            if addrs and target:
                host = f"[{addrs[0]}]" if ":" in addrs[0] else addrs[0]
                return f"https://{host}:{target}{svc.get('path') or ''}", f"{name}.{ns}.svc"
        raise CallFailed(f'service "{ns}/{name}" has no ready endpoint for port {port}')

    async def _post(self, hook: Obj, review: Obj) -> Any:
        cc = hook.get("clientConfig") or {}
        url, server_name = await self._target(cc)
        timeout = hook.get("timeoutSeconds") or 10
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(json_serialize=lambda o: orjson.dumps(o).decode())
        try:
            async with self._session.post(url, data=orjson.dumps(review), ssl=self._context(cc.get("caBundle")),
                                          server_hostname=server_name, allow_redirects=False,
                                          headers={"Content-Type": "application/json",
                                                   "Accept": "application/json"},
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise CallFailed(f'Post "{url}": the server answered {resp.status}: {raw[:200]!r}')
        except asyncio.TimeoutError:
            raise CallFailed(f'failed to call webhook: Post "{url}": no answer within {timeout}s')
        except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as e:
            raise CallFailed(f'failed to call webhook: Post "{url}": {e}')
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise CallFailed(f"the response is not JSON: {e}")


def current_options() -> RequestOptions:
    """The options of the request being served (the server's own, outside a request)."""
    return REQUEST_OPTIONS.get() or RequestOptions()
