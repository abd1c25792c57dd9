"""`RateLimit.parse` and the flow-control fields of `JobDefinition`: bad input is a
`JobValidationError` at definition time, never a surprise at the first claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from timecrisis import JobDefinition, JobValidationError, RateLimit
from timecrisis.rate_limits import MAX_RATE_LIMIT


class Empty(BaseModel):
    pass


async def _handle(data: Empty, ctx: object) -> None:
    pass


def _define(**fields: Any) -> JobDefinition[Empty]:
    return JobDefinition(type="t", schema=Empty, handle=_handle, concurrency=None, **fields)


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("100/m", 100, timedelta(minutes=1)),
        ("5/s", 5, timedelta(seconds=1)),
        ("1000/h", 1000, timedelta(hours=1)),
        (" 7 / s ", 7, timedelta(seconds=1)),
        (f"{MAX_RATE_LIMIT}/h", MAX_RATE_LIMIT, timedelta(hours=1)),
    ],
)
def test_good_rate_limits_parse(text: str, limit: int, window: timedelta) -> None:
    rate = RateLimit.parse(text)
    assert (rate.limit, rate.window) == (limit, window)
    assert RateLimit.parse(str(rate)) == rate


@pytest.mark.parametrize(
    "text",
    ["0/s", "abc", "5/d", "-5/s", "5/-s", f"{MAX_RATE_LIMIT + 1}/s", "10**9/s", "5", "/s",
     "5/S", "5/sec", "٥/s", "", "5//s", "1.5/s"],
)  # fmt: skip
def test_bad_rate_limits_are_typed_errors(text: str) -> None:
    with pytest.raises(JobValidationError, match="rate_limit"):
        RateLimit.parse(text)
    with pytest.raises(JobValidationError, match="rate_limit"):
        _define(rate_limit=text)


@pytest.mark.parametrize("value", [5, 5.0, b"5/s", ("5", "s")])
def test_a_rate_limit_that_is_not_a_string_is_a_typed_error(value: object) -> None:
    with pytest.raises(JobValidationError, match="rate_limit must be a string"):
        _define(rate_limit=value)


def test_the_definition_keeps_the_parsed_rate_limit() -> None:
    assert _define(rate_limit="3/m").rate_limit_parsed == RateLimit(3, timedelta(minutes=1))
    assert _define().rate_limit_parsed is None


@pytest.mark.parametrize("value", [0, -1, True, "2", 2.0, 10**7])
def test_bad_key_concurrency_is_a_typed_error(value: object) -> None:
    with pytest.raises(JobValidationError, match="key_concurrency"):
        _define(key_concurrency=value)


def test_a_rate_limit_value_object_checks_itself() -> None:
    with pytest.raises(JobValidationError):
        RateLimit(0, timedelta(seconds=1))
    with pytest.raises(JobValidationError):
        RateLimit(1, timedelta(days=1))
