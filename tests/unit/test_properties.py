"""Property-based checks (hypothesis) of the pure helpers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from timecrisis.durations import format_duration, parse_duration
from timecrisis.retry import retry_delay_seconds
from timecrisis.schedules import parse_schedule, plan_tick, preview_schedule

ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"]
EXPRESSIONS = ["30 2 * * *", "0 * * * *", "*/30 * * * *", "15 1,2,3 * * *", "0 0 * * 0",
               "*/7 * * * * *", "0 3 29 2 *"]  # fmt: skip
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_every_unit_means_what_it_says(count: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{count}{unit}") == timedelta(seconds=count * seconds)
    # The display form always names at least one unit and never comes out empty.
    assert format_duration(parse_duration(f"{count}{unit}"))


@given(
    st.sampled_from(["linear", "exponential"]),
    st.integers(min_value=1, max_value=500),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e7),
)
def test_backoff_is_never_negative_nor_above_the_cap(
    strategy: str, attempt: int, base: float, cap: float
) -> None:
    delay = retry_delay_seconds(strategy, attempt, base, cap)  # type: ignore[arg-type]
    assert 0 <= delay <= cap


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES), instants)
def test_cron_fire_times_increase_and_are_real_wall_times(
    expression: str, zone: str, after: datetime
) -> None:
    times = preview_schedule("cron", expression, time_zone=zone, after=after, count=6)
    assert times[0] > after
    assert all(a < b for a, b in itertools.pairwise(times))
    tz = ZoneInfo(zone)
    for t in times:
        local = t.astimezone(tz)
        # A real wall time: converting the local reading back gives the same instant.
        assert local.replace(tzinfo=None).replace(tzinfo=tz).astimezone(UTC) in (
            t, t.astimezone(tz).replace(fold=1).astimezone(UTC)
        )  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([("cron", "*/5 * * * *"), ("cron", "0 9 * * *"), ("interval", "7s"),
                     ("interval", "3h")]),
    instants,
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**6),
)  # fmt: skip
def test_plan_tick_fires_a_recent_tick_and_moves_past_now(
    schedule: tuple[str, str], due: datetime, lag_s: int, stale_s: int
) -> None:
    parsed = parse_schedule(*schedule)
    now = due + timedelta(seconds=lag_s)
    stale = timedelta(seconds=stale_s)
    plan = plan_tick(parsed, due, now, stale)
    assert plan.next_run_at is not None and plan.next_run_at > now
    if plan.fire_at is not None:
        assert due <= plan.fire_at <= now
        assert now - plan.fire_at <= stale
