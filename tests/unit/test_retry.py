"""Backoff between attempts: linear, exponential with jitter, the cap, absurd inputs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from timecrisis.retry import JITTER_FRACTION, next_retry_at, retry_delay_seconds

DAY = 86400.0


class FixedRandom(random.Random):
    """A `random.Random` whose `random()` always returns the same draw."""

    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


def test_linear_backoff_waits_the_base_every_time() -> None:
    delays = [retry_delay_seconds("linear", n, 10, DAY) for n in (1, 2, 5, 50)]
    assert delays == [10, 10, 10, 10]


def test_linear_backoff_has_no_jitter() -> None:
    assert retry_delay_seconds("linear", 3, 10, DAY, rng=FixedRandom(0.999)) == 10


@pytest.mark.parametrize(("attempt", "base"), [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)])
def test_exponential_backoff_doubles_from_the_retry_delay(attempt: int, base: float) -> None:
    assert retry_delay_seconds("exponential", attempt, 10, DAY, rng=FixedRandom(0.0)) == base


@pytest.mark.parametrize(("attempt", "base"), [(1, 10.0), (2, 20.0), (3, 40.0)])
def test_exponential_jitter_adds_less_than_ten_percent(attempt: int, base: float) -> None:
    highest = retry_delay_seconds("exponential", attempt, 10, DAY, rng=FixedRandom(0.999999))
    assert base < highest < base * (1 + JITTER_FRACTION)
    rng = random.Random(7)
    draws = {retry_delay_seconds("exponential", attempt, 10, DAY, rng=rng) for _ in range(200)}
    assert all(base <= delay < base * (1 + JITTER_FRACTION) for delay in draws)
    assert len(draws) > 150  # really jittered, not a constant


def test_jitter_uses_the_module_random_without_an_rng() -> None:
    random.seed(1234)
    first = retry_delay_seconds("exponential", 2, 10, DAY)
    random.seed(1234)
    assert retry_delay_seconds("exponential", 2, 10, DAY) == first
    assert 20 <= first < 22


def test_the_cap_includes_jitter() -> None:
    # 2**5 * 10 = 320 s, plus jitter up to 352 s; the cap of 330 s wins over the jitter.
    assert retry_delay_seconds("exponential", 6, 10, 330, rng=FixedRandom(0.999)) == 330
    assert retry_delay_seconds("exponential", 30, 10, 3600) == 3600
    assert retry_delay_seconds("linear", 1, 120, 60) == 60


@pytest.mark.parametrize("attempt", [64, 1_000, 10**9])
def test_huge_attempt_counts_stay_finite_and_capped(attempt: int) -> None:
    delay = retry_delay_seconds("exponential", attempt, 10, DAY)
    assert math.isfinite(delay)
    assert delay == DAY


def test_a_huge_cap_still_gives_a_finite_delay() -> None:
    delay = retry_delay_seconds("exponential", 10**6, 10, 1e300, rng=FixedRandom(0.0))
    assert delay == 10 * 2.0**60  # the exponent stops growing at 60


def test_a_zero_delay_retries_at_once() -> None:
    assert retry_delay_seconds("exponential", 3, 0, DAY) == 0
    assert retry_delay_seconds("linear", 3, 0, DAY) == 0


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="failed_attempt must be >= 1"):
        retry_delay_seconds("linear", attempt, 10, 100)
    with pytest.raises(ValueError, match="failed_attempt must be >= 1"):
        retry_delay_seconds("exponential", attempt, 10, 100)


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backoff strategy 'fibonacci'"):
        retry_delay_seconds("fibonacci", 1, 10, 100)  # type: ignore[arg-type]


def test_the_next_retry_is_measured_from_the_given_now() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    at = next_retry_at(now, "exponential", 2, 10, DAY, rng=FixedRandom(0.5))
    assert at == now + timedelta(seconds=21)
    assert next_retry_at(now, "linear", 9, 10, DAY) == now + timedelta(seconds=10)
