"""Durations and backoff: the pure helpers every option and retry goes through."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from timecrisis import InvalidDurationError
from timecrisis.durations import format_duration, parse_duration, parse_positive_duration
from timecrisis.retry import JITTER_FRACTION, retry_delay_seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("10s", timedelta(seconds=10)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 01s ", timedelta(seconds=1)),
        (3, timedelta(seconds=3)),
        (0.25, timedelta(milliseconds=250)),
        (0, timedelta(0)),
        (timedelta(minutes=1), timedelta(minutes=1)),
    ],
)
def test_every_accepted_form(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["", "5M", "1h30m", "-1s", "1.5", "ten s", True, None, float("nan"), float("inf"), -1,
     timedelta(seconds=-1), 1e20, [5], "5 minutes"],
)  # fmt: skip
def test_everything_else_is_an_invalid_duration(value: object) -> None:
    with pytest.raises(InvalidDurationError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert repr(value) in str(caught.value)


def test_positive_durations_refuse_zero() -> None:
    with pytest.raises(InvalidDurationError, match="greater than zero"):
        parse_positive_duration("0s")


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(milliseconds=250), "250ms"), (timedelta(seconds=90), "1m30s"),
     (timedelta(hours=26), "1d2h"), (timedelta(seconds=1.5), "1.500s")],
)  # fmt: skip
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_linear_backoff_waits_the_base_every_time() -> None:
    assert [retry_delay_seconds("linear", n, 10, 86400) for n in (1, 2, 5)] == [10, 10, 10]


def test_exponential_backoff_doubles_with_at_most_ten_percent_jitter() -> None:
    rng = random.Random(7)
    for attempt, base in ((1, 10), (2, 20), (3, 40)):
        for _ in range(50):
            delay = retry_delay_seconds("exponential", attempt, 10, 86400, rng=rng)
            assert base <= delay < base * (1 + JITTER_FRACTION)


def test_the_cap_includes_jitter_and_huge_attempts_stay_finite() -> None:
    assert retry_delay_seconds("exponential", 30, 10, 3600) == 3600
    huge = retry_delay_seconds("exponential", 10_000, 10, 86400)
    assert math.isfinite(huge) and huge == 86400


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        retry_delay_seconds("linear", 0, 10, 100)
