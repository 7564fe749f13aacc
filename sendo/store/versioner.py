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
_HEAD = ("kind", "apiVersion", "metadata")


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form of an API object: its JSON without metadata.resourceVersion."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return orjson.dumps(obj)
    out = {k: obj[k] for k in _HEAD if k in obj}
    out["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return orjson.dumps(out)


def with_version(data: bytes, rev: int) -> bytes:
    """``data`` as served at revision ``rev``: metadata.resourceVersion is ``str(rev)``."""
    i = data.find(_META)
    # JSON escapes every quote inside a string, so the first '"metadata":{' is a key; it is the
    # top-level one when no object opens before it (only kind and apiVersion, strings, precede it)
    if i > 0 and data.find(b"{", 1, i) == -1:
        j = i + len(_META)
        sep = b"" if data[j:j + 1] == b"}" else b","
        return b"%s\"resourceVersion\":\"%d\"%s%s" % (data[:j], rev, sep, data[j:])
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
