"""Regular expressions that users write (a CRD schema's `pattern`), matched with RE2.

Python's `re` backtracks: `^(a+)+$` against 31 `a`s and a `!` took 31 s and, run on the
API server's only event loop, froze every request. Kubernetes matches with Go's regexp,
an RE2 engine that runs in time linear in the input; google-re2 gives the same syntax and
guarantee. Patterns RE2 refuses (backreferences, lookaround) are refused when the schema
is written, with RE2's reason, never at match time.
"""
from __future__ import annotations

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is the user's 422, not a line on the server's stderr


class PatternError(ValueError):
    """RE2 cannot compile the pattern; str() is RE2's reason."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """The compiled pattern (cached: every write of a custom object matches the same few)."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid pattern"
        raise PatternError(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None


def pattern_error(pattern: str) -> str | None:
    """Why RE2 refuses the pattern, or None when it compiles."""
    try:
        compile_pattern(pattern)
    except PatternError as e:
        return str(e)
    return None


def search(pattern: str, value: str) -> bool:
    """Whether the pattern matches anywhere in value (unanchored, as JSON Schema's `pattern`)."""
    return compile_pattern(pattern).search(value) is not None
