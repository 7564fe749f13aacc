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
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
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
               "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes]}
    if not group:
        details.pop("group")
    return APIError(422, f'{qualified} "{name}" is invalid: {joined}', "Invalid", details)


def bad_request(message: str) -> APIError:
    return APIError(400, message, "BadRequest")


def gone(message: str) -> APIError:
    return APIError(410, message, "Expired")
