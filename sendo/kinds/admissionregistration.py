"""admissionregistration.k8s.io/v1 kinds: ValidatingWebhookConfiguration and
MutatingWebhookConfiguration (cluster-scoped).

Defaults and validation follow Kubernetes' (pkg/apis/admissionregistration): each webhook has
a fully qualified name unique in its configuration, rules naming operations, groups,
versions and resources, exactly one of ``clientConfig.url`` (https) or
``clientConfig.service``, ``sideEffects`` None or NoneOnDryRun, and ``admissionReviewVersions``
that include v1 (the only version sendo speaks). The API server calls them (api/webhooks.py).
"""
from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, duplicate, forbidden, required, set_default
from .printing import age_column, as_dict, name_column, name_of, object_age
from .validation import (NoStatus, check_enum, check_int, get, invalid_value, is_dns1123_label,
                         is_dns1123_subdomain, type_invalid, validate_label_selector)

GROUP = "admissionregistration.k8s.io"
OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
SCOPES = ["*", "Cluster", "Namespaced"]
FAILURE_POLICIES = ["Fail", "Ignore"]
MATCH_POLICIES = ["Equivalent", "Exact"]
SIDE_EFFECTS = ["None", "NoneOnDryRun"]  # v1 refuses Some and Unknown
REINVOCATION_POLICIES = ["IfNeeded", "Never"]
DEFAULT_TIMEOUT = 10


def default_webhook(hook: Any, mutating: bool) -> None:
    if not isinstance(hook, dict):
        return
    set_default(hook, "failurePolicy", "Fail")
    set_default(hook, "matchPolicy", "Equivalent")
    set_default(hook, "namespaceSelector", {})
    set_default(hook, "objectSelector", {})
    set_default(hook, "timeoutSeconds", DEFAULT_TIMEOUT)
    if mutating:
        set_default(hook, "reinvocationPolicy", "Never")
    for rule in hook.get("rules") or []:
        set_default(rule, "scope", "*")
    service = as_dict(hook.get("clientConfig")).get("service")
    if isinstance(service, dict):
        set_default(service, "port", 443)


def _check_star_list(rule: dict, key: str, path: str, causes: list[Cause], allowed: list[str] | None = None) -> None:
    """A required list of strings; ``*`` stands alone; no empty or repeated items."""
    values = get(rule, key, path, list, causes)
    if not values:
        causes.append(required(path))
        return
    seen: set[str] = set()
    for i, v in enumerate(values):
        p = f"{path}[{i}]"
        if not isinstance(v, str):
            causes.append(type_invalid(p, v, str))
            continue
        if key == "apiVersions" and v == "":
            causes.append(required(p))
        if allowed is not None:
            check_enum(v, p, allowed, causes)
        if v in seen:
            causes.append(duplicate(p, v))
        seen.add(v)
    if "*" in seen and len(values) > 1:
        causes.append(invalid_value(path, values, "if '*' is present, must not specify other values"))


def _check_resources(rule: dict, path: str, causes: list[Cause]) -> None:
    values = get(rule, "resources", path, list, causes)
    if not values:
        causes.append(required(path))
        return
    plain, subs = set(), set()
    for i, v in enumerate(values):
        p = f"{path}[{i}]"
        if not isinstance(v, str):
            causes.append(type_invalid(p, v, str))
            continue
        if v == "":
            causes.append(required(p))
            continue
        if v in plain or v in subs:
            causes.append(duplicate(p, v))
        res, _, sub = v.partition("/")
        if "/" in sub or not res or ("/" in v and not sub):
            causes.append(invalid_value(p, v, "must be a resource or resource/subresource"))
        (subs if "/" in v else plain).add(v)
    if "*" in plain and len(plain) > 1:
        causes.append(invalid_value(path, values, "if '*' is present, must not specify other resources without subresources"))
    if "*/*" in subs and (len(subs) > 1 or plain):
        causes.append(invalid_value(path, values, "if '*/*' is present, must not specify other resources"))


