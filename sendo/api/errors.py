"""API errors, always answered as a Kubernetes Status object a client can act on."""
from __future__ import annotations

from typing import Any

from ..kinds.base import Cause

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
           413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class APIError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        """The Status body, field for field in the order kube-apiserver writes it."""
        s: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": self.message, "reason": self.reason}
        if self.details is not None:
            s["details"] = self.details
        s["code"] = self.code
        return s


def _details(name: str, group: str, plural: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        d["group"] = group
    return d


def not_found(group_resource: str, name: str, group: str = "", plural: str = "") -> APIError:
    return APIError(404, f'{group_resource} "{name}" not found', "NotFound",
                    _details(name, group, plural or group_resource.split(".")[0]))


def already_exists(group_resource: str, name: str, group: str = "", plural: str = "") -> APIError:
    return APIError(409, f'{group_resource} "{name}" already exists', "AlreadyExists",
                    _details(name, group, plural or group_resource.split(".")[0]))


def conflict(group_resource: str, name: str, why: str | None = None, group: str = "", plural: str = "") -> APIError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return APIError(409, f'Operation cannot be fulfilled on {group_resource} "{name}": {why}', "Conflict",
                    _details(name, group, plural or group_resource.split(".")[0]))


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> APIError:
    """422 Invalid naming each field at fault, worded like Kubernetes."""
    qualified = f"{kind}.{group}" if group else kind
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = {"name": name, "group": group, "kind": kind,
               "causes": [_omit_empty({"reason": c.reason, "message": c.message, "field": c.field})
                          for c in causes]}
    return APIError(422, f'{qualified} "{name}" is invalid: {joined}', "Invalid", _omit_empty(details))


def _omit_empty(d: dict[str, Any]) -> dict[str, Any]:
    """Status fields are `omitempty` in Kubernetes: an empty name or field is left out."""
    return {k: v for k, v in d.items() if v not in ("", None)}


def bad_request(message: str) -> APIError:
    return APIError(400, message, "BadRequest")


def gone(message: str) -> APIError:
    return APIError(410, message, "Expired")


def no_route() -> APIError:
    """A URL that names no resource: kube-apiserver's 404 (empty details)."""
    return APIError(404, "the server could not find the requested resource", "NotFound", {})


_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def method_not_supported(r, method: str, sub: str | None = None) -> APIError:
    """405 as Kubernetes words it: `create is not supported on resources of kind "pods/log"`."""
    resource = r.plural + (f"/{sub}" if sub else "")
    qualified = resource + (f".{r.group}" if r.group else "")
    details = {"group": r.group, "kind": resource} if r.group else {"kind": resource}
    return APIError(405, f'{_VERBS.get(method, method)} is not supported on resources of kind "{qualified}"',
                    "MethodNotAllowed", details)


def too_large_resource_version(requested: int, current: int) -> APIError:
    """A resourceVersion the store has not reached: 504 with the cause client-go's reflector
    recognises (it lists again), as kube-apiserver answers."""
    return APIError(504, f"Timeout: Too large resource version: {requested}, current: {current}", "Timeout",
                    {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})
