"""The three PATCH body formats the Kubernetes API accepts, as pure functions.

* ``json_merge_patch``      application/merge-patch+json (RFC 7386)
* ``json_patch``            application/json-patch+json (RFC 6902)
* ``strategic_merge_patch`` application/strategic-merge-patch+json (Kubernetes)

All three take plain JSON-like values, never mutate their inputs and return new
objects that share nothing with them. Bad patches raise ``PatchError``; the API
layer turns it into a ``Status`` (422, or 400 when ``malformed`` is set).

Strategic merge patch follows ``k8s.io/apimachinery/pkg/util/strategicpatch``;
which lists merge and by which key comes from the ``patchStrategy`` and
``patchMergeKey`` tags of the built-in types, copied into ``KIND_SCHEMAS`` below.
"""

from __future__ import annotations

import copy
import re
import dataclasses
from typing import Any, Mapping

import orjson

__all__ = [
    "PatchError",
    "MergeList",
    "REPLACE",
    "KIND_SCHEMAS",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
]


class PatchError(Exception):
    """Bad patch. ``message`` is for a person; ``field`` names where, when known.

    ``malformed`` marks patches that are not even the right shape (the API answers
    400 Bad Request); every other PatchError is a 422 Unprocessable Entity.
    """

    def __init__(self, message: str, field: str | None = None, *, malformed: bool = False):
        super().__init__(message)
        self.message = message
        self.field = field
        self.malformed = malformed


# --------------------------------------------------------------------------- helpers


def _deepcopy(value: Any) -> Any:
    """Deep copy of JSON-like data; orjson is several times faster than copy.deepcopy."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError: huge ints, non-str keys, ...
        return copy.deepcopy(value)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON defines it: 1 == 1.0, but true != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_json_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_json_equal(x, y) for x, y in zip(a, b))
        )
    return type(a) is type(b) and a == b


def _scalar_key(value: Any) -> Any:
    """A hashable identity for a list element or merge-key value.

    Keeps true apart from 1 (Python would not); anything unhashable is keyed by
    its canonical JSON text.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (str, int, float)) or value is None:
        return value
    return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


# --------------------------------------------------------------------------- RFC 7386


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: objects merge, null deletes, all else replaces."""
    if not isinstance(patch, dict):
        return _deepcopy(patch)
    result = _deepcopy(target) if isinstance(target, dict) else {}
    _merge_patch_into(result, patch)
    return result


def _merge_patch_into(target: dict, patch: dict) -> None:
    """RFC 7386 in place on ``target`` (our own copy); values taken from ``patch`` are copied."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = target[key] = {}
            _merge_patch_into(current, value)
        else:
            target[key] = _deepcopy(value)


# --------------------------------------------------------------------------- RFC 6902

_BAD_ESCAPE = re.compile(r"~(?![01])")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch. All operations apply, or none (we work on a copy)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a JSON array of operations", malformed=True)
    doc = _deepcopy(target)
    for number, operation in enumerate(operations):
        doc = _apply_operation(doc, operation, number)
    return doc


