"""rbac.authorization.k8s.io/v1 (Role, ClusterRole, RoleBinding, ClusterRoleBinding) and the
review kinds of authorization.k8s.io/v1 and authentication.k8s.io/v1, which are only ever
created (answered by the API server, never stored).

Validation follows Kubernetes' ``ValidatePolicyRule`` and ``ValidateRoleBinding``: every
rule needs verbs; a resource rule needs apiGroups and resources; a Role (namespaced) may
not name nonResourceURLs; a rule is about resources or about URLs, never both; a
binding's roleRef is immutable."""
from __future__ import annotations

from typing import Any, Iterable

import orjson

from .base import Cause, Column, Obj, Printer, Resource, required, unsupported
from .meta import selector_matches
from .printing import as_dict, dicts, name_column, name_of, object_age
from .validation import (
    KindStrategy,
    check_name,
    get,
    invalid_value,
    is_dns1123_subdomain,
    type_invalid,
    validate_label_selector,
)

GROUP = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    """A PolicyRule on resources."""
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def url_rule(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    """A PolicyRule on non-resource URLs."""
    return {"nonResourceURLs": urls, "verbs": verbs}
SUBJECT_KINDS = ["ServiceAccount", "User", "Group"]


class RBACStrategy(KindStrategy):
    has_status = False
    has_spec = False


def _string_list(parent: dict, key: str, path: str, causes: list[Cause]) -> list[str]:
    items = get(parent, key, path, list, causes) or []
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
        else:
            causes.append(type_invalid(f"{path}[{i}]", item, str))
    return out


def validate_rule(rule: Any, path: str, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(rule, dict):
        return [type_invalid(path, rule, dict)]
    verbs = _string_list(rule, "verbs", f"{path}.verbs", causes)
    groups = _string_list(rule, "apiGroups", f"{path}.apiGroups", causes)
    resources = _string_list(rule, "resources", f"{path}.resources", causes)
    _string_list(rule, "resourceNames", f"{path}.resourceNames", causes)
    urls = _string_list(rule, "nonResourceURLs", f"{path}.nonResourceURLs", causes)
    if causes:
        return causes
    if not verbs:
        causes.append(Cause(f"{path}.verbs", "Required value: verbs must contain at least one value",
                            "FieldValueRequired"))
    if urls:
        if namespaced:
            causes.append(invalid_value(f"{path}.nonResourceURLs", urls,
                                        "namespaced rules cannot apply to non-resource URLs"))
        if groups or resources:
            causes.append(invalid_value(f"{path}.nonResourceURLs", urls,
                                        "rules cannot apply to both regular resources and non-resource URLs"))
        return causes
    if not groups:
        causes.append(Cause(f"{path}.apiGroups", "Required value: resource rules must supply at least one api "
                            "group", "FieldValueRequired"))
    if not resources:
        causes.append(Cause(f"{path}.resources", "Required value: resource rules must supply at least one "
                            "resource", "FieldValueRequired"))
    return causes


def _rules(obj: Obj, namespaced: bool, causes: list[Cause]) -> None:
    for i, rule in enumerate(get(obj, "rules", "rules", list, causes) or []):
        causes += validate_rule(rule, f"rules[{i}]", namespaced)


class RoleStrategy(RBACStrategy):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        _rules(obj, True, causes)
        return causes


class ClusterRoleStrategy(RBACStrategy):
    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        _rules(obj, False, causes)
        agg = get(obj, "aggregationRule", "aggregationRule", dict, causes)
        if agg is not None:
            selectors = get(agg, "clusterRoleSelectors", "aggregationRule.clusterRoleSelectors", list, causes)
            if selectors is not None and not selectors and not causes:
                causes.append(required("aggregationRule.clusterRoleSelectors"))
            for i, sel in enumerate(selectors or []):
                causes += validate_label_selector(sel, f"aggregationRule.clusterRoleSelectors[{i}]")
        return causes


def default_subjects(obj: Obj) -> None:
    """User and Group subjects belong to the RBAC API group (SetDefaults_Subject)."""
    for s in dicts(obj.get("subjects")):
        if s.get("apiGroup") in (None, "") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def _validate_binding(obj: Obj, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = get(obj, "roleRef", "roleRef", dict, causes)
    if ref is None and not causes:
        causes.append(required("roleRef"))
    if ref is not None:
        kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
        kind = get(ref, "kind", "roleRef.kind", str, causes)
        if kind is not None and kind not in kinds:
            causes.append(unsupported("roleRef.kind", kind, kinds))
        elif kind is None and "roleRef.kind" not in {c.field for c in causes}:
            causes.append(required("roleRef.kind"))
        group = get(ref, "apiGroup", "roleRef.apiGroup", str, causes)
        if group is not None and group != GROUP:
            causes.append(unsupported("roleRef.apiGroup", group, [GROUP]))
        elif group is None and "roleRef.apiGroup" not in {c.field for c in causes}:
            causes.append(required("roleRef.apiGroup"))
        name = get(ref, "name", "roleRef.name", str, causes)
        if not name:
            if "roleRef.name" not in {c.field for c in causes}:
                causes.append(required("roleRef.name"))
        else:
            for why in path_segment_problems(name):
                causes.append(invalid_value("roleRef.name", name, why))
    for i, s in enumerate(get(obj, "subjects", "subjects", list, causes) or []):
        causes += _validate_subject(s, f"subjects[{i}]", namespaced)
    return causes


def path_segment_problems(name: str) -> list[str]:
    """What makes ``name`` unfit as one URL path segment (the names of the RBAC kinds)."""
    if name in (".", ".."):
        return [f'may not be "{name}"']
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _validate_subject(s: Any, path: str, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(s, dict):
        return [type_invalid(path, s, dict)]
    kind = get(s, "kind", f"{path}.kind", str, causes)
    name = get(s, "name", f"{path}.name", str, causes)
    group = get(s, "apiGroup", f"{path}.apiGroup", str, causes) or ""
    ns = get(s, "namespace", f"{path}.namespace", str, causes)
    if causes:
        return causes
    if not name:
        causes.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            check_name(name, f"{path}.name", is_dns1123_subdomain, causes)
        if group:
            causes.append(unsupported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not ns:
            causes.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            causes.append(unsupported(f"{path}.apiGroup", group, [GROUP]))
    else:
        causes.append(unsupported(f"{path}.kind", kind, SUBJECT_KINDS))
    return causes


class BindingStrategy(RBACStrategy):
    def __init__(self, namespaced: bool):
        self.namespaced = namespaced

    def default(self, obj: Obj) -> None:
        default_subjects(obj)

    def validate_object(self, obj: Obj) -> list[Cause]:
        return _validate_binding(obj, self.namespaced)

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        if isinstance(obj.get("roleRef"), dict) and obj.get("roleRef") != old.get("roleRef"):
            return [invalid_value("roleRef", obj["roleRef"], "cannot change roleRef")]
        return []


def role_row(obj: Obj) -> list[Any]:
    return [name_of(obj), as_dict(obj.get("metadata")).get("creationTimestamp") or ""]


def binding_row(obj: Obj) -> list[Any]:
    ref = as_dict(obj.get("roleRef"))
    subjects = dicts(obj.get("subjects"))

    def of(kind: str) -> str:
        names = [(f"{s.get('namespace')}/" if kind == "ServiceAccount" and s.get("namespace") else "")
                 + str(s.get("name", "")) for s in subjects if s.get("kind") == kind]
        return ", ".join(names)
    return [name_of(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", object_age(obj),
            of("User"), of("Group"), of("ServiceAccount")]


ROLE_PRINTER = Printer(columns=[name_column(), Column("Created At", type="string", format="date",
                                                      description="When the role was created.")], row=role_row)
BINDING_PRINTER = Printer(columns=[
    name_column(), Column("Role", description="The role bound."),
    Column("Age", description="Time since the binding was created."),
    Column("Users", priority=1, description="Users bound."), Column("Groups", priority=1, description="Groups bound."),
    Column("ServiceAccounts", priority=1, description="ServiceAccounts bound.")], row=binding_row)


def aggregated_rules(role: dict[str, Any], roles: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of a ClusterRole with an aggregationRule: the union, in name order, of the
    rules of every other ClusterRole one of its selectors matches (the controller's sum)."""
    selectors = ((role.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
    me = (role.get("metadata") or {}).get("name")
    out: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    for other in sorted(roles, key=lambda r: (r.get("metadata") or {}).get("name", "")):
        meta = other.get("metadata") or {}
        if meta.get("name") == me or not any(isinstance(s, dict) and selector_matches(s, meta.get("labels") or {})
                                             for s in selectors):
            continue
        for rule in other.get("rules") or []:
            key = orjson.dumps(rule, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                seen.add(key)
                out.append(rule)
    return out


# ----------------------------------------------------------------- review kinds (create only)

class ReviewStrategy(KindStrategy):
    """A review is answered, not stored: the API server handles it before any of this runs."""

    has_status = True
    has_spec = True

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        get(obj, "spec", "spec", dict, causes)
        return causes


CREATE_ONLY = ["create"]
REVIEW_GROUPS = ("authorization.k8s.io", "authentication.k8s.io")


def _review(group: str, kind: str, plural: str, namespaced: bool = False) -> Resource:
    return Resource(group, "v1", kind, plural, namespaced, strategy=ReviewStrategy(), verbs=list(CREATE_ONLY))


RESOURCES = [
    Resource(GROUP, "v1", "Role", "roles", True, strategy=RoleStrategy(), printer=ROLE_PRINTER),
    Resource(GROUP, "v1", "ClusterRole", "clusterroles", False, strategy=ClusterRoleStrategy(),
             printer=ROLE_PRINTER),
    Resource(GROUP, "v1", "RoleBinding", "rolebindings", True, strategy=BindingStrategy(True),
             printer=BINDING_PRINTER),
    Resource(GROUP, "v1", "ClusterRoleBinding", "clusterrolebindings", False, strategy=BindingStrategy(False),
             printer=BINDING_PRINTER),
    _review("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews"),
    _review("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews"),
    _review("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews"),
    _review("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
    _review("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews"),
    _review("authentication.k8s.io", "TokenReview", "tokenreviews"),
]

