"""Backoff between attempts: pure functions, shared by every storage backend.

A failed attempt `n` (1-based: the attempt that just failed) waits before attempt `n + 1`:

- linear: `retry_delay` every time;
- exponential: `retry_delay * 2 ** (n - 1)` plus up to 10 % jitter, so a burst of failures does not
  retry in lockstep.

Both are capped at `max_retry_delay`, jitter included.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from timecrisis.models import BackoffStrategy

JITTER_FRACTION = 0.1
# 2**60 seconds is far past any cap a user could mean; stopping the exponent there keeps the float
# arithmetic finite for absurd attempt counts.
_MAX_EXPONENT = 60


def retry_delay_seconds(
    strategy: BackoffStrategy,
    failed_attempt: int,
    retry_delay: float,
    max_retry_delay: float,
    *,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after attempt `failed_attempt` (>= 1) failed."""
    if failed_attempt < 1:
        raise ValueError(f"failed_attempt must be >= 1, got {failed_attempt}")
    if strategy == "linear":
        delay = retry_delay
    elif strategy == "exponential":
        base = retry_delay * 2.0 ** min(failed_attempt - 1, _MAX_EXPONENT)
        jitter = (rng or random).random() * JITTER_FRACTION * base
        delay = base + jitter
    else:  # pragma: no cover - guarded by the type and by validation at enqueue
        raise ValueError(f"unknown backoff strategy {strategy!r}")
    return max(0.0, min(delay, max_retry_delay))


def next_retry_at(
    now: datetime,
    strategy: BackoffStrategy,
    failed_attempt: int,
    retry_delay: float,
    max_retry_delay: float,
    *,
    rng: random.Random | None = None,
) -> datetime:
    """When the next attempt may start, measured from `now` (the store's clock)."""
    seconds = retry_delay_seconds(strategy, failed_attempt, retry_delay, max_retry_delay, rng=rng)
    return now + timedelta(seconds=seconds)
