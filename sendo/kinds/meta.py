"""Object metadata helpers every layer shares: timestamps, generated names, label and
field selectors. It sits in `kinds` (the bottom layer) so controllers, the scheduler
and the agent never import the API server to format a time or match a label."""
from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from typing import Any, Callable


class SelectorError(ValueError):
    """A label or field selector a person wrote cannot be parsed; the API answers 400."""


NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes avoids vowels and look-alikes


def rfc3339(t: float | dt.datetime) -> str:
    """A Kubernetes `Time` (second precision, UTC, "Z") from epoch seconds or a datetime."""
    if not isinstance(t, dt.datetime):
        t = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return rfc3339(dt.datetime.now(dt.timezone.utc))


def set_status_condition(status: dict, ctype: str, value: str, reason: str, message: str) -> None:
    """Set one condition in ``status["conditions"]``; lastTransitionTime moves only when its
    status changes."""
    conds = status.setdefault("conditions", [])
    if not isinstance(conds, list):
        conds = status["conditions"] = []
    for c in conds:
        if isinstance(c, dict) and c.get("type") == ctype:
            if c.get("status") != value:
                c["lastTransitionTime"] = now_rfc3339()
            c.update(status=value, reason=reason, message=message)
            return
    conds.append({"type": ctype, "status": value, "lastTransitionTime": now_rfc3339(), "reason": reason,
                  "message": message})


_second_cache: tuple[int, str] = (-1, "")


def micro_time(t: float) -> str:
    """A Kubernetes `MicroTime` (Events, Leases, audit) from epoch seconds: microsecond
    precision. The formatted second is cached: an API server formats several per request
    (audit), and strftime is most of the cost."""
    global _second_cache
    sec, us = divmod(round(t * 1e6), 1_000_000)
    if _second_cache[0] != sec:
        _second_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{_second_cache[1]}.{us:06d}Z"


def micro_now() -> str:
    return micro_time(time.time())


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(NAME_SUFFIX_ALPHABET) for _ in range(n))


# ----------------------------------------------------------------- label selectors
Requirement = tuple[str, str, tuple[str, ...]]  # key, operator, values

_TOKEN = re.compile(r"\s*(!=|==|=|,|\(|\)|!|[^\s!=,()]+)")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse the string form (`a=b,c!=d,e in (x,y),f notin (z),g,!h`)."""
    if not text:
        return []
    toks = _TOKEN.findall(text)
    toks = [t for t in toks if t.strip()]
    reqs: list[Requirement] = []
    i = 0

    def fail(msg: str):
        raise SelectorError(f'unable to parse requirement: invalid label selector "{text}": {msg}')

    while i < len(toks):
        t = toks[i]
        if t == "!":
            if i + 1 >= len(toks):
                fail("missing key after '!'")
            reqs.append((toks[i + 1], "!", ()))
            i += 2
        else:
            key = t
            op = toks[i + 1] if i + 1 < len(toks) else ","
            if op in ("=", "==", "!="):
                if i + 2 >= len(toks) or toks[i + 2] == ",":
                    val = ""
                    i += 2
                else:
                    val = toks[i + 2]
                    i += 3
                reqs.append((key, "!=" if op == "!=" else "=", (val,)))
            elif op in ("in", "notin"):
                if i + 2 >= len(toks) or toks[i + 2] != "(":
                    fail(f"expected '(' after '{op}'")
                j = i + 3
                vals = []
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        vals.append(toks[j])
                    j += 1
                if j >= len(toks):
                    fail("missing ')'")
                reqs.append((key, op, tuple(vals)))
                i = j + 1
            elif op == ",":
                reqs.append((key, "exists", ()))
                i += 1
            else:
                fail(f"unexpected '{op}'")
        if i < len(toks):
            if toks[i] != ",":
                fail(f"expected ',' but found '{toks[i]}'")
            i += 1
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=":
            if v != vals[0]:
                return False
        elif op == "!=":
            if has and v == vals[0]:
                return False
        elif op == "in":
            if not has or v not in vals:
                return False
        elif op == "notin":
            if has and v in vals:
                return False
        elif op == "exists":
            if not has:
                return False
        elif op == "!":
            if has:
                return False
    return True


def selector_matches(sel: Any, labels: Any) -> bool:
    """Whether a structured LabelSelector (matchLabels + matchExpressions) selects an
    object with these labels: an empty selector selects everything, one that cannot be
    read selects nothing (as Kubernetes treats a selector it cannot convert)."""
    if not isinstance(sel, dict):
        return True
    try:
        reqs = selector_from_label_selector(sel)
    except (SelectorError, KeyError, TypeError, AttributeError):
        return False
    return labels_match(reqs, labels if isinstance(labels, dict) else {})


def selector_from_label_selector(sel: dict[str, Any] | None) -> list[Requirement]:
    """The structured form (matchLabels + matchExpressions) as requirements."""
    if not sel:
        return []
    reqs: list[Requirement] = [(k, "=", (v,)) for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(e.get("operator"))
        if op is None:
            raise SelectorError(f"invalid label selector operator {e.get('operator')!r}")
        reqs.append((e["key"], op, tuple(e.get("values") or ())))
    return reqs


# ----------------------------------------------------------------- field selectors
FieldReq = tuple[str, bool, str]  # path, equal?, value


def parse_field_selector(text: str | None) -> list[FieldReq]:
    if not text:
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), False, v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            out.append((k.strip(), True, v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            out.append((k.strip(), True, v.strip()))
        else:
            raise SelectorError(f'invalid field selector "{text}": "{part}" is not an equality')
    return out


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs: list[FieldReq], obj: dict[str, Any]) -> bool:
    for path, eq, value in reqs:
        if (field_value(obj, path) == value) != eq:
            return False
    return True


def make_filter(label_selector: str | None, field_selector: str | None,
                selectable: frozenset[str] | None = None) -> Callable[[dict], bool] | None:
    """A predicate for both selectors (None: everything matches). Field selectors may
    only name the kind's selectable fields, as in Kubernetes."""
    lreqs = parse_label_selector(label_selector)
    freqs = parse_field_selector(field_selector)
    if selectable is not None:
        for path, _, _ in freqs:
            if path not in selectable:
                raise SelectorError(f"field label not supported: {path}")
    if not lreqs and not freqs:
        return None

    def match(obj: dict) -> bool:
        return labels_match(lreqs, obj.get("metadata", {}).get("labels")) and fields_match(freqs, obj)
    return match
