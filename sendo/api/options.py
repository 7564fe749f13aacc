"""Who asks and how: the user behind a request and the options of its write, built once in
``app.py`` and handed to ``ResourceAPI``, plus the authorization step between routing and
serving (``rbac.Authorizer`` on a server; a denial is Kubernetes' 403 Status)."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from .errors import APIError


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"])
SERVER = User("system:apiserver", ["system:masters"])
# who the request being served speaks for; the server's own writes (bootstrap) are SERVER's.
# Set by the API once a request is authenticated; write guards (RBAC escalation checks,
# the node restriction) read it where only the object is passed.
_CURRENT_USER: ContextVar[User] = ContextVar("sendo_user", default=SERVER)


def current_user() -> User:
    return _CURRENT_USER.get()


def set_current_user(user: User) -> None:
    _CURRENT_USER.set(user)


@dataclass
class RequestOptions:
    """What a request asks beyond its URL and body.

    ``field_manager`` None marks the server's own writes (not recorded in managedFields);
    ``warnings`` collects the texts answered as ``Warning`` headers."""

    user: User = field(default_factory=lambda: SERVER)
    dry_run: bool = False
    field_manager: str | None = None
    field_validation: str = ""  # "", Ignore, Warn or Strict
    force: bool = False  # server-side apply only
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)  # added to the request's audit event

    @property
    def groups(self) -> list[str]:
        return self.user.groups


@dataclass
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, options: RequestOptions, verb: str, target) -> Decision: ...


class AllowAll:
    """Every authenticated user may do anything (an APIServer built without an authorizer)."""

    async def authorize(self, options: RequestOptions, verb: str, target) -> Decision:
        return Decision(True)


def forbidden(options: RequestOptions, verb: str, target, reason: str = "") -> APIError:
    """403 worded as kube-apiserver words it, so clients and people read it the same way."""
    suffix = f": {reason}" if reason else ""
    if not target.plural:  # a non-resource request (discovery, OpenAPI)
        return APIError(403, f'forbidden: User "{options.user.name}" cannot {verb} path "{target.path}"{suffix}',
                        "Forbidden", {})
    resource = target.plural + (f"/{target.sub}" if target.sub else "")
    who = (f'User "{options.user.name}" cannot {verb} resource "{resource}" in API group "{target.group}"')
    who += f' in the namespace "{target.namespace}"' if target.namespace else " at the cluster scope"
    who += suffix
    qualified = target.plural + (f".{target.group}" if target.group else "")
    head = f'{qualified} "{target.name}"' if target.name else qualified
    details = {"name": target.name, "group": target.group, "kind": target.plural}
    return APIError(403, f"{head} is forbidden: {who}", "Forbidden",
                    {k: v for k, v in details.items() if v})


def verb_of(method: str, target, watch: bool) -> str:
    """The Kubernetes authorization verb of a request (the RequestInfo rules)."""
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if target.name else "list"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
