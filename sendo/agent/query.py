"""Query parameters of the agent's own HTTP endpoints (`/containerLogs`, `/portForward`).

The API server passes a client's parameters through unchanged, so the agent reads them
as Kubernetes does: a boolean is any spelling Go's `strconv.ParseBool` accepts (the
official Python client sends `True`), an empty value (`?follow`) is true, and a value
that is not of its type is refused with a message naming the parameter (a 400 at the
API), never ignored and never a 500.
"""
from __future__ import annotations

import re
from typing import Mapping

from ..wire import BadParam, parse_bool

_INT = re.compile(r"[+-]?[0-9]{1,18}")  # strconv.ParseInt: digits only, no spaces or "_"
BadQuery = BadParam  # a parameter that does not parse as its type; the message is for a person


def query_bool(q: Mapping[str, str], name: str) -> bool:
    value = q.get(name)
    if value is None:
        return False
    return parse_bool(name, value)


def query_int(q: Mapping[str, str], name: str, minimum: int = 0) -> int | None:
    value = q.get(name)
    if value is None or value == "":
        return None
    if not _INT.fullmatch(value):
        raise BadQuery(f'invalid value for query parameter "{name}": {value!r} is not an integer')
    n = int(value)
    if n < minimum:
        raise BadQuery(f'invalid value for query parameter "{name}": {n} is less than {minimum}')
    return n
