"""Generic REST semantics over the store: create, get, list, update, patch, delete.

Everything kind-specific is delegated to the kind's Strategy (sendo.kinds); this
module owns the rules every kind shares: metadata the server sets, optimistic
concurrency, status-subresource separation, generation, finalizers and graceful
deletion, scale and binding subresources, field ownership (managedFields) and
server-side apply (the rules themselves live in fieldmanager.py).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator

import orjson

from ..kinds import certificates
from ..kinds.base import Cause, Obj, Resource, required
from ..kinds.base import invalid as invalid_cause
from ..kinds.meta import now_rfc3339, random_suffix, rfc3339
from ..kinds.objectmeta import meta_type_causes
from ..kinds.printing import selector_string
from ..kinds.registry import Registry
from ..kinds.rbac import GROUP as RBAC_GROUP
from ..kinds.rbac import path_segment_problems
from ..store import KV, Conflict, KeyExists, KeyNotFound, Store
from ..store.versioner import encode as stored
from . import admission, errors, fieldmanager, limits, podsecurity, quota, webhooks
from . import patch as patching
from .openapi import OpenAPI
from .options import RequestOptions

MAX_RETRIES = 20  # conditional writes and server-side loops
RETRY_SECONDS = 60.0  # a non-conditional write retries on conflict until it applies, within this
SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                     "generation", "selfLink")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_AS_LABEL = {"namespaces", "services"}  # kinds whose names must be DNS labels

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def parse_apply_body(body: bytes) -> Any:
    """An apply body is YAML; kubectl and most clients send JSON, which is also YAML."""
    try:
        return limits.check_json_depth(body, orjson.loads(body))
    except orjson.JSONDecodeError:
        pass
    try:
        return limits.check_depth(limits.load_yaml(body))
    except limits.yaml.YAMLError as e:
        raise errors.bad_request(f"error decoding YAML: {e}")


def retries(conditional: bool) -> Iterator[int]:
    """Attempts of a read-change-write loop: a conditional write (the client named a
    resourceVersion) gets MAX_RETRIES; any other retries until it applies, as Kubernetes'
    GuaranteedUpdate does, bounded by RETRY_SECONDS so no request loops forever."""
    if conditional:
        yield from range(MAX_RETRIES)
        return
    deadline = time.monotonic() + RETRY_SECONDS
    attempt = 0
    while attempt < MAX_RETRIES or time.monotonic() < deadline:
        yield attempt
        attempt += 1


def _server_options(opts: RequestOptions | None) -> RequestOptions:
    """The options of a call from inside the server (no manager: its writes are not recorded)."""
    return opts if opts is not None else RequestOptions()


def decode(value: bytes) -> Obj:
    return orjson.loads(value)


def clone(obj: Any) -> Any:
    """A deep copy of a JSON object; an orjson round trip is several times faster than
    copy.deepcopy (integers beyond 64 bits, which JSON objects here never hold, fall back)."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)


