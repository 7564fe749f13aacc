"""metadata.resourceVersion: not kept in the stored bytes, put in when an object is read.

A store keeps an object as written, without its resourceVersion; the revision the store
gave the write (etcd's mod_revision, the SQLite row's revision) is added when the value
is read or watched, as Kubernetes' etcd3 storage does with its versioner. So the bytes
can be written by any of several API servers before anyone knows the revision.

``encode`` writes objects in one layout, ``{"kind":…,"apiVersion":…,"metadata":{…},…}``,
so ``with_version`` finds the top-level metadata without parsing and splices the
version in (one copy of the bytes). Bytes in another layout are parsed instead.
"""
from __future__ import annotations

from typing import Any

import orjson

_META = b'"metadata":{'
_RV = b'"resourceVersion":"'
_HEAD = ("kind", "apiVersion", "metadata")
_NONE = object()


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form of an API object: its JSON without metadata.resourceVersion, metadata
    before any other object-valued field (clients send it so; others are reordered)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return orjson.dumps(obj)
    rv = meta.pop("resourceVersion", _NONE)  # left out without copying the object; put back below
    try:
        data = orjson.dumps(obj)
    finally:
        if rv is not _NONE:
            meta["resourceVersion"] = rv
    if _after_top_meta(data) >= 0:
        return data
    out = {k: obj[k] for k in _HEAD if k in obj}
    out["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return orjson.dumps(out)


def _after_top_meta(data: bytes) -> int:
    """Index just after the top-level '"metadata":{', or -1 if the layout is another one."""
    i = data.find(_META)
    # JSON escapes every quote inside a string, so the first '"metadata":{' is a key; it is the
    # top-level one when no object opens before it (only kind and apiVersion, strings, precede it)
    if i > 0 and data.find(b"{", 1, i) == -1:
        return i + len(_META)
    return -1


def splice(data: bytes, rev: int) -> bytes | None:
    """``data`` in ``encode``'s layout with the version as the first metadata field; None for another layout."""
    j = _after_top_meta(data)
    if j < 0:
        return None
    sep = b"" if data[j:j + 1] == b"}" else b","
    return b"%s\"resourceVersion\":\"%d\"%s%s" % (data[:j], rev, sep, data[j:])


def unsplice(value: bytes) -> bytes:
    """The stored bytes again, from what ``splice`` made of them."""
    j = _after_top_meta(value)
    end = value.index(b'"', j + len(_RV))  # the closing quote of the version's digits
    if value[end + 1:end + 2] == b",":
        end += 1
    return value[:j] + value[end + 1:]


def with_version(data: bytes, rev: int) -> bytes:
    """``data`` as served at revision ``rev``: metadata.resourceVersion is ``str(rev)``."""
    spliced = splice(data, rev)
    if spliced is not None:
        return spliced
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data  # not an object (a store test's or a foreign writer's value): served as stored
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return data
    obj["metadata"]["resourceVersion"] = str(rev)
    return orjson.dumps(obj)


def strip_version(data: bytes) -> bytes:
    """Bytes stored with a resourceVersion inside (an older sendo) in the stored form."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return encode(obj) if isinstance(obj, dict) else data
