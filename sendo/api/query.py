"""Query parameters, read through one typed parser.

Kubernetes decodes the query into typed option structs before it serves a request: a
value that does not parse as its type is a 400 naming the parameter, a well-typed value
outside the allowed set is a 422 on the options kind (``ListOptions``,
``DeleteOptions``…). Reading every parameter here keeps those rules in one place, so a
``watch=True`` (the official Python client) means the same as ``watch=true``.
"""
from __future__ import annotations

import re
from typing import Iterable

from starlette.datastructures import QueryParams

from .. import wire
from ..kinds.base import unsupported
from . import errors

_INT = re.compile(r"[+-]?[0-9]{1,19}")  # strconv.ParseInt(s, 10, 64): no spaces, no "_"
INT64_MAX = 2**63 - 1


def parse_bool(name: str, value: str) -> bool:
    """Go's strconv.ParseBool spellings, as Kubernetes reads them (sendo/wire.py)."""
    try:
        return wire.parse_bool(name, value)
    except wire.BadParam as e:
        raise errors.bad_request(str(e)) from None


def parse_int(name: str, value: str) -> int:
    n = int(value) if _INT.fullmatch(value) else None
    if n is None or not -INT64_MAX - 1 <= n <= INT64_MAX:
        raise errors.bad_request(f'invalid value for query parameter "{name}": {value!r} is not a 64-bit '
                                 "integer")
    return n


class Query:
    """The query of one request; the first value of a repeated parameter counts, as in Go."""

    __slots__ = ("params",)

    def __init__(self, params: QueryParams):
        self.params = params

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def str(self, name: str, default: str | None = None) -> str | None:
        values = self.params.getlist(name)
        return values[0] if values else default

    def bool(self, name: str) -> bool:
        value = self.str(name)
        return False if value is None else parse_bool(name, value)

    def opt_bool(self, name: str) -> bool | None:
        value = self.str(name)
        return None if value is None else parse_bool(name, value)

    def int(self, name: str, minimum: int | None = None) -> int | None:
        value = self.str(name)
        if value is None:
            return None
        n = parse_int(name, value)
        if minimum is not None and n < minimum:
            raise errors.bad_request(f'invalid value for query parameter "{name}": {n} is less than {minimum}')
        return n

    def choice(self, name: str, allowed: Iterable[str], options_kind: str) -> str:
        """An enumerated option ("" when absent); an unknown value is 422 on ``options_kind``."""
        value = self.str(name) or ""
        allowed = list(allowed)
        if value and value not in allowed:
            raise errors.invalid(options_kind, "meta.k8s.io", "", [unsupported(name, value, allowed)])
        return value

    def dry_run(self, options_kind: str) -> bool:
        """``dryRun=All`` (the only value Kubernetes defines); anything else is refused before any
        write, so a ``DELETE ?dryRun=Bogus`` deletes nothing."""
        values = self.params.getlist("dryRun")
        bad = [v for v in values if v != "All"]
        if bad:
            raise errors.invalid(options_kind, "meta.k8s.io", "", [unsupported("dryRun", bad[0], ["All"])])
        return bool(values)