def _spec_view(obj: Obj) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ResourceAPI:
    """The operations of the REST API, independent of HTTP."""

    def __init__(self, store: Store, registry: Registry, admission_options: admission.AdmissionOptions | None = None):
        self.store = store
        self.registry = registry
        self.openapi = OpenAPI(registry)  # documents, and the schemas behind fieldValidation
        self.namespaces = registry.get("", "v1", "namespaces")
        # plural -> steps that complete a new (or changed) core object before validation:
        # node podCIDRs, Service cluster IPs and node ports, pods' default tolerations
        self.admission = admission.admission_steps(store, registry, admission_options)
        self.update_admission = admission.update_steps(self.admission)
        # (group, plural) -> checks of who writes what, run on the validated object just
        # before it is stored (RBAC escalation prevention, the node restriction); they read
        # the writer from options.current_user()
        self.guards: dict[tuple[str, str], Callable[[str, Obj, Obj | None], Awaitable[None]]] = {}
        self.webhooks = webhooks.Webhooks(store, registry)  # admission webhooks (webhooks.py)
        self.quota = quota.QuotaAdmission(store, registry)  # ResourceQuota: charged last, before the write

    # ----------------------------------------------------------------- reads
    async def get_kv(self, r: Resource, ns: str | None, name: str) -> KV:
        kv = await self.store.get(r.key(ns, name))
        if kv is None:
            raise errors.not_found(r.group_resource, name, r.group, r.plural)
        return kv

    async def get(self, r: Resource, ns: str | None, name: str) -> Obj:
        return decode((await self.get_kv(r, ns, name)).value)

    async def list_kvs(self, r: Resource, ns: str | None, revision: int = 0) -> tuple[list[KV], int]:
        return await self.store.list(r.prefix(ns), revision)

    # ----------------------------------------------------------------- create
    async def create(self, r: Resource, ns: str | None, obj: Any, opts: RequestOptions | None = None) -> KV:
        """Create; ``opts.field_manager`` (None: not recorded) becomes the owner of every field set.

        ``opts.field_validation``: Strict refuses unknown fields, Warn adds them to
        ``opts.warnings``; otherwise they are not looked for.
        """
        opts = _server_options(opts)
        dry_run, manager = opts.dry_run, opts.field_manager
        obj = self._check_body(r, ns, obj)
        await self._check_fields(r, obj, None, opts.field_validation, opts.warnings, self._decoding(r))
        meta = obj["metadata"]
        generated = not meta.get("name") and meta.get("generateName")
        if not meta.get("name") and not generated:
            raise errors.invalid(r.kind, r.group, "", [required("metadata.name")])
        namespace = await self._check_namespace_open(ns) if r.namespaced else None
        for k in SERVER_OWNED_META + ("resourceVersion",):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if r.strategy.has_spec:
            meta["generation"] = 1
        for attempt in range(8 if generated else 1):
            if generated:  # the name comes first: defaults may derive from it (a Job's labels)
                meta["name"] = meta["generateName"] + random_suffix()
            r.strategy.default(obj)
            r.strategy.prepare_create(obj)
            if r.group == certificates.GROUP:  # a CSR says who asked, as authenticated
                user = opts.user
                certificates.set_requester(obj, user.name, user.uid, list(user.groups), dict(user.extra or {}))
            if attempt == 0:
                if not r.group:
                    for admit in self.admission.get(r.plural, ()):
                        await admit(obj)
                hook = webhooks.Attributes("CREATE", r, "", ns or "", meta["name"], obj, None, opts,
                                           {"fieldManager": manager} if manager else {})
                await self.webhooks.mutate(hook)
                if hook.patched:
                    r.strategy.default(obj)
                self._record(r, None, obj, manager, None)
            self._validate(r, obj, None)
            if namespace is not None and attempt == 0:
                podsecurity.admit(r.group, r.plural, obj, namespace.value, opts)
            if attempt == 0:
                await self.webhooks.validate(hook)
            if (guard := self.guards.get((r.group, r.plural))) is not None:
                await guard(r.plural, obj, None)
            if namespace is not None and attempt == 0:
                await self.quota.admit(r.group, r.plural, ns or "", obj, dry_run)
            if dry_run:
                return KV(r.key(ns, meta["name"]), orjson.dumps(obj), self.store.revision, 0)
            try:
                return await self.store.create(r.key(ns, meta["name"]), stored(obj))
            except KeyExists:
                if not generated or attempt == 7:
                    raise errors.already_exists(r.group_resource, meta["name"], r.group, r.plural)
        raise AssertionError("unreachable")

    async def _check_namespace_open(self, ns: str | None) -> KV:
        """The namespace's stored version, if new objects may be made in it (else 404 or 403)."""
        if not ns:
            raise errors.bad_request("a namespace is required for this kind")
        kv = await self.store.get(self.namespaces.key(None, ns))
        if kv is None:
            raise errors.not_found("namespaces", ns, "", "namespaces")
        if b'"deletionTimestamp"' in kv.value:
            raise errors.APIError(
                403, f'unable to create new content in namespace {ns} because it is being terminated',
                "Forbidden", {"name": ns, "kind": "namespaces",
                              "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                          "message": f"namespace {ns} is being terminated"}]})
        return kv

    def _check_body(self, r: Resource, ns: str | None, obj: Any, name: str | None = None) -> Obj:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body of the request must be a {r.kind} object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != r.kind:
            raise errors.bad_request(
                f"the kind of the object ({kind}) does not match the kind of the URL ({r.kind})")
        if api_version and api_version != r.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({r.api_version})")
        obj["kind"], obj["apiVersion"] = r.kind, r.api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if causes := meta_type_causes(meta):
            raise errors.invalid(r.kind, r.group, name or "", causes)
        if r.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if name is not None:
            meta["name"] = name
        return obj

    def _validate(self, r: Resource, obj: Obj, old: Obj | None, subresource: str | None = None) -> None:
        causes = self._validate_meta(r, obj)
        if subresource == "status" and old is not None:
            causes += r.strategy.validate_status(obj, old)
        else:
            causes += r.strategy.validate(obj)
        if old is not None:
            causes += r.strategy.validate_update(obj, old)
        if causes:
            raise errors.invalid(r.kind, r.group, obj["metadata"].get("name", ""), causes)
        limits.check_object_size(len(orjson.dumps(obj)), f'{r.group_resource} "{obj["metadata"].get("name", "")}"')

    @staticmethod
    def _validate_meta(r: Resource, obj: Obj) -> list[Cause]:
        meta = obj["metadata"]
        causes: list[Cause] = []
        name = meta.get("name", "")
        if r.group == RBAC_GROUP:  # RBAC names are path segments (system:discovery)
            problems = path_segment_problems(name) if isinstance(name, str) and name else ["must be a string"]
            return causes + [invalid_cause("metadata.name", name, p) for p in problems] + meta_type_causes(meta)
        as_label = r.plural in _NAME_AS_LABEL
        pattern, limit = (_DNS_LABEL, 63) if as_label else (_DNS_SUBDOMAIN, 253)
        if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
            what = "RFC 1123 label" if as_label else "RFC 1123 subdomain"
            causes.append(invalid_cause("metadata.name", name, f"a lowercase {what} must consist of lower case "
                              "alphanumeric characters, '-' or '.', and must start and end with an "
                              "alphanumeric character"))
        # field types again after patches and server-side changes (create checked them already)
        return causes + meta_type_causes(meta)

    # ----------------------------------------------------------------- update
    async def update(self, r: Resource, ns: str | None, name: str, obj: Any,
                     subresource: str | None = None, opts: RequestOptions | None = None) -> KV:
        opts = _server_options(opts)
        dry_run, manager = opts.dry_run, opts.field_manager
        obj = self._check_body(r, ns, obj, name)
        want_rv = obj["metadata"].get("resourceVersion")
        kv = await self.get_kv(r, ns, name)
        await self._check_fields(r, obj, decode(kv.value), opts.field_validation, opts.warnings, self._decoding(r))
        if want_rv and want_rv != str(kv.mod_rev):
            raise errors.conflict(r.group_resource, name, group=r.group, plural=r.plural)
        for attempt in retries(bool(want_rv)):
            old = decode(kv.value)
            new = self._merge_update(r, clone(obj), old, subresource)
            self._record(r, old, new, manager, subresource)
            try:
                return await self._write_update(r, ns, name, new, old, kv, dry_run, subresource)
            except Conflict:
                if want_rv:
                    raise errors.conflict(r.group_resource, name, group=r.group, plural=r.plural)
                kv = await self.get_kv(r, ns, name)
        raise errors.conflict(r.group_resource, name, "too many concurrent writers", r.group, r.plural)

    def _merge_update(self, r: Resource, obj: Obj, old: Obj, subresource: str | None) -> Obj:
        """The object to store: what the client may change through this endpoint, over the old one."""
        if subresource and (own := r.strategy.update_subresource(subresource, obj, old)) is not None:
            return own
        if subresource == "status":
            new = clone(old)
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
            r.strategy.default(new)  # schema defaults apply to status too (custom resources)
            return new
        if subresource == "finalize":  # namespaces: only spec.finalizers changes
            spec = obj.get("spec") or {}
            if not isinstance(spec, dict):
                raise errors.invalid(r.kind, r.group, obj["metadata"]["name"],
                                     [invalid_cause("spec", spec, "must be an object")])
            finalizers = spec.get("finalizers") or []
            if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
                raise errors.invalid(r.kind, r.group, obj["metadata"]["name"],
                                     [invalid_cause("spec.finalizers", finalizers, "must be a list of strings")])
            new = clone(old)
            new.setdefault("spec", {})["finalizers"] = list(finalizers)
            return new
        meta, old_meta = obj["metadata"], old["metadata"]
        for k in SERVER_OWNED_META:
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        if r.strategy.has_status:
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
        r.strategy.default(obj)
        r.strategy.prepare_update(obj, old)
        if r.strategy.has_spec and _spec_view(obj) != _spec_view(old):
            meta["generation"] = old_meta.get("generation", 0) + 1
        return obj

    @staticmethod
    def _record(r: Resource, old: Obj | None, new: Obj, manager: str | None, subresource: str | None) -> None:
        """managedFields for an ordinary write (skipped for the server's own, manager None)."""
        if manager is not None:
            fieldmanager.record_update(old, new, manager, r.kind, subresource, api_version=r.api_version,
                                       status_subresource=r.strategy.has_status)

    async def _write_update(self, r: Resource, ns: str | None, name: str, new: Obj, old: Obj, kv: KV,
                            dry_run: bool, subresource: str | None = None) -> KV:
        if subresource is None and not r.group:
            for admit in self.update_admission.get(r.plural, ()):
                await admit(new, old)
        hook = webhooks.Attributes("UPDATE", r, subresource or "", ns or "", name, new, old,
                                   webhooks.current_options())
        await self.webhooks.mutate(hook)
        if hook.patched:
            r.strategy.default(new)
        self._validate(r, new, old, subresource)
        await self.webhooks.validate(hook)
        new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        if new == old:
            return kv  # nothing changed: no write, no event, same resourceVersion
        if subresource is None and (guard := self.guards.get((r.group, r.plural))) is not None:
            await guard(r.plural, new, old)
        if dry_run:
            return KV(kv.key, orjson.dumps(new), kv.mod_rev, kv.create_rev)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not r.strategy.holds_deletion(new) \
                and (old["metadata"].get("finalizers") or r.strategy.holds_deletion(old)):
            # this update let go of the last thing that held a deleted object. Any other update
            # of a deleted object keeps it (a pod in its grace period gets its final status)
            return await self.store.delete(kv.key, expected_rev=kv.mod_rev, data=stored(new))
        return await self.store.update(kv.key, stored(new), expected_rev=kv.mod_rev)

    async def modify(self, r: Resource, ns: str | None, name: str, change: Callable[[Obj], Obj | None],
                     subresource: str | None = None, dry_run: bool = False,
                     expected_rv: str | None = None, manager: str | None = None) -> KV:
        """Read, change, write; retried on conflict (the guaranteed-update loop), until it
        applies unless the caller expects a resourceVersion."""
        for _ in retries(bool(expected_rv)):
            kv = await self.get_kv(r, ns, name)
            if expected_rv and expected_rv != str(kv.mod_rev):
                raise errors.conflict(r.group_resource, name, group=r.group, plural=r.plural)
            old = decode(kv.value)
            changed = change(clone(old))
            if changed is None:
                return kv
            changed = self._check_body(r, ns, changed, name)
            new = self._merge_update(r, changed, old, subresource)
            self._record(r, old, new, manager, subresource)
            try:
                return await self._write_update(r, ns, name, new, old, kv, dry_run, subresource)
            except Conflict:
                if expected_rv:
                    raise errors.conflict(r.group_resource, name, group=r.group, plural=r.plural)
        raise errors.conflict(r.group_resource, name, "too many concurrent writers", r.group, r.plural)

    # ----------------------------------------------------------------- patch
    async def patch(self, r: Resource, ns: str | None, name: str, content_type: str, body: bytes,
                    subresource: str | None = None, opts: RequestOptions | None = None) -> KV:
        """A merge, JSON or strategic merge patch (server-side apply is ``apply``)."""
        opts = _server_options(opts)
        validation, warnings = opts.field_validation, opts.warnings
        ctype = content_type.split(";")[0].strip()
        if ctype not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH) or (ctype == STRATEGIC_PATCH and r.custom):
            raise self.unsupported_patch(r)
        try:
            p = limits.check_json_depth(body, orjson.loads(body), "the patch")
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"the patch is not valid JSON: {e}")
        apply_patch = self._patcher(r, ctype, p)
        meta = p.get("metadata") if isinstance(p, dict) else None
        expected_rv = meta.get("resourceVersion") if isinstance(meta, dict) else None  # else: refused below

        find_unknown = await self._unknown_finder(r, validation)

        def change(old: Obj) -> Obj:
            before = find_unknown(old) if find_unknown else ()
            try:
                new = apply_patch(old)
            except patching.PatchError as e:
                raise errors.APIError(422, e.message, "Invalid")
            if not isinstance(new, dict):
                raise errors.bad_request("the patch must produce an object")
            if find_unknown:
                if warnings:
                    warnings.clear()  # a retried attempt reports afresh
                self._report_unknown(find_unknown(new), before, validation, warnings, "")
            return new
        return await self.modify(r, ns, name, change, subresource, opts.dry_run, expected_rv, opts.field_manager)

    # ----------------------------------------------------------------- fieldValidation
    @staticmethod
    def _decoding(r: Resource) -> str:
        return f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: '

    async def _unknown_finder(self, r: Resource, validation: str) -> Callable[[Any], list[str]] | None:
        if validation not in ("Strict", "Warn"):
            return None
        return await self.openapi.unknown_fields_of(r)

    async def _check_fields(self, r: Resource, obj: Obj, old: Obj | None, validation: str,
                            warnings: list[str] | None, prefix: str) -> None:
        """Unknown fields of a written object, less those the stored one already has (fields
        the server's own components wrote): refused (Strict) or reported (Warn)."""
        find = await self._unknown_finder(r, validation)
        if find is not None:
            self._report_unknown(find(obj), find(old) if old is not None else (), validation, warnings, prefix)

    @staticmethod
    def _report_unknown(paths: list[str], before: Any, validation: str, warnings: list[str] | None,
                        prefix: str) -> None:
        known = set(before)
        texts = [f'unknown field "{p}"' for p in paths if p not in known]
        if not texts:
            return
        if validation == "Strict":
            raise errors.bad_request(prefix + "strict decoding error: " + ", ".join(texts))
        if warnings is not None:
            warnings.extend(texts)

    @staticmethod
    def unsupported_patch(r: Resource) -> errors.APIError:
        accepted = [JSON_PATCH, MERGE_PATCH] + ([] if r.custom else [STRATEGIC_PATCH]) + [APPLY_PATCH]
        return errors.APIError(415, "the body of the request was in an unknown format - accepted media types "
                               "include: " + ", ".join(accepted), "UnsupportedMediaType")

    def _patcher(self, r: Resource, ctype: str, p: Any) -> Callable[[Obj], Obj]:
        if ctype == MERGE_PATCH:
            if not isinstance(p, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            return lambda old: patching.json_merge_patch(old, p)
        if ctype == JSON_PATCH:
            if not isinstance(p, list):
                raise errors.bad_request("a JSON patch must be a list of operations")
            return lambda old: patching.json_patch(old, p)
        if not isinstance(p, dict):
            raise errors.bad_request("a strategic merge patch must be a JSON object")
        return lambda old: patching.strategic_merge_patch(old, p, r.kind)

    # ----------------------------------------------------------------- apply
    async def apply(self, r: Resource, ns: str | None, name: str, body: bytes,
                    subresource: str | None = None, opts: RequestOptions | None = None) -> tuple[KV, bool]:
        """Server-side apply of the intent in ``body`` by ``opts.field_manager``; creates a
        missing object.

        Returns the object and whether it was created.
        """
        opts = _server_options(opts)
        manager, force, dry_run = opts.field_manager or "", opts.force, opts.dry_run
        if subresource not in (None, "status"):
            raise self.unsupported_patch(r)
        applied = self._check_body(r, ns, parse_apply_body(body), name)
        if applied["metadata"].get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        await self._check_fields(r, applied, None, opts.field_validation, opts.warnings, "")
        # the create below records apply's own managedFields: it must not record an update too
        create_opts = dataclasses.replace(opts, field_manager=None, field_validation="")
        expected_rv = applied["metadata"].get("resourceVersion")

        def change(old: Obj | None) -> Obj:
            try:
                return fieldmanager.apply(old, applied, manager, r.kind, force, subresource=subresource,
                                          status_subresource=r.strategy.has_status, api_version=r.api_version)
            except fieldmanager.ApplyConflict as c:
                raise errors.APIError(409, c.message, "Conflict", {"causes": c.causes()})

        for _ in retries(bool(expected_rv)):
            if subresource is None and await self.store.get(r.key(ns, name)) is None:
                if expected_rv:
                    raise errors.not_found(r.group_resource, name, r.group, r.plural)
                try:
                    return await self.create(r, ns, change(None), create_opts), True
                except errors.APIError as e:
                    if e.reason != "AlreadyExists":
                        raise
                    continue  # created meanwhile: apply over it
            try:
                return await self.modify(r, ns, name, change, subresource, dry_run, expected_rv), False
            except errors.APIError as e:
                if e.code != 404 or subresource is not None or await self.store.get(r.key(ns, name)):
                    raise
        raise errors.conflict(r.group_resource, name, "too many concurrent writers", r.group, r.plural)

    # ----------------------------------------------------------------- delete
    async def delete(self, r: Resource, ns: str | None, name: str, options: dict[str, Any],
                     opts: RequestOptions | None = None) -> tuple[KV, bool]:
        """Delete or start deleting (``options`` is the DeleteOptions body). Returns the object
        and whether it is gone already."""
        opts = _server_options(opts)
        dry_run = opts.dry_run
        grace = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else None)
        pre = options.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise errors.bad_request("DeleteOptions.preconditions must be an object")
        hook: webhooks.Attributes | None = None
        for _ in retries(bool(pre.get("resourceVersion"))):
            kv = await self.get_kv(r, ns, name)
            obj = decode(kv.value)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(r.group_resource, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {meta.get('uid')}", r.group, r.plural)
            if pre.get("resourceVersion") and pre["resourceVersion"] != str(kv.mod_rev):
                raise errors.conflict(r.group_resource, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: {kv.mod_rev}",
                                      r.group, r.plural)
            if hook is None:  # admission webhooks see the deletion once
                hook = webhooks.Attributes("DELETE", r, "", ns or "", name, None, obj, opts, options)
                await self.webhooks.mutate(hook)
                await self.webhooks.validate(hook)
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            pod_grace = self._graceful_pod_seconds(r, obj, grace)
            if not finalizers and pod_grace == 0 and not r.strategy.holds_deletion(obj):
                if dry_run:
                    return kv, True
                try:
                    return await self.store.delete(kv.key, expected_rev=kv.mod_rev), True
                except (Conflict, KeyNotFound):
                    continue
            new = clone(obj)
            nm = new["metadata"]
            nm["finalizers"] = finalizers
            if not nm["finalizers"]:
                nm.pop("finalizers")
            now = dt.datetime.now(dt.timezone.utc)
            if pod_grace:
                deadline = now + dt.timedelta(seconds=pod_grace)
                if not nm.get("deletionTimestamp") or pod_grace < (nm.get("deletionGracePeriodSeconds") or 1e9):
                    nm["deletionTimestamp"] = rfc3339(deadline)
                    nm["deletionGracePeriodSeconds"] = pod_grace
            elif not nm.get("deletionTimestamp"):
                nm["deletionTimestamp"] = rfc3339(now)
                nm["deletionGracePeriodSeconds"] = 0
            r.strategy.begin_deletion(new)
            if new == obj:
                return kv, False
            if dry_run:
                return KV(kv.key, orjson.dumps(new), kv.mod_rev, kv.create_rev), False
            try:
                return await self.store.update(kv.key, stored(new), expected_rev=kv.mod_rev), False
            except Conflict:
                continue
        raise errors.conflict(r.group_resource, name, "too many concurrent writers", r.group, r.plural)

    @staticmethod
    def _graceful_pod_seconds(r: Resource, obj: Obj, grace: Any) -> int:
        """Seconds a running pod gets to stop; 0 deletes now (unbound, finished, or forced)."""
        if r.plural != "pods" or r.group:
            return 0
        if grace is not None:
            try:
                grace = int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}")
            if grace <= 0:
                return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace is None:
                grace = 30
            # the agent must still see the deletion and stop the processes; 0 still means "now"
            grace = max(int(grace), 1)
        return int(grace)

    # ----------------------------------------------------------------- subresources
    def scale_of(self, r: Resource, obj: Obj) -> Obj:
        def dig(path):
            cur: Any = obj
            for p in path:
                cur = cur.get(p) if isinstance(cur, dict) else None
            return cur
        meta = obj["metadata"]
        status: dict[str, Any] = {"replicas": dig(r.scale.status_replicas) or 0}
        if r.scale.label_selector:
            sel = dig(r.scale.label_selector)
            if sel is None and isinstance((obj.get("spec") or {}).get("selector"), dict):
                sel = selector_string(obj["spec"]["selector"])
            if sel:
                status["selector"] = sel
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp") if k in meta},
                "spec": {"replicas": dig(r.scale.spec_replicas) or 0}, "status": status}

    async def update_scale(self, r: Resource, ns: str | None, name: str,
                           to_scale: Callable[[Obj], Obj], opts: RequestOptions | None = None) -> Obj:
        """Apply a change to the Scale view and write the replicas back to the parent."""
        opts = _server_options(opts)
        def change(old: Obj) -> Obj:
            scale = to_scale(self.scale_of(r, old))
            if not isinstance(scale, dict):
                raise errors.bad_request("the body must be a Scale object")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("Scale", "autoscaling", name, [
                    Cause("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"].get("resourceVersion"):
                raise errors.conflict(r.group_resource, name, group=r.group, plural=r.plural)
            cur = old
            for p in r.scale.spec_replicas[:-1]:
                cur = cur.setdefault(p, {})
            cur[r.scale.spec_replicas[-1]] = replicas
            return old
        kv = await self.modify(r, ns, name, change, "scale", dry_run=opts.dry_run, manager=opts.field_manager)
        return self.scale_of(r, decode(kv.value))

    async def bind(self, pods: Resource, ns: str, name: str, binding: Any) -> None:
        """pods/binding: assign a pod to a node, once."""
        if not isinstance(binding, dict) or not isinstance(binding.get("target"), dict):
            raise errors.bad_request("the body must be a Binding with a target")
        node = binding["target"].get("name")
        if not node:
            raise errors.invalid("Binding", "", name, [required("target.name")])

        def change(pod: Obj) -> Obj:
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods", name, "pod is being deleted, cannot be assigned to a host")
            current = pod.get("spec", {}).get("nodeName")
            if current:
                raise errors.conflict("pods", name, f"pod {name} is already assigned to node \"{current}\"")
            pod["spec"]["nodeName"] = node
            conds = [c for c in pod.setdefault("status", {}).get("conditions", []) if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            pod["status"]["conditions"] = conds
            return pod
        for _ in retries(False):
            kv = await self.get_kv(pods, ns, name)
            old = decode(kv.value)
            new = change(old)  # freshly decoded: ours to change
            try:
                await self.store.update(kv.key, stored(new), expected_rev=kv.mod_rev)
                return
            except Conflict:
                continue
        raise errors.conflict("pods", name, "too many concurrent writers")
