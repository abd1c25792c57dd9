"""What every store can hold, checked once before any store sees a value.

The three stores disagree at the edges: PostgreSQL `text` cannot hold a NUL byte and its
indexes refuse very long keys; SQLite and psycopg cannot encode a lone surrogate; SQLite binds
an int to 64 bits and PostgreSQL `int` to 32; PostgreSQL stores year 10240 that Python cannot
read back. Left to the stores, the same input is accepted by one, an `OverflowError` in another
and a `StorageError` in the third. So the library refuses such input here, with the same typed
error on every store (and nothing written), and treats an id no store could hold as a miss.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pydantic_core

from timecrisis.errors import JobValidationError

MAX_KEY_BYTES = 1024
"""The longest `entity_id`, `unique_key`, job type or schedule name, in UTF-8 bytes: well under
PostgreSQL's btree entry limit (about 2700 bytes), which would refuse a longer indexed key."""

MAX_RETRIES = 1_000_000
"""The largest `max_retries`: attempts stay far inside every store's integers (PostgreSQL's are
32-bit), and no job means to retry a million times."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""`run_at` and `expires_at` lie in [EARLIEST, LATEST]: the end leaves a year before Python's
calendar ends (9999-12-31), so no time the library derives from them overflows."""


def text_problem(value: object) -> str | None:
    """Why `value` cannot be stored as a key (an id, a name, an `entity_id`), or None if it can."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    if size > MAX_KEY_BYTES:
        return f"must be at most {MAX_KEY_BYTES} bytes in UTF-8, got {size}"
    return None


def lookup_key(value: object) -> str | None:
    """`value` as an id or name the stores can look up, or None: no stored record can have it,
    so the lookup is a miss (`None`, `False`, an empty page) on every store, never a crash."""
    if text_problem(value) is not None:
        return None
    assert isinstance(value, str)
    return value


def json_text(value: object) -> str:
    """`value` (JSON-ready: what `model_dump(mode="json")` returns) as the JSON text the stores
    keep, or a `ValueError` saying why no store can hold it: a lone surrogate (not valid
    Unicode) or a non-finite number (JSON has no `Infinity`; PostgreSQL refuses it, SQLite and
    the memory store would keep it).

    One call into pydantic-core's serializer, which refuses surrogates itself: cheaper than
    walking the payload in Python and then dumping it again in the store (W1,
    docs/performance.md). A non-finite float is written as a bare `Infinity`/`NaN` token, so
    its absence is one substring test; only a payload whose text has one (a string may) is
    walked to tell."""
    try:
        text = pydantic_core.to_json(value, inf_nan_mode="constants")
    except pydantic_core.PydanticSerializationError as exc:
        if "surrogates not allowed" in str(exc):
            raise ValueError("a string is not valid Unicode (a lone surrogate)") from None
        raise ValueError(f"it is not JSON: {exc}") from None
    if (b"Infinity" in text or b"NaN" in text) and _has_non_finite(value):
        raise ValueError("a number is not finite (JSON has no Infinity or NaN)")
    return text.decode("utf-8")


def _has_non_finite(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def instant_problem(value: datetime) -> str | None:
    """Why an aware datetime is out of the range the stores read back, or None."""
    try:
        if EARLIEST <= value <= LATEST:
            return None
    except OverflowError:  # an offset that pushes it past the calendar's ends
        pass
    return f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"


def check_flow_name(value: object, what: str = "pause name") -> str:
    """`value` as a queue or pause name (the rules of a job type name), or a
    `JobValidationError` saying why it cannot be one: raised before any store is asked, so the
    same input fails the same way on every store and nothing is written."""
    problem = text_problem(value)
    if problem is not None:
        raise JobValidationError(f"{what} {problem}: {value!r}")
    assert isinstance(value, str)
    return value
