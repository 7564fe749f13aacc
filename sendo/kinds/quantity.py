"""Kubernetes resource quantities ("100m", "128Mi", "1e3") as exact numbers.

Requests, limits and node capacity are written in this notation everywhere in the API.
Parsing is exact (a Fraction, never a float) so that comparisons such as
"request <= limit" never flip on rounding; conversions to whole units round up, as
Kubernetes does (0.1m of CPU is still 1 millicore to the scheduler).
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

# number, then an optional suffix: binary (Ki…Ei), decimal SI (n…E) or an exponent (e3, E-2)
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}

_FORMAT_HINT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_MAX_EXPONENT = 100  # beyond any real resource; stops "1e999999999" from eating memory


class QuantityError(ValueError):
    """A malformed quantity; `reason` is the explanation without the value itself."""

    def __init__(self, value: object, reason: str):
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        super().__init__(f"invalid quantity {shown}: {reason}")
        self.reason = reason


def parse_quantity(q: str | int | float) -> Fraction:
    """The exact value of a quantity; QuantityError (a ValueError) naming the accepted form."""
    if isinstance(q, bool):
        raise QuantityError(q, _FORMAT_HINT)
    if isinstance(q, int):
        return Fraction(q)
    if isinstance(q, float):
        if not math.isfinite(q):
            raise QuantityError(q, "must be a finite number")
        return Fraction(str(q))
    if not isinstance(q, str):
        raise QuantityError(q, "must be a string or a number")
    m = _QUANTITY.match(q)
    if not m:
        raise QuantityError(q, _FORMAT_HINT)
    value = Fraction(m["num"])
    suffix = m["suffix"] or ""
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= _DECIMAL[suffix]
    else:  # exponent
        exp = int(suffix[1:])
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(q, "exponent out of range")
        value *= Fraction(10) ** exp
    return -value if m["sign"] == "-" else value


def parse_cpu(q: str | int | float) -> int:
    """CPU in millicores, rounded up ("100m" -> 100, "0.5" -> 500, "2" -> 2000)."""
    return math.ceil(parse_quantity(q) * 1000)


def parse_bytes(q: str | int | float) -> int:
    """Bytes (memory, storage), rounded up ("128Mi" -> 134217728, "1G" -> 10**9)."""
    return math.ceil(parse_quantity(q))


def format_cpu(millicores: int) -> str:
    """Canonical CPU form: whole cores as "2", otherwise millicores as "1500m"."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_bytes(n: int) -> str:
    """Canonical byte form with the largest exact binary suffix ("24591148Ki", "2Gi", "1000")."""
    if n == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)
