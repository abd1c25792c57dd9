"""`Retry` and `Snooze` (DESIGN §4): what a handler raises, and how fork mode carries them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from timecrisis import InvalidDurationError, NonRetryableError, Retry, Snooze, TimeCrisisError
from timecrisis.execution._supervisor import _control_of
from timecrisis.execution.failures import failure_kind
from timecrisis.execution.fork_errors import ForkedHandlerError, handler_error
from timecrisis.models import FailureKind


@pytest.mark.parametrize(
    "delay", [2, 2.0, "2s", "2000ms", timedelta(seconds=2)], ids=["int", "float", "s", "ms", "td"]
)
def test_every_duration_form_is_a_delay(delay: object) -> None:
    assert Retry(delay=delay).delay == timedelta(seconds=2)  # type: ignore[arg-type]
    assert Snooze(delay).delay == timedelta(seconds=2)  # type: ignore[arg-type]


def test_retry_without_a_delay_leaves_it_to_the_backoff() -> None:
    assert Retry().delay is None
    assert str(Retry()) == "retry requested by the handler (retry after the backoff)"
    assert str(Retry("1m30s", reason="quota")) == "quota (retry after 1m30s)"
    assert str(Snooze(0)) == "snoozed by the handler (for 0ms)"
    assert str(Snooze("5m", reason="upstream not ready")) == "upstream not ready (for 5m)"


@pytest.mark.parametrize("bad", [-1, "soon", float("nan"), "36501d", True, None])
def test_a_bad_delay_is_refused_where_it_is_raised(bad: object) -> None:
    with pytest.raises(InvalidDurationError):
        Snooze(bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(InvalidDurationError):
            Retry(delay=bad)  # type: ignore[arg-type]


def test_they_are_timecrisis_errors_and_retryable() -> None:
    for error in (Retry(), Snooze(1)):
        assert isinstance(error, TimeCrisisError)
        assert not isinstance(error, NonRetryableError)
    assert failure_kind(Retry()) is FailureKind.ERROR


def test_fork_mode_recreates_them_with_their_delay() -> None:
    retry = handler_error(
        "Retry", "timecrisis.errors", "busy (retry after 1s)", "tb", non_retryable=False,
        control="retry", delay=timedelta(seconds=1),
    )  # fmt: skip
    assert isinstance(retry, Retry) and isinstance(retry, ForkedHandlerError)
    assert retry.delay == timedelta(seconds=1)
    assert f"{type(retry).__name__}: {retry}" == "Retry: busy (retry after 1s)"
    snooze = handler_error(
        "Snooze", "timecrisis.errors", "x", "tb", non_retryable=False, control="snooze",
        delay=timedelta(0),
    )  # fmt: skip
    assert isinstance(snooze, Snooze) and Retry not in type(snooze).__mro__
    plain = handler_error("Retry", "timecrisis.errors", "x", "tb", non_retryable=False)
    assert not isinstance(plain, Retry)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"control": "retry", "delay_us": 1500}, ("retry", timedelta(microseconds=1500))),
        ({"control": "retry", "delay_us": None}, ("retry", None)),
        ({"control": "snooze", "delay_us": 0}, ("snooze", timedelta(0))),
        ({"control": "snooze", "delay_us": None}, None),
        ({"control": "snooze", "delay_us": -1}, None),
        ({"control": "snooze", "delay_us": 1.5}, None),
        ({"control": "snooze", "delay_us": True}, None),
        ({"control": "retry", "delay_us": 10**30}, None),
        ({"control": "other", "delay_us": 1}, None),
        ({}, None),
    ],
)
def test_a_childs_control_report_is_read_strictly(
    report: dict[str, object], expected: object
) -> None:
    assert _control_of(report) == expected
