"""Argument checks at the public boundary. Each raises :class:`InvalidArgumentError` (``E_INVALIDARG``,
also a :class:`ValueError`) for a bad value or a value of the wrong type, before anything changes."""

from __future__ import annotations

import math
from typing import Any

from ._exceptions import InvalidArgumentError

#: the largest DWORD (``INFINITE``)
DWORD_MAX = 0xFFFFFFFF


def check_int(value: object, what: str, *, low: int | None = None, high: int | None = None) -> int:
    """*value* as an int (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidArgumentError(f"{what} must be {bounds}, not {value!r}")
    return int(value)


def check_dword(value: object, what: str) -> int:
    """*value* as a DWORD (flags, a thread id, milliseconds): an int in ``[0, 0xFFFFFFFF]``."""
    return check_int(value, what, low=0, high=DWORD_MAX)


def check_cookie(value: object, what: str = "cookie") -> int:
    """A registration cookie: any int (a wrong type is not a cookie at all)."""
    return check_int(value, what)


def check_seconds(value: object, what: str = "timeout") -> float | None:
    """A timeout in seconds: None (no limit) or a real number ≥ 0 (``inf`` allowed; NaN and bools are not)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise InvalidArgumentError(f"{what} must be a non-negative number of seconds or None, not {value!r}")
    return float(value)


def check_callable(value: Any, what: str) -> None:
    if not callable(value):
        raise InvalidArgumentError(f"{what} must be callable, not {type(value).__name__}")


def check_optional_str(value: object, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str or None, not {type(value).__name__}")