class _Op:
    """One operation being applied: knows how to describe itself in errors."""

    def __init__(self, operation: Any, number: int):
        if not isinstance(operation, dict):
            raise PatchError(
                f"JSON patch operation {number} is not a JSON object", malformed=True
            )
        self.raw = operation
        self.number = number
        self.name = operation.get("op")
        self.path = operation.get("path")

    def fail(self, reason: str) -> PatchError:
        where = orjson.dumps(self.path).decode() if self.path is not None else "(no path)"
        return PatchError(
            f"JSON patch operation {self.number} ({self.name} {where}): {reason}",
            field=self.path if isinstance(self.path, str) else None,
        )

    def member(self, name: str) -> Any:
        if name not in self.raw:
            raise self.fail(f'the operation needs a "{name}" member')
        return self.raw[name]

    def pointer(self, name: str) -> list[str]:
        """Parse the JSON pointer held in member ``name`` (RFC 6901) into tokens."""
        text = self.member(name)
        if not isinstance(text, str):
            raise self.fail(f'"{name}" must be a string holding a JSON pointer')
        if text == "":
            return []
        if not text.startswith("/"):
            raise self.fail(f'"{name}" must be empty or start with "/"')
        tokens = text[1:].split("/")
        for token in tokens:
            if _BAD_ESCAPE.search(token):
                raise self.fail(f'in "{name}", "~" must be followed by 0 or 1')
        return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _apply_operation(doc: Any, operation: Any, number: int) -> Any:
    """Apply one operation to ``doc`` (ours to mutate) and return the new document."""
    op = _Op(operation, number)
    if op.name == "add":
        return _add(doc, op.pointer("path"), _deepcopy(op.member("value")), op)
    if op.name == "remove":
        path = op.pointer("path")
        if not path:
            raise op.fail("cannot remove the whole document")
        _remove(doc, path, op)
        return doc
    if op.name == "replace":
        path = op.pointer("path")
        value = _deepcopy(op.member("value"))
        if not path:
            return value
        parent, token = _parent(doc, path, op)
        _check_exists(parent, token, path, op)
        if isinstance(parent, list):
            parent[_array_index(token, len(parent), op, path)] = value
        else:
            parent[token] = value
        return doc
    if op.name == "move":
        source, path = op.pointer("from"), op.pointer("path")
        if source == path:
            _get(doc, source, op)  # must still exist
            return doc
        if path[: len(source)] == source:
            raise op.fail("cannot move a value into one of its own children")
        return _add(doc, path, _remove(doc, source, op), op)
    if op.name == "copy":
        value = _deepcopy(_get(doc, op.pointer("from"), op))
        return _add(doc, op.pointer("path"), value, op)
    if op.name == "test":
        path = op.pointer("path")
        expected = op.member("value")
        if not _json_equal(_get(doc, path, op), expected):
            raise op.fail(f"test failed: the value is not {orjson.dumps(expected).decode()}")
        return doc
    if "op" not in operation:
        raise op.fail('the operation needs an "op" member')
    raise op.fail(
        f"unknown op {op.name!r}; expected add, remove, replace, move, copy or test"
    )


def _pointer_text(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _array_index(token: str, length: int, op: _Op, path: list[str], *, end_ok: bool = False) -> int:
    """Turn a pointer token into a list index; "-" means one past the end (add only)."""
    if token == "-" and end_ok:
        return length
    if not _ARRAY_INDEX.fullmatch(token):
        raise op.fail(f'"{_pointer_text(path)}": {token!r} is not an array index')
    index = int(token)
    if index > length or (index == length and not end_ok):
        raise op.fail(
            f'"{_pointer_text(path)}": index {index} is out of range (array length {length})'
        )
    return index


def _get(doc: Any, path: list[str], op: _Op) -> Any:
    """The value at ``path``; a PatchError names the first missing step."""
    node = doc
    for depth, token in enumerate(path):
        here = path[: depth + 1]
        if isinstance(node, dict):
            if token not in node:
                raise op.fail(f'"{_pointer_text(here)}" does not exist')
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), op, here)]
        else:
            raise op.fail(
                f'"{_pointer_text(here)}" does not exist: its parent is not an object or array'
            )
    return node


def _parent(doc: Any, path: list[str], op: _Op) -> tuple[Any, str]:
    """The container holding the last token of a non-empty ``path``, and that token."""
    parent = _get(doc, path[:-1], op)
    if not isinstance(parent, (dict, list)):
        raise op.fail(f'"{_pointer_text(path[:-1])}" is not an object or array')
    return parent, path[-1]


def _check_exists(parent: Any, token: str, path: list[str], op: _Op) -> None:
    if isinstance(parent, dict) and token not in parent:
        raise op.fail(f'"{_pointer_text(path)}" does not exist')


def _add(doc: Any, path: list[str], value: Any, op: _Op) -> Any:
    if not path:
        return value
    parent, token = _parent(doc, path, op)
    if isinstance(parent, list):
        parent.insert(_array_index(token, len(parent), op, path, end_ok=True), value)
    else:
        parent[token] = value
    return doc


