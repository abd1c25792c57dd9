"""Durations: the one parser every option that takes a length of time goes through."""

from __future__ import annotations

from datetime import timedelta

import pytest

from timecrisis import InvalidDurationError
from timecrisis.durations import (
    format_duration,
    parse_duration,
    parse_optional_duration,
    parse_positive_duration,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("10s", timedelta(seconds=10)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        ("0.25s", timedelta(milliseconds=250)),
        ("1.5ms", timedelta(microseconds=1500)),
        ("007m", timedelta(minutes=7)),
        (" 10s ", timedelta(seconds=10)),
        ("\t2h\n", timedelta(hours=2)),
        ("5 m", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        ("999999999d", timedelta(days=999_999_999)),
        (3, timedelta(seconds=3)),
        (0, timedelta(0)),
        (0.25, timedelta(milliseconds=250)),
        (-0.0, timedelta(0)),
        (86400 * 365, timedelta(days=365)),
        (timedelta(minutes=1), timedelta(minutes=1)),
        (timedelta(0), timedelta(0)),
        (timedelta.max, timedelta.max),
    ],
)
def test_every_accepted_form(value: float | timedelta | str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", None),
        ("   ", None),
        ("5M", None),  # units are case-sensitive: M could mean months
        ("5S", None),
        ("1h30", None),  # every number needs its unit
        ("-1s", None),
        ("+1s", None),
        ("1.5", None),  # a string needs a unit
        ("10", None),
        (".5s", None),
        ("5.s", None),
        ("1e3s", None),
        ("5 minutes", None),
        ("ten s", None),
        ("5s5", None),
        ("inf s", None),
        ("nans", None),
        (True, "a bool is not a duration"),
        (False, "a bool is not a duration"),
        (None, "unsupported type NoneType"),
        ([5], "unsupported type list"),
        (b"5s", "unsupported type bytes"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        (float("-inf"), "must be finite"),
        (-1, "must not be negative"),
        (-0.001, "must not be negative"),
        (timedelta(microseconds=-1), "must not be negative"),
        (1e20, "too large"),
        (10**15, "too large"),
        ("1000000000000000s", "too large"),
        ("1" * 400 + "s", "must be finite"),  # beyond float range: honest, if not the best words
    ],
)
def test_everything_else_is_an_invalid_duration_that_names_the_value(
    value: object, reason: str | None
) -> None:
    with pytest.raises(InvalidDurationError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.value is value
    assert repr(value) in str(error)
    assert "'500ms'" in str(error)  # the message shows the accepted forms
    if reason is not None:
        assert reason in str(error)


@pytest.mark.parametrize("value", [86_400_000_000_000.0, "1000000000d"])
def test_the_float_boundary_of_timedelta_is_an_invalid_duration(value: float | str) -> None:
    with pytest.raises(InvalidDurationError, match="too large"):
        parse_duration(value)


def test_an_int_beyond_the_float_range_is_an_invalid_duration() -> None:
    with pytest.raises(InvalidDurationError, match="too large"):
        parse_duration(10**400)


@pytest.mark.parametrize("value", ["\u0665s", "\uff15s"])  # ARABIC-INDIC FIVE, FULLWIDTH FIVE
def test_non_ascii_digits_are_refused(value: str) -> None:
    with pytest.raises(InvalidDurationError):
        parse_duration(value)


def test_a_sub_microsecond_duration_rounds_to_the_nearest_microsecond() -> None:
    assert parse_duration("0.0004ms") == timedelta(0)
    assert parse_duration(0.0000016) == timedelta(microseconds=2)


def test_optional_durations_pass_none_through() -> None:
    assert parse_optional_duration(None) is None
    assert parse_optional_duration("1m") == timedelta(minutes=1)
    with pytest.raises(InvalidDurationError):
        parse_optional_duration("soon")


@pytest.mark.parametrize("value", ["0s", "0ms", 0, 0.0, timedelta(0), 1e-7, "0.0001ms"])
def test_positive_durations_refuse_zero_and_what_rounds_to_zero(value: object) -> None:
    with pytest.raises(InvalidDurationError, match="greater than zero"):
        parse_positive_duration(value)  # type: ignore[arg-type]


def test_positive_durations_accept_one_microsecond_and_refuse_negatives() -> None:
    assert parse_positive_duration(timedelta(microseconds=1)) == timedelta(microseconds=1)
    with pytest.raises(InvalidDurationError, match="must not be negative"):
        parse_positive_duration(-5)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0ms"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(milliseconds=999), "999ms"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=1.5), "1.500s"),
        (timedelta(seconds=59, milliseconds=1), "59.001s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(hours=26), "1d2h"),
        (timedelta(days=3), "3d"),
        (timedelta(days=1, milliseconds=5), "1d0.005s"),
        (timedelta(microseconds=400), "0ms"),  # shown to the millisecond
        (timedelta(microseconds=1600), "2ms"),
        (timedelta(seconds=59, microseconds=999_600), "1m"),
    ],
)
def test_format_duration_gives_a_short_human_form(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["250ms", "1s", "5m", "2h", "3d", "1.500s"])
def test_a_single_unit_format_parses_back(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_every_formatted_duration_parses_back() -> None:
    assert parse_duration(format_duration(timedelta(seconds=90))) == timedelta(seconds=90)
    assert parse_duration("1d0.005s") == timedelta(days=1, milliseconds=5)
    assert parse_duration("1h 30m") == timedelta(hours=1, minutes=30)


@pytest.mark.parametrize("value", ["1h30", "h30m", "1h-30m", "1.h", "1 h 30"])
def test_a_compound_duration_needs_a_unit_on_every_part(value: str) -> None:
    with pytest.raises(InvalidDurationError):
        parse_duration(value)