def _check_rule(rule: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(rule, dict):
        causes.append(type_invalid(path, rule, dict))
        return
    _check_star_list(rule, "operations", f"{path}.operations", causes, OPERATIONS)
    _check_star_list(rule, "apiGroups", f"{path}.apiGroups", causes)
    _check_star_list(rule, "apiVersions", f"{path}.apiVersions", causes)
    _check_resources(rule, f"{path}.resources", causes)
    check_enum(rule.get("scope"), f"{path}.scope", SCOPES, causes, optional=True)


def _check_client_config(cc: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(cc, dict):
        causes.append(required(path) if cc is None else type_invalid(path, cc, dict))
        return
    url, service = cc.get("url"), cc.get("service")
    if (url is None) == (service is None):
        causes.append(required_one(path))
    if url is not None:
        _check_url(url, f"{path}.url", causes)
    if service is not None:
        _check_service(service, f"{path}.service", causes)
    bundle = cc.get("caBundle")
    if bundle is not None:
        if not isinstance(bundle, str):
            causes.append(type_invalid(f"{path}.caBundle", bundle, str))
        else:
            try:
                base64.b64decode(bundle, validate=True)
            except (binascii.Error, ValueError):
                causes.append(invalid_value(f"{path}.caBundle", "<bytes>", "must be base64 encoded"))


def required_one(path: str) -> Cause:
    return Cause(path, "Required value: exactly one of url or service is required", "FieldValueRequired")


def _check_url(url: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(url, str):
        causes.append(type_invalid(path, url, str))
        return
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https":
        causes.append(invalid_value(path, url, "'https' is the only allowed URL scheme"))
    if not u.hostname:
        causes.append(invalid_value(path, url, "host must be specified"))
    if u.username or u.password:
        causes.append(invalid_value(path, url, "user information is not permitted in the URL"))
    if u.fragment or url.endswith("#"):
        causes.append(invalid_value(path, url, "fragments are not permitted in the URL"))
    if u.query or "?" in url:
        causes.append(invalid_value(path, url, "query parameters are not permitted in the URL"))


def _check_service(svc: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(svc, dict):
        causes.append(type_invalid(path, svc, dict))
        return
    for key, check in (("namespace", is_dns1123_label), ("name", is_dns1123_label)):
        v = svc.get(key)
        if not v:
            causes.append(required(f"{path}.{key}"))
        elif not isinstance(v, str):
            causes.append(type_invalid(f"{path}.{key}", v, str))
        else:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in check(v)]
    check_int(svc, "port", f"{path}.port", causes, minimum=1, maximum=65535)
    p = svc.get("path")
    if p is not None:
        if not isinstance(p, str):
            causes.append(type_invalid(f"{path}.path", p, str))
        elif not p.startswith("/"):
            causes.append(invalid_value(f"{path}.path", p, "must start with a '/'"))
        elif "?" in p or "#" in p or any(not s and i < len(p.split("/")) - 1 for i, s in enumerate(p.split("/")[1:])):
            causes.append(invalid_value(f"{path}.path", p, "must be a clean path: no empty segments, query or fragment"))


def validate_webhook(hook: Any, path: str, mutating: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(hook, dict):
        return [type_invalid(path, hook, dict)]
    name = hook.get("name")
    if not name:
        causes.append(required(f"{path}.name"))
    elif not isinstance(name, str):
        causes.append(type_invalid(f"{path}.name", name, str))
    else:
        causes += [invalid_value(f"{path}.name", name, m) for m in is_dns1123_subdomain(name)]
        if name.count(".") < 2:
            causes.append(invalid_value(f"{path}.name", name, "should be a domain with at least three segments "
                                                               "separated by dots"))
    for i, rule in enumerate(get(hook, "rules", f"{path}.rules", list, causes) or []):
        _check_rule(rule, f"{path}.rules[{i}]", causes)
    _check_client_config(hook.get("clientConfig"), f"{path}.clientConfig", causes)
    check_enum(hook.get("sideEffects"), f"{path}.sideEffects", SIDE_EFFECTS, causes)
    versions = get(hook, "admissionReviewVersions", f"{path}.admissionReviewVersions", list, causes)
    if not versions:
        causes.append(required(f"{path}.admissionReviewVersions"))
    elif "v1" not in versions:
        causes.append(invalid_value(f"{path}.admissionReviewVersions", versions,
                                    'must include at least one of v1 (the version sendo sends)'))
    check_enum(hook.get("failurePolicy"), f"{path}.failurePolicy", FAILURE_POLICIES, causes, optional=True)
    check_enum(hook.get("matchPolicy"), f"{path}.matchPolicy", MATCH_POLICIES, causes, optional=True)
    check_int(hook, "timeoutSeconds", f"{path}.timeoutSeconds", causes, minimum=1, maximum=30)
    if mutating:
        check_enum(hook.get("reinvocationPolicy"), f"{path}.reinvocationPolicy", REINVOCATION_POLICIES, causes,
                   optional=True)
    elif hook.get("reinvocationPolicy") is not None:
        causes.append(forbidden(f"{path}.reinvocationPolicy", "only mutating webhooks are reinvoked"))
    for key in ("namespaceSelector", "objectSelector"):
        causes += validate_label_selector(hook.get(key), f"{path}.{key}")
    if hook.get("matchConditions"):
        causes.append(forbidden(f"{path}.matchConditions", "CEL match conditions are not supported by sendo"))
    return causes


class WebhookConfigurationStrategy(NoStatus):
    def __init__(self, mutating: bool):
        self.mutating = mutating

    def default(self, obj: Obj) -> None:
        hooks = obj.get("webhooks")
        for hook in hooks if isinstance(hooks, list) else []:
            default_webhook(hook, self.mutating)

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        seen: set[str] = set()
        for i, hook in enumerate(get(obj, "webhooks", "webhooks", list, causes) or []):
            causes += validate_webhook(hook, f"webhooks[{i}]", self.mutating)
            name = hook.get("name") if isinstance(hook, dict) else None
            if isinstance(name, str) and name:
                if name in seen:
                    causes.append(duplicate(f"webhooks[{i}].name", name))
                seen.add(name)
        return causes


def _row(obj: Obj) -> list[Any]:
    hooks = obj.get("webhooks")
    return [name_of(obj), len(hooks) if isinstance(hooks, list) else 0, object_age(obj)]


PRINTER = Printer(
    columns=[name_column(), Column("Webhooks", type="integer", description="Webhooks in the configuration."),
             age_column()],
    row=_row,
)

RESOURCES = [
    Resource(GROUP, "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", False,
             categories=["api-extensions"], strategy=WebhookConfigurationStrategy(False), printer=PRINTER),
    Resource(GROUP, "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", False,
             categories=["api-extensions"], strategy=WebhookConfigurationStrategy(True), printer=PRINTER),
]


def webhooks_of(obj: Obj) -> list[Obj]:
    """The webhooks of a stored configuration (a configuration that cannot be read has none)."""
    return [h for h in as_dict(obj).get("webhooks") or [] if isinstance(h, dict)]