def _remove(doc: Any, path: list[str], op: _Op) -> Any:
    parent, token = _parent(doc, path, op)
    if isinstance(parent, list):
        return parent.pop(_array_index(token, len(parent), op, path))
    _check_exists(parent, token, path, op)
    return parent.pop(token)


# --------------------------------------------------------------------------- SMP schema


@dataclasses.dataclass(frozen=True)
class MergeList:
    """A list field with ``patchStrategy=merge``: patched element by element.

    ``key`` is the ``patchMergeKey`` for lists of objects; ``None`` for a list of
    primitives, which merges as an ordered set. ``item`` is the schema of each element.
    """

    key: str | None = None
    item: Mapping[str, Any] = dataclasses.field(default_factory=dict)


REPLACE = "replace"
"""Schema marker for an object field with ``patchStrategy=replace``: never merged."""

# A schema maps a field name to a nested schema (an object), a MergeList or REPLACE.
# Fields not named are merged if objects and replaced if lists or scalars.

OBJECT_META = {"finalizers": MergeList(), "ownerReferences": MergeList("uid")}

CONTAINER = {
    "ports": MergeList("containerPort"),
    "env": MergeList("name"),
    "volumeMounts": MergeList("mountPath"),
    "volumeDevices": MergeList("devicePath"),
    # resizePolicy is +listType=atomic upstream (no patch strategy): replaced.
}

POD_SPEC = {
    "containers": MergeList("name", CONTAINER),
    "initContainers": MergeList("name", CONTAINER),
    "ephemeralContainers": MergeList("name", CONTAINER),
    "volumes": MergeList("name"),
    "imagePullSecrets": MergeList("name"),
    "hostAliases": MergeList("ip"),
    "topologySpreadConstraints": MergeList("topologyKey"),
    "schedulingGates": MergeList("name"),
    "resourceClaims": MergeList("name"),
    "evictionResponders": MergeList("name"),
    # tolerations, readinessGates, ... carry no patch strategy: replaced.
}

POD_STATUS = {
    "conditions": MergeList("type"),
    "hostIPs": MergeList("ip"),
    "podIPs": MergeList("ip"),
    "resourceClaimStatuses": MergeList("name"),
    # containerStatuses & co. are atomic upstream: replaced.
}

POD_TEMPLATE_SPEC = {"metadata": OBJECT_META, "spec": POD_SPEC}
CONDITIONS_STATUS = {"status": {"conditions": MergeList("type")}}


