"""Durations: every option that takes a length of time accepts the same three forms.

- a number of seconds (`int` or `float`, not `bool`), finite and not negative;
- a `datetime.timedelta`, not negative;
- a string `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`, e.g. `'500ms'`, `'1.5h'`, `'5m'`,
  or several such parts in a row, e.g. `'1h30m'` (what `format_duration` prints reads back).

Anything else raises `InvalidDurationError`.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from timecrisis.errors import InvalidDurationError

Duration: TypeAlias = float | int | timedelta | str
"""What every duration option accepts."""

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# ASCII digits only: `\d` would also take Arabic-Indic or full-width digits (float() reads them).
_PART = r"[0-9]+(?:\.[0-9]+)?\s*(?:ms|s|m|h|d)"
_PATTERN = re.compile(rf"\s*(?:{_PART}\s*)+")
_PARTS = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)")
# timedelta cannot hold more than this. As a float it rounds UP to exactly 8.64e13 seconds, which
# timedelta() refuses, so the check below is `>=`.
_MAX_SECONDS = timedelta.max.total_seconds()

MAX_JOB_DURATION = timedelta(days=36_500)
"""The longest `delay`, `expires_in`, `retry_delay`, `max_retry_delay`, `timeout`, `older_than`,
and scheduler TTL, interval or age: 100 years. Every store adds these to (or takes them from) its
clock, and a time past year 9999 cannot be read back into Python (PostgreSQL would store year
10240 and every read of that row would then fail), so they are refused at the boundary,
identically on every store, long before the calendar ends."""


def parse_duration(value: Duration) -> timedelta:
    """Convert an accepted duration form to a `timedelta`; else raise `InvalidDurationError`."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise InvalidDurationError(value, "must not be negative")
        return value
    if isinstance(value, bool):  # bool is an int; True seconds is never what the caller meant
        raise InvalidDurationError(value, "a bool is not a duration")
    if isinstance(value, int) and value >= _MAX_SECONDS:
        # Checked before float(): an int past the float range would raise OverflowError there.
        raise InvalidDurationError(value, "too large")
    if isinstance(value, int | float):
        return _from_seconds(value, float(value))
    if isinstance(value, str):
        if _PATTERN.fullmatch(value) is None:
            raise InvalidDurationError(value)
        seconds = math.fsum(float(number) * _UNITS[unit] for number, unit in _PARTS.findall(value))
        return _from_seconds(value, seconds)
    raise InvalidDurationError(value, f"unsupported type {type(value).__name__}")


def parse_optional_duration(value: Duration | None) -> timedelta | None:
    """`parse_duration`, passing `None` through."""
    return None if value is None else parse_duration(value)


def parse_job_duration(value: Duration, *, positive: bool = False) -> timedelta:
    """`parse_duration` (or `parse_positive_duration`) bounded by `MAX_JOB_DURATION`: for every
    duration the library adds to or takes from a clock."""
    result = parse_positive_duration(value) if positive else parse_duration(value)
    if result > MAX_JOB_DURATION:
        raise InvalidDurationError(value, "too large: at most 36500d (100 years)")
    return result


def parse_positive_duration(value: Duration) -> timedelta:
    """`parse_duration` that also refuses zero (intervals, TTLs, polling periods)."""
    result = parse_duration(value)
    if result <= timedelta(0):
        raise InvalidDurationError(value, "must be greater than zero")
    return result


def _from_seconds(original: object, seconds: float) -> timedelta:
    if not math.isfinite(seconds):
        raise InvalidDurationError(original, "must be finite")
    if seconds < 0:
        raise InvalidDurationError(original, "must not be negative")
    if seconds >= _MAX_SECONDS:
        raise InvalidDurationError(original, "too large")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """A short human form (`'1h30m'`, `'250ms'`) for logs and the CLI."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms < 1000:
        return f"{total_ms}ms"
    seconds, ms = divmod(total_ms, 1000)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if seconds or ms:
        parts.append(f"{seconds}.{ms:03d}s".replace(".000s", "s"))
    return "".join(parts)
