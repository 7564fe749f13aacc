"""The review kinds: questions the API answers and never stores.

* authorization.k8s.io/v1 ``SelfSubjectAccessReview`` (may I?), ``SubjectAccessReview``
  and ``LocalSubjectAccessReview`` (may they?), ``SelfSubjectRulesReview`` (what may I do
  in this namespace?) — ``kubectl auth can-i [--list]``;
* authentication.k8s.io/v1 ``SelfSubjectReview`` (who am I?) — ``kubectl auth whoami``,
  and ``TokenReview`` (who is this token?), which needs ``create`` on tokenreviews.

The answer is the request with a ``status`` added, as kube-apiserver answers (201).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..kinds.base import Cause, invalid, required
from ..kinds.meta import now_rfc3339
from . import errors
from .nodeauth import node_of
from .options import User
from .paths import Target
from .rbac import Authorizer, RBACState
from .tokens import API_AUDIENCES

TokenAuthenticator = Callable[[str], Awaitable[User | None]]

AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"


def _attributes(spec: dict[str, Any], kind: str, namespace: str | None) -> Target:
    res, nonres = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (nonres is None):
        raise errors.invalid(kind, AUTHZ, "", [invalid("spec.resourceAttributes", None, "exactly one of "
                                                       "nonResourceAttributes or resourceAttributes must be "
                                                       "specified")])
    causes: list[Cause] = []
    attrs = res if res is not None else nonres
    field = "spec.resourceAttributes" if res is not None else "spec.nonResourceAttributes"
    if not isinstance(attrs, dict):
        raise errors.invalid(kind, AUTHZ, "", [invalid(field, attrs, "must be an object")])
    for key, value in attrs.items():
        if key not in ("fieldSelector", "labelSelector") and not isinstance(value, str):
            causes.append(invalid(f"{field}.{key}", value, "must be a string"))
    if causes:
        raise errors.invalid(kind, AUTHZ, "", causes)
    if nonres is not None:
        return Target("", "", path=attrs.get("path", ""))
    ns = attrs.get("namespace") or None
    if namespace is not None:  # a LocalSubjectAccessReview is about its own namespace
        if ns not in (None, namespace):
            raise errors.invalid(kind, AUTHZ, "", [invalid("spec.resourceAttributes.namespace", ns,
                                                           "must match metadata.namespace")])
        ns = namespace
    field_selector = attrs.get("fieldSelector") if isinstance(attrs.get("fieldSelector"), dict) else {}
    return Target(attrs.get("group", ""), attrs.get("version", ""), attrs.get("resource", ""), ns,
                  attrs.get("name") or None, attrs.get("subresource") or None,
                  field_selector=str(field_selector.get("rawSelector") or ""))


def _verb(spec: dict[str, Any]) -> str:
    attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
    return str(attrs.get("verb") or "")


def _answer(body: dict[str, Any], kind: str, group: str, status: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    return {"kind": kind, "apiVersion": f"{group}/v1", "metadata": {**meta, "creationTimestamp": now_rfc3339()},
            "spec": body.get("spec") or {}, "status": status}


async def access_review(authorizer: Authorizer, kind: str, body: dict[str, Any], me: User,
                        namespace: str | None = None) -> dict[str, Any]:
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise errors.invalid(kind, AUTHZ, "", [required("spec")])
    if kind == "SelfSubjectAccessReview":
        who = me
    else:
        user, groups = spec.get("user"), spec.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            groups = [] if groups is None else None
        if groups is None:
            raise errors.invalid(kind, AUTHZ, "", [invalid("spec.groups", spec.get("groups"),
                                                           "must be a list of strings")])
        if not isinstance(user, str) or not (user or groups):
            raise errors.invalid(kind, AUTHZ, "", [Cause("spec.user", "Invalid value: \"\": at least one of user "
                                                         "or group must be specified")])
        who = User(user, list(groups), str(spec.get("uid") or ""))
    target = _attributes(spec, kind, namespace)
    decision = await authorizer.check(who, _verb(spec), target)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return _answer(body, kind, AUTHZ, status)


async def rules_review(state: RBACState, body: dict[str, Any], me: User) -> dict[str, Any]:
    spec = body.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("namespace", ""), str):
        raise errors.invalid("SelfSubjectRulesReview", AUTHZ, "", [invalid("spec.namespace", spec, "must be a string")])
    ns = spec.get("namespace") or None
    resource_rules, url_rules = [], []
    for r in await state.rules_for(me, ns):
        (url_rules if r.urls else resource_rules).append(r.to_json())
    status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": False}
    if node_of(me) is not None:  # what the node authorizer allows depends on the pods: not listable as rules
        status.update(incomplete=True, evaluationError="the node authorizer's permissions are not listed")
    return _answer(body, "SelfSubjectRulesReview", AUTHZ, status)


def self_subject_review(body: dict[str, Any], me: User) -> dict[str, Any]:
    info: dict[str, Any] = {"username": me.name, "groups": list(me.groups)}
    if me.uid:
        info["uid"] = me.uid
    if me.extra:
        info["extra"] = me.extra
    return _answer(body, "SelfSubjectReview", AUTHN, {"userInfo": info})


async def token_review(body: dict[str, Any], authenticate: TokenAuthenticator) -> dict[str, Any]:
    """Who a bearer token speaks for (what webhook authenticators and kr8s' whoami ask)."""
    spec = body.get("spec")
    token = spec.get("token") if isinstance(spec, dict) else None
    if not isinstance(token, str) or not token:
        raise errors.invalid("TokenReview", AUTHN, "", [required("spec.token")])
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.invalid("TokenReview", AUTHN, "", [invalid("spec.audiences", audiences,
                                                                "must be a list of strings")])
    user = await authenticate(token)
    if user is not None and audiences and not set(audiences) & set(API_AUDIENCES):
        user = None  # the token is the API server's, not for the audiences asked about
    out = {**body, "spec": {k: v for k, v in spec.items() if k != "token"}}  # never echo the token
    if user is None:
        return _answer(out, "TokenReview", AUTHN, {"user": {}, "error": "invalid bearer token"})
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = user.extra
    return _answer(out, "TokenReview", AUTHN, {"authenticated": True, "user": info,
                                               "audiences": list(audiences or API_AUDIENCES)})


async def serve(authorizer: Authorizer, state: RBACState, plural: str, body: Any, me: User,
                namespace: str | None, authenticate: TokenAuthenticator) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be an object")
    if plural == "selfsubjectreviews":
        return self_subject_review(body, me)
    if plural == "tokenreviews":
        return await token_review(body, authenticate)
    if plural == "selfsubjectrulesreviews":
        return await rules_review(state, body, me)
    kind = {"selfsubjectaccessreviews": "SelfSubjectAccessReview", "subjectaccessreviews": "SubjectAccessReview",
            "localsubjectaccessreviews": "LocalSubjectAccessReview"}[plural]
    return await access_review(authorizer, kind, body, me, namespace)