def _workload(spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Schema of a controller kind: a pod template under spec, conditions under status."""
    return {
        "metadata": OBJECT_META,
        "spec": {"template": POD_TEMPLATE_SPEC, **(spec or {})},
        **CONDITIONS_STATUS,
    }


JOB_SPEC = {
    "template": POD_TEMPLATE_SPEC,
    "scheduling": {"resourceClaims": MergeList("name")},
}

_METADATA_ONLY = (
    "ConfigMap", "Secret", "Event", "Lease", "Endpoints", "EndpointSlice", "LimitRange",
    "ResourceQuota", "PersistentVolume", "Role", "RoleBinding", "ClusterRole",
    "ClusterRoleBinding", "Ingress", "IngressClass", "NetworkPolicy", "StorageClass",
    "PriorityClass", "RuntimeClass", "CustomResourceDefinition", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ControllerRevision", "CertificateSigningRequest",
)

KIND_SCHEMAS: dict[str, Mapping[str, Any]] = {
    **{kind: {"metadata": OBJECT_META} for kind in _METADATA_ONLY},
    "Pod": {"metadata": OBJECT_META, "spec": POD_SPEC, "status": POD_STATUS},
    "PodTemplate": {"metadata": OBJECT_META, "template": POD_TEMPLATE_SPEC},
    "ReplicationController": _workload(),
    "ReplicaSet": _workload(),
    "Deployment": _workload(),
    "StatefulSet": _workload(),
    "DaemonSet": _workload(),
    "Job": {"metadata": OBJECT_META, "spec": JOB_SPEC, **CONDITIONS_STATUS},
    "CronJob": {
        "metadata": OBJECT_META,
        "spec": {"jobTemplate": {"metadata": OBJECT_META, "spec": JOB_SPEC}},
    },
    "Service": {
        "metadata": OBJECT_META,
        "spec": {"ports": MergeList("port")},
        **CONDITIONS_STATUS,
    },
    "Node": {
        "metadata": OBJECT_META,
        "spec": {"podCIDRs": MergeList()},  # taints are atomic upstream
        "status": {"conditions": MergeList("type"), "addresses": MergeList("type")},
    },
    "Namespace": {"metadata": OBJECT_META, **CONDITIONS_STATUS},
    "ServiceAccount": {"metadata": OBJECT_META, "secrets": MergeList("name")},
    "PersistentVolumeClaim": {"metadata": OBJECT_META, **CONDITIONS_STATUS},
    "HorizontalPodAutoscaler": {"metadata": OBJECT_META, **CONDITIONS_STATUS},
    "PodDisruptionBudget": {
        "metadata": OBJECT_META,
        "spec": {"selector": REPLACE},
        **CONDITIONS_STATUS,
    },
}
"""Per kind, which fields strategic merge patch merges rather than replaces."""


# --------------------------------------------------------------------------- SMP engine

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_DELETE = object()  # what merging a map returns when the patch says "$patch: delete"


def strategic_merge_patch(target: dict, patch: dict, kind: str) -> dict:
    """Apply a Kubernetes strategic merge patch to an object of ``kind``.

    Unknown kinds get an empty schema: objects merge, null deletes, lists are replaced
    (what JSON merge patch does); directives are still honoured and never stored.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", malformed=True)
    schema = KIND_SCHEMAS.get(kind, {})
    original = _deepcopy(target) if isinstance(target, dict) else {}
    result = _merge_map(original, _deepcopy(patch), schema, "")
    return {} if result is _DELETE else result


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _merge_map(original: dict, patch: dict, schema: Mapping[str, Any], path: str) -> Any:
    """Merge ``patch`` into ``original`` (both ours to mutate); may return _DELETE."""
    if _PATCH in patch:
        directive = patch.pop(_PATCH)
        if directive == "delete":
            return _DELETE
        if directive == "replace":
            return _merge_map({}, patch, schema, path)
        if directive != "merge":
            raise PatchError(
                f"{path or 'the patch'}: unknown $patch directive {directive!r}; "
                "expected replace, merge or delete",
                field=path or None,
            )
    if _RETAIN_KEYS in patch:
        original = _retain_keys(original, patch, path)
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        _set_element_order(original, patch, key, schema, path)

    deletions = []
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            deletions.append((key, value))
        elif value is None:
            original.pop(key, None)
        elif key in original and original[key] is not None:
            _merge_field(original, key, value, schema.get(key), _join(path, key))
        else:
            _put(original, key, _fresh(value, schema.get(key), _join(path, key)))
    # Deletions run last so that one patch can both add to and remove from a set.
    for key, value in deletions:
        _delete_from_list(original, key, value, path)
    return original


def _put(target: dict, key: str, value: Any) -> None:
    if value is _DELETE:
        target.pop(key, None)
    else:
        target[key] = value


def _merge_field(original: dict, key: str, value: Any, spec: Any, path: str) -> None:
    """Merge one field present on both sides, by the kinds of value and the schema."""
    current = original[key]
    if isinstance(current, dict) and isinstance(value, dict) and spec != REPLACE:
        _put(original, key, _merge_map(current, value, spec if isinstance(spec, dict) else {}, path))
    elif isinstance(current, list) and isinstance(value, list) and isinstance(spec, MergeList):
        original[key] = _merge_list(current, value, spec, path)
    else:
        _put(original, key, _fresh(value, spec, path))


def _fresh(value: Any, spec: Any, path: str) -> Any:
    """A patch value landing where nothing can merge with it: processed against nothing.

    This strips directives and nulls the way merging into an empty value would.
    """
    if isinstance(value, dict):
        return _merge_map({}, value, spec if isinstance(spec, dict) else {}, path)
    if isinstance(value, list):
        if isinstance(spec, MergeList):
            return _merge_list([], value, spec, path)
        return _atomic_list(value)
    return value


def _atomic_list(items: list) -> list:
    """A list that replaces wholesale: drop "$patch" marker elements, strip directive keys."""
    return [
        _strip_directives(item)
        for item in items
        if not (isinstance(item, dict) and _PATCH in item)
    ]


def _is_directive(key: str) -> bool:
    return key in (_PATCH, _RETAIN_KEYS) or key.startswith((_SET_ORDER, _DELETE_FROM))


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return _atomic_list(value)
    return value


def _retain_keys(original: dict, patch: dict, path: str) -> dict:
    """``$retainKeys``: clear every field of ``original`` the list does not name.

    Used for union types (a Deployment's strategy, a volume's source) so that
    switching member also clears the old one.
    """
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise PatchError(f"{path or 'the patch'}: $retainKeys must be a list of field names",
                         field=path or None, malformed=True)
    allowed = set(keep)
    for key, value in patch.items():
        if value is not None and not _is_directive(key) and key not in allowed:
            raise PatchError(
                f"{_join(path, key)}: the patch sets this field but $retainKeys does not list it",
                field=_join(path, key),
            )
    return {k: v for k, v in original.items() if k in allowed}


def _delete_from_list(original: dict, key: str, values: Any, path: str) -> None:
    """``$deleteFromPrimitiveList/<field>``: remove every occurrence of the values."""
    name = key[len(_DELETE_FROM):]
    if not name or not isinstance(values, list):
        raise PatchError(f"{_join(path, key)}: must name a field and hold a list of values",
                         field=_join(path, key), malformed=True)
    current = original.get(name)
    if isinstance(current, list):
        doomed = {_scalar_key(v) for v in values}
        original[name] = [v for v in current if _scalar_key(v) not in doomed]


# --------------------------------------------------------------------------- merge lists


def _element_key(item: Any, key: str | None) -> Any:
    """What identifies a list element: its merge key's value, or itself for primitives."""
    if key is None:
        return _scalar_key(item)
    return _scalar_key(item.get(key)) if isinstance(item, dict) else _scalar_key(item)


def _merge_list(original: list, patch: list, spec: MergeList, path: str) -> list:
    """Merge a ``patchStrategy=merge`` list and put it in Kubernetes' order."""
    plain, deleted, replace = _split_list_directives(patch, spec, path)
    if replace:
        return _merge_list([], plain, spec, path)
    if spec.key is None:
        merged = _union(original, plain)
    else:
        merged = _merge_by_key(original, plain, deleted, spec, path)
    patch_order = [_element_key(p, spec.key) for p in plain]
    return _order(merged, patch_order, original, spec.key)


def _split_list_directives(patch: list, spec: MergeList, path: str) -> tuple[list, set, bool]:
    """Separate ``$patch`` elements from data: returns (data, merge keys to delete, replace?)."""
    plain, deleted, replace = [], set(), False
    for item in patch:
        if not (isinstance(item, dict) and _PATCH in item):
            if spec.key is not None and not (isinstance(item, dict) and spec.key in item):
                raise PatchError(
                    f"{path}: every element must be an object with the merge key {spec.key!r}",
                    field=path,
                )
            plain.append(item)
            continue
        directive = item[_PATCH]
        if directive == "replace":
            replace = True
        elif directive == "delete":
            if spec.key is None:
                raise PatchError(
                    f"{path}: use $deleteFromPrimitiveList/<field> to remove values "
                    "from a list of primitives",
                    field=path,
                )
            if spec.key not in item:
                raise PatchError(
                    f"{path}: a '$patch: delete' element must carry the merge key {spec.key!r}",
                    field=path,
                )
            deleted.add(_scalar_key(item[spec.key]))
        elif directive != "merge":
            raise PatchError(
                f"{path}: unknown $patch directive {directive!r}; expected replace, merge or delete",
                field=path,
            )
    return plain, deleted, replace


def _union(original: list, additions: list) -> list:
    """Set union for primitive lists, keeping first occurrences."""
    seen, out = set(), []
    for item in (*original, *additions):
        k = _scalar_key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _merge_by_key(original: list, patch: list, deleted: set, spec: MergeList, path: str) -> list:
    """Drop deleted elements, merge patch elements into the first element with the same key."""
    key = spec.key
    merged = [o for o in original if _element_key(o, key) not in deleted]
    index = {}
    for i, item in enumerate(merged):
        index.setdefault(_element_key(item, key), i)
    for item in patch:
        k = _element_key(item, key)
        where = f"{path}[{key}={item[key]}]"
        if k in index and isinstance(merged[index[k]], dict):
            merged[index[k]] = _merge_map(merged[index[k]], item, spec.item, where)
        else:
            index[k] = len(merged)
            merged.append(_merge_map({}, item, spec.item, where))
    return merged


def _order(merged: list, wanted: list, live: list, key: str | None) -> list:
    """Kubernetes' list order after a merge.

    Elements named in ``wanted`` (the patch list, or a $setElementOrder list) take
    that relative order; the others keep their live order. The two runs are then
    interleaved: a live-only element goes first only when both it and the next
    wanted element were already in the live list and it came earlier there. So
    brand-new elements land before the live-only elements that follow them, which
    is what the Kubernetes API server does (``kubectl patch`` adds a container at
    the front of the list).
    """
    rank = {}
    for i, k in enumerate(wanted):
        rank.setdefault(k, i)
    live_pos = {}
    for i, item in enumerate(live):
        live_pos.setdefault(_element_key(item, key), i)

    named, others = [], []
    for item in merged:
        k = _element_key(item, key)
        (named if k in rank else others).append((k, item))
    named.sort(key=lambda pair: rank[pair[0]])  # stable: duplicates keep their order

    out, i, j = [], 0, 0
    while i < len(others) and j < len(named):
        mine, theirs = live_pos.get(others[i][0]), live_pos.get(named[j][0])
        if mine is not None and theirs is not None and mine < theirs:
            out.append(others[i][1])
            i += 1
        else:
            out.append(named[j][1])
            j += 1
    out.extend(item for _, item in others[i:])
    out.extend(item for _, item in named[j:])
    return out


def _set_element_order(original: dict, patch: dict, directive: str, schema: Mapping[str, Any], path: str) -> None:
    """``$setElementOrder/<field>``: merge that field now and impose the given order.

    The field's patch list is consumed here so the main loop does not merge it twice.
    """
    order = patch.pop(directive)
    name = directive[len(_SET_ORDER):]
    where = _join(path, name)
    if not name or not isinstance(order, list):
        raise PatchError(f"{_join(path, directive)}: must name a field and hold a list",
                         field=where, malformed=True)
    spec = schema.get(name)
    if not isinstance(spec, MergeList):
        return  # only merge lists have an order to keep; others are replaced as sent
    live = original.get(name)
    live = live if isinstance(live, list) else None
    incoming = patch.get(name)
    if incoming is not None and not isinstance(incoming, list):
        return  # not a list: the main loop replaces the field as sent
    if live is None and incoming is None:
        return
    order_keys = [_order_entry_key(entry, spec.key, where) for entry in order]
    if incoming is not None:
        _check_order(incoming, order_keys, spec, where)
        patch.pop(name)
        merged = _merge_list(live or [], incoming, spec, where)
    else:
        merged = live
    original[name] = _order(merged, order_keys, live or [], spec.key)


def _order_entry_key(entry: Any, key: str | None, path: str) -> Any:
    if key is None:
        return _scalar_key(entry)
    if not isinstance(entry, dict) or key not in entry:
        raise PatchError(f"{path}: each $setElementOrder entry must be an object with {key!r}",
                         field=path, malformed=True)
    return _scalar_key(entry[key])


def _check_order(incoming: list, order_keys: list, spec: MergeList, path: str) -> None:
    """The patch list must be a subsequence of $setElementOrder (deletions aside)."""
    rank = {k: i for i, k in reversed(list(enumerate(order_keys)))}
    last = -1
    for item in incoming:
        if isinstance(item, dict) and _PATCH in item:
            continue
        position = rank.get(_element_key(item, spec.key))
        if position is None or position < last:
            raise PatchError(
                f"{path}: the patch list does not match its $setElementOrder list "
                "(every element must appear there, in the same relative order)",
                field=path,
            )
        last = position
