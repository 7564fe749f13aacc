"""`/openapi/v2` as protobuf: the Swagger 2.0 document encoded as gnostic's
`openapi.v2.Document`, the form kubectl asks for
(`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).

kubectl reads the v2 document when it needs a kind's schema or the parameters of its
operations and the v3 documents do not help (for example `kubectl apply` of a kind the
server does not serve, which must end in "no matches for kind"). It parses whatever it
gets as protobuf; a JSON body fails with "proto: cannot parse invalid wire-format data".

Only what the JSON document holds is encoded. Field numbers are gnostic's
(`openapiv2/OpenAPIv2.proto`); free-form values (defaults, enums, examples, vendor
extensions) travel as YAML text, which JSON is.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

import orjson

# The answer's Content-Type: client-go parses it with Go's mime package, which refuses the
# "@" of the type kubectl asks for.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_ACCEPTED = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
             "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")


def wants_protobuf(accept: str | None) -> bool:
    """True when the Accept header names the gnostic protobuf media type before JSON."""
    for part in (accept or "").split(","):
        kind = part.split(";")[0].strip().lower()
        if kind in _ACCEPTED:
            return True
        if kind in ("application/json", "*/*", "application/*"):
            return False
    return False


# ----------------------------------------------------------------- wire primitives


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s are ten bytes of two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _msg(num: int, body: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(body)) + body


def _str(num: int, value: Any) -> bytes:
    return _msg(num, str(value).encode()) if value not in (None, "") else b""


def _strs(num: int, values: Any) -> bytes:
    return b"".join(_str(num, v) for v in values or ())


def _bool(num: int, value: Any) -> bytes:
    return _varint(num << 3) + b"\x01" if value is True else b""


def _int(num: int, value: Any) -> bytes:
    return _varint(num << 3) + _varint(int(value)) if isinstance(value, int) and not isinstance(value, bool) else b""


def _double(num: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return b""
    return _varint(num << 3 | 1) + struct.pack("<d", float(value))


def _any(num: int, value: Any) -> bytes:
    """A gnostic `Any`: the value as YAML text (field 2)."""
    return _msg(num, _str(2, orjson.dumps(value).decode()))


def _named(num: int, items: Any, encode: Callable[[Any], bytes]) -> bytes:
    """A map as gnostic writes it: repeated (name = 1, value = 2) pairs, in order."""
    return b"".join(_msg(num, _str(1, k) + _msg(2, encode(v))) for k, v in (items or {}).items())


def _extensions(num: int, obj: dict[str, Any]) -> bytes:
    return b"".join(_msg(num, _str(1, k) + _any(2, v)) for k, v in obj.items() if k.startswith("x-"))


# ----------------------------------------------------------------- messages


def schema(s: dict[str, Any]) -> bytes:
    if not isinstance(s, dict):
        return b""
    t = s.get("type")
    types = [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if isinstance(t, list) else []
    items = s.get("items")
    extra = s.get("additionalProperties")
    out = [_str(1, s.get("$ref")), _str(2, s.get("format")), _str(3, s.get("title")),
           _str(4, s.get("description"))]
    if "default" in s:
        out.append(_any(5, s["default"]))
    out += [_double(6, s.get("multipleOf")), _double(7, s.get("maximum")), _bool(8, s.get("exclusiveMaximum")),
            _double(9, s.get("minimum")), _bool(10, s.get("exclusiveMinimum")), _int(11, s.get("maxLength")),
            _int(12, s.get("minLength")), _str(13, s.get("pattern")), _int(14, s.get("maxItems")),
            _int(15, s.get("minItems")), _bool(16, s.get("uniqueItems")), _int(17, s.get("maxProperties")),
            _int(18, s.get("minProperties")), _strs(19, s.get("required"))]
    out += [_any(20, v) for v in s.get("enum") or ()]
    if isinstance(extra, dict):
        out.append(_msg(21, _msg(1, schema(extra))))
    elif isinstance(extra, bool):
        out.append(_msg(21, _varint(2 << 3) + (b"\x01" if extra else b"\x00")))
    if types:
        out.append(_msg(22, _strs(1, types)))
    if isinstance(items, dict):
        out.append(_msg(23, _msg(1, schema(items))))
    elif isinstance(items, list):
        out.append(_msg(23, b"".join(_msg(1, schema(i)) for i in items)))
    out += [_msg(24, schema(a)) for a in s.get("allOf") or () if isinstance(a, dict)]
    if isinstance(s.get("properties"), dict):
        out.append(_msg(25, _named(1, s["properties"], schema)))
    out += [_str(26, s.get("discriminator")), _bool(27, s.get("readOnly"))]
    if "example" in s:
        out.append(_any(30, s["example"]))
    out.append(_extensions(31, s))
    return b"".join(out)


def _parameter(p: dict[str, Any]) -> bytes:
    where = p.get("in")
    if where == "body":
        body = (_str(1, p.get("description")) + _str(2, p.get("name")) + _str(3, where)
                + _bool(4, p.get("required")) + _msg(5, schema(p.get("schema") or {})) + _extensions(6, p))
        return _msg(1, _msg(1, body))
    common = _bool(1, p.get("required")) + _str(2, where) + _str(3, p.get("description")) + _str(4, p.get("name"))
    if where == "path":  # PathParameterSubSchema (no allowEmptyValue: the numbers shift by one)
        sub = _msg(4, common + _str(5, p.get("type")) + _str(6, p.get("format")) + _bool(19, p.get("uniqueItems"))
                   + _extensions(22, p))
    elif where == "header":
        sub = _msg(1, common + _str(5, p.get("type")) + _str(6, p.get("format")) + _bool(19, p.get("uniqueItems"))
                   + _extensions(22, p))
    else:  # query (and formData, which the API never declares)
        sub = _msg(3, common + _str(6, p.get("type")) + _str(7, p.get("format")) + _bool(20, p.get("uniqueItems"))
                   + _extensions(23, p))
    return _msg(1, _msg(2, sub))


def _parameters(num: int, params: Any) -> bytes:
    out = []
    for p in params or ():
        if isinstance(p, dict) and "$ref" in p:
            out.append(_msg(num, _msg(2, _str(1, p["$ref"]))))
        elif isinstance(p, dict):
            out.append(_msg(num, _parameter(p)))
    return b"".join(out)


def _response(r: dict[str, Any]) -> bytes:
    body = _str(1, r.get("description"))
    if isinstance(r.get("schema"), dict):
        body += _msg(2, _msg(1, schema(r["schema"])))
    return _msg(1, body + _extensions(5, r))


def _operation(op: dict[str, Any]) -> bytes:
    return b"".join([
        _strs(1, op.get("tags")), _str(2, op.get("summary")), _str(3, op.get("description")),
        _str(5, op.get("operationId")), _strs(6, op.get("produces")), _strs(7, op.get("consumes")),
        _parameters(8, op.get("parameters")), _msg(9, _named(1, op.get("responses"), _response)),
        _strs(10, op.get("schemes")), _bool(11, op.get("deprecated")), _extensions(13, op)])


_VERBS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: dict[str, Any]) -> bytes:
    out = [_str(1, item.get("$ref"))]
    out += [_msg(num, _operation(item[verb])) for verb, num in _VERBS.items() if isinstance(item.get(verb), dict)]
    out += [_parameters(9, item.get("parameters")), _extensions(10, item)]
    return b"".join(out)


def document(doc: dict[str, Any]) -> bytes:
    """The Swagger 2.0 document `doc` (as served in JSON) as an `openapi.v2.Document`."""
    info = doc.get("info") or {}
    return b"".join([
        _str(1, doc.get("swagger")),
        _msg(2, _str(1, info.get("title")) + _str(2, info.get("version")) + _str(3, info.get("description"))),
        _str(3, doc.get("host")), _str(4, doc.get("basePath")), _strs(5, doc.get("schemes")),
        _strs(6, doc.get("consumes")), _strs(7, doc.get("produces")),
        _msg(8, _named(2, doc.get("paths"), _path_item)),
        _msg(9, _named(1, doc.get("definitions"), schema)),
        _extensions(16, doc)])
