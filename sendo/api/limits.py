"""Bounds on what one request may make the server hold: body bytes, stored object bytes,
nesting depth and YAML alias expansion. Each refusal is a Status a person can act on,
never a 500 from a RecursionError or a server swollen by a 374-byte YAML."""
from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

import orjson
import yaml

from . import errors

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request body limit
MAX_OBJECT = 1536 * 1024  # etcd's default request limit, which bounds a Kubernetes object
MAX_DEPTH = 100  # nested objects and lists: far beyond real manifests, well within the stack and orjson (254)
ALIAS_BUDGET = 10_000  # values YAML aliases may add beyond those written out


def body_too_large(limit: int = MAX_BODY) -> errors.APIError:
    return errors.APIError(413, f"Request entity too large: limit is {limit}", "RequestEntityTooLarge")


def check_object_size(size: int, what: str) -> None:
    if size > MAX_OBJECT:
        raise errors.APIError(413, f"Request entity too large: {what} would be stored as {size} bytes; "
                              f"the limit is {MAX_OBJECT}", "RequestEntityTooLarge")


def check_depth(value: Any, what: str = "the request body", limit: int = MAX_DEPTH) -> Any:
    """Refuse JSON-like data nested deeper than ``limit`` (400); returns it unchanged.
    Iterative, so the check itself cannot overflow the stack."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            raise errors.bad_request(f"{what} is nested too deeply: more than {limit} levels of objects "
                                     "and lists")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return value


def check_json_depth(raw: bytes, value: Any, what: str = "the request body") -> Any:
    """check_depth of ``value`` parsed from the JSON ``raw``, skipped when ``raw`` has no more
    opening brackets than the limit (nesting cannot be deeper than their count): two byte
    counts instead of a walk of every write's body."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return value
    return check_depth(value, what)


class _Refused(yaml.YAMLError):
    pass


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing (PyYAML's composer recurses);
    ``load_yaml`` also bounds alias expansion ("billion laughs"). Timestamps stay strings,
    as Kubernetes reads YAML into JSON."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"the YAML is nested too deeply: more than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


BoundedLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return orjson.dumps(key).decode()  # 1 -> "1", true -> "true", as YAML-to-JSON converts
    raise _Refused(f"a YAML mapping key must be a string, not {type(key).__name__}")


def _jsonable(v: Any) -> Any:
    """YAML values JSON has no form for, in the form Kubernetes' YAML-to-JSON gives them
    (binary as base64, a set as a map of nulls, integers past 64 bits as floats, keys as
    strings); NaN and infinities are refused. Recursion is bounded by MAX_DEPTH."""
    if isinstance(v, dict):
        return {_json_key(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, set):
        return {_json_key(k): None for k in v}
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**64:
        v = float(v) if abs(v) < 2**1023 else math.inf
    if isinstance(v, float) and not math.isfinite(v):
        raise _Refused(f"the YAML holds a number JSON cannot carry: {v}")
    if isinstance(v, (dt.date, dt.datetime)):  # explicit !!timestamp tags
        return v.isoformat()
    return v


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(values once aliases are expanded, distinct values): one depth-first pass, sizes
    memoised per node; an alias to an enclosing node (a cycle) is refused."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = [] if isinstance(node, yaml.ScalarNode) else \
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if done:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(k)] for k in kids)
        elif id(node) in open_:
            raise _Refused("the YAML has an alias to a node that contains it (a cycle)")
        elif id(node) not in size:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in size)
    return size[id(root)], len(size)


def load_yaml(raw: bytes | str) -> Any:
    """One YAML document as JSON data, bounded; a refusal is a 400 naming the limit."""
    ld = BoundedLoader(raw)
    try:
        node = ld.get_single_node()
        if node is None:
            return None
        expanded, distinct = _expanded_size(node)
        if expanded - distinct > ALIAS_BUDGET:
            raise errors.bad_request(f"the YAML aliases expand to {expanded} values from {distinct} written "
                                     f"(more than {ALIAS_BUDGET} added): refused")
        return _jsonable(ld.construct_document(node))
    except _Refused as e:
        raise errors.bad_request(str(e))
    finally:
        ld.dispose()
