"""What every store can hold, checked once before any store sees a value.

The three stores disagree at the edges: PostgreSQL `text` cannot hold a NUL byte and its
indexes refuse very long keys; SQLite and psycopg cannot encode a lone surrogate; SQLite binds
an int to 64 bits and PostgreSQL `int` to 32; PostgreSQL stores year 10240 that Python cannot
read back. Left to the stores, the same input is accepted by one, an `OverflowError` in another
and a `StorageError` in the third. So the library refuses such input here, with the same typed
error on every store (and nothing written), and treats an id no store could hold as a miss.
"""

from __future__ import annotations

from datetime import UTC, datetime

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


def json_text_problem(value: object) -> str | None:
    """Why a JSON-ready payload cannot be stored (a string no store can encode), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return f"the string {item[:40]!r} is not valid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def instant_problem(value: datetime) -> str | None:
    """Why an aware datetime is out of the range the stores read back, or None."""
    try:
        if EARLIEST <= value <= LATEST:
            return None
    except OverflowError:  # an offset that pushes it past the calendar's ends
        pass
    return f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_flow_name(value: object, what: str = "pause name") -> str:
    """`value` as a queue or pause name (the rules of a job type name), or a
    `JobValidationError` saying why it cannot be one: raised before any store is asked, so the
    same input fails the same way on every store and nothing is written."""
    problem = text_problem(value)
    if problem is not None:
        raise JobValidationError(f"{what} {problem}: {value!r}")
    assert isinstance(value, str)
    return value
