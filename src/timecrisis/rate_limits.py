"""`RateLimit`: the parsed form of a job type's `rate_limit` ("100/m", "5/s", "1000/h").

A rate limit caps the STARTS (claims) of a type in any sliding window of its length, across
the cluster: with "5/s", no second-long interval holds more than five claims of the type. The
stores enforce it inside their claim (docs/flow-control.md, "Rate limits").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from timecrisis.errors import JobValidationError

MAX_RATE_LIMIT = 1_000_000
"""The most starts a rate limit may allow per window: the stores keep their counts in 32-bit
integers, and a type that may start a million jobs an hour is not meaningfully limited."""

WINDOWS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
}

_FORMAT = re.compile(r"\s*([0-9]+)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` starts in any window of length `window`."""

    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise JobValidationError(f"a rate limit's count must be an int, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_RATE_LIMIT:
            raise JobValidationError(
                f"a rate limit allows 1 to {MAX_RATE_LIMIT:,} starts per window, got {self.limit}"
            )
        if self.window not in WINDOWS.values():
            raise JobValidationError(
                f"a rate limit's window is one second, minute or hour, got {self.window!r}"
            )

    @classmethod
    def parse(cls, text: object) -> RateLimit:
        """`"<count>/<s|m|h>"`, e.g. `"100/m"`; `JobValidationError` for anything else."""
        if not isinstance(text, str):
            raise JobValidationError(
                f"rate_limit must be a string like '100/m', got {type(text).__name__}"
            )
        match = _FORMAT.fullmatch(text)
        if match is None or match.group(2) not in WINDOWS:
            raise JobValidationError(
                f"rate_limit must look like '100/m' (a count per s, m or h), got {text!r}"
            )
        count = int(match.group(1))
        if not 1 <= count <= MAX_RATE_LIMIT:
            raise JobValidationError(
                f"rate_limit allows 1 to {MAX_RATE_LIMIT:,} starts per window, got {text!r}"
            )
        return cls(count, WINDOWS[match.group(2)])

    def __str__(self) -> str:
        unit = next(name for name, length in WINDOWS.items() if length == self.window)
        return f"{self.limit}/{unit}"
