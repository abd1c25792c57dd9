"""Fire-time computation: cron in time zones across DST (Debian cron's rules), intervals, exact
times, the missed-tick policy, and validation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from timecrisis import InvalidScheduleError, preview_schedule
from timecrisis.schedules import parse_schedule, plan_tick, validate_not_past

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def _local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).isoformat() for t in times]


def test_a_daily_cron_follows_its_zone_across_the_year() -> None:
    winter = preview_schedule(
        "cron",
        "0 9 * * *",
        time_zone="America/New_York",
        after=datetime(2025, 1, 10, tzinfo=UTC),
        count=1,
    )
    summer = preview_schedule(
        "cron",
        "0 9 * * *",
        time_zone="America/New_York",
        after=datetime(2025, 7, 10, tzinfo=UTC),
        count=1,
    )
    assert winter == [datetime(2025, 1, 10, 14, tzinfo=UTC)]
    assert summer == [datetime(2025, 7, 10, 13, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # Spring forward: 02:00 → 03:00. 02:30 does not exist: it fires once, right after the gap.
        (NEW_YORK, datetime(2025, 3, 8, 12),
         ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"]),
        (PARIS, datetime(2025, 3, 29, 12),
         ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ],
)  # fmt: skip
def test_a_fixed_time_skipped_by_spring_forward_fires_once_after_the_gap(
    zone: ZoneInfo, day: datetime, expected: list[str]
) -> None:
    times = preview_schedule(
        "cron", "30 2 * * *", time_zone=str(zone), after=day.replace(tzinfo=zone), count=2
    )
    assert _local(times, zone) == expected


@pytest.mark.parametrize(
    ("zone", "day", "expression", "expected"),
    [
        # Fall back: the 01:xx hour (NY) / 02:xx hour (Paris) happens twice; fire the first only.
        (NEW_YORK, datetime(2025, 11, 1, 12), "30 1 * * *",
         ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]),
        (PARIS, datetime(2025, 10, 25, 12), "30 2 * * *",
         ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
    ],
)  # fmt: skip
def test_a_fixed_time_in_the_repeated_hour_fires_once(
    zone: ZoneInfo, day: datetime, expression: str, expected: list[str]
) -> None:
    times = preview_schedule(
        "cron", expression, time_zone=str(zone), after=day.replace(tzinfo=zone), count=2
    )
    assert _local(times, zone) == expected


def test_wildcard_expressions_keep_real_intervals_on_a_fall_back_night() -> None:
    times = preview_schedule(
        "cron",
        "*/30 * * * *",
        time_zone="America/New_York",
        after=datetime(2025, 11, 2, 0, 50, tzinfo=NEW_YORK),
        count=5,
    )
    assert _local(times, NEW_YORK) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:30:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(minutes=30)}


@pytest.mark.parametrize(
    ("zone", "after"),
    [(PARIS, datetime(2025, 3, 30, 0, 30)), (PARIS, datetime(2025, 10, 26, 0, 30)),
     (NEW_YORK, datetime(2025, 3, 9, 0, 30)), (NEW_YORK, datetime(2025, 11, 2, 0, 30))],
)  # fmt: skip
def test_an_hourly_cron_fires_every_real_hour_across_transitions(
    zone: ZoneInfo, after: datetime
) -> None:
    times = preview_schedule(
        "cron", "0 * * * *", time_zone=str(zone), after=after.replace(tzinfo=zone), count=5
    )
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(hours=1)}


def test_six_fields_put_seconds_first() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    assert preview_schedule("cron", "*/15 * * * * *", after=after, count=3) == [
        after + timedelta(seconds=15), after + timedelta(seconds=30), after + timedelta(seconds=45)
    ]  # fmt: skip


def test_an_interval_fires_one_interval_after_registration_then_at_a_fixed_rate() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    assert preview_schedule("interval", "500ms", after=after, count=3) == [
        after + timedelta(milliseconds=500 * n) for n in (1, 2, 3)
    ]


def test_an_exact_time_fires_once() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    at = "2025-01-02T09:00:00+01:00"
    assert preview_schedule("exact", at, after=after, count=5) == [
        datetime(2025, 1, 2, 8, tzinfo=UTC)
    ]
    assert preview_schedule("exact", at, after=datetime(2025, 2, 1, tzinfo=UTC)) == []
    parsed = parse_schedule("exact", at)
    with pytest.raises(InvalidScheduleError, match="in the past"):
        validate_not_past(parsed, datetime(2025, 3, 1, tzinfo=UTC))
    validate_not_past(parsed, after)


@pytest.mark.parametrize(
    ("schedule_type", "value", "zone"),
    [
        ("cron", "* * * *", None),
        ("cron", "* * * * * * *", None),
        ("cron", "61 * * * *", None),
        ("cron", "0 25 * * *", None),
        ("cron", "0 0 30 2 *", None),
        ("cron", "0 0 31 4,6,9,11 *", None),
        ("cron", "0 9 * * *", "Mars/Olympus"),
        ("cron", "0 9 * * *", ""),
        ("cron", "0 9 * * *", "../../etc/passwd"),
        ("interval", "often", None),
        ("interval", "0s", None),
        ("interval", "-5m", None),
        ("exact", "next tuesday", None),
        ("exact", "2030-01-01T09:00:00", None),
        ("hourly", "0", None),
        ("cron", "", None),
    ],
)
def test_invalid_schedules_are_refused(schedule_type: str, value: str, zone: str | None) -> None:
    with pytest.raises(InvalidScheduleError):
        parse_schedule(schedule_type, value, zone)


def test_preview_refuses_a_naive_start_and_a_bad_count() -> None:
    with pytest.raises(InvalidScheduleError):
        preview_schedule("interval", "1m", after=datetime(2025, 1, 1))
    with pytest.raises(InvalidScheduleError):
        preview_schedule("interval", "1m", count=0)


# ---- the missed-tick policy ------------------------------------------------------------------

STALE = timedelta(hours=1)
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_a_tick_due_now_fires_and_the_next_is_scheduled() -> None:
    plan = plan_tick(parse_schedule("interval", "5m"), NOW, NOW, STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (
        NOW,
        NOW + timedelta(minutes=5),
        False,
    )


def test_many_missed_interval_ticks_fire_once_and_stay_on_the_grid() -> None:
    due = NOW - timedelta(minutes=12)  # ticks at -12, -7, -2 minutes were missed
    plan = plan_tick(parse_schedule("interval", "5m"), due, NOW, STALE)
    assert plan.fire_at == NOW - timedelta(minutes=2)
    assert plan.next_run_at == NOW + timedelta(minutes=3)


def test_many_missed_cron_ticks_fire_once_the_newest() -> None:
    due = NOW - timedelta(minutes=10, seconds=30)
    plan = plan_tick(parse_schedule("cron", "* * * * *"), due, NOW, STALE)
    assert plan.fire_at == NOW
    assert plan.next_run_at == NOW + timedelta(minutes=1)


def test_ticks_older_than_the_stale_age_are_skipped() -> None:
    plan = plan_tick(parse_schedule("cron", "0 0 * * *"), NOW - timedelta(hours=12), NOW, STALE)
    assert plan.fire_at is None
    assert plan.next_run_at == datetime(2025, 6, 2, tzinfo=UTC)


def test_an_exact_schedule_fires_once_then_disables_or_is_skipped_when_stale() -> None:
    parsed = parse_schedule("exact", "2025-06-01T11:59:00Z")
    fresh = plan_tick(parsed, NOW - timedelta(minutes=1), NOW, STALE)
    assert (fresh.fire_at, fresh.next_run_at, fresh.disable) == (
        NOW - timedelta(minutes=1), None, True
    )  # fmt: skip
    stale = plan_tick(parsed, NOW - timedelta(minutes=1), NOW + timedelta(hours=2), STALE)
    assert (stale.fire_at, stale.next_run_at, stale.disable) == (None, None, True)


def test_a_month_of_downtime_costs_one_step_not_millions() -> None:
    parsed = parse_schedule("cron", "* * * * * *")  # every second: 2.6M missed ticks
    plan = plan_tick(parsed, NOW - timedelta(days=30), NOW, STALE)
    assert plan.fire_at == NOW
    assert plan.next_run_at == NOW + timedelta(seconds=1)
    interval = plan_tick(parse_schedule("interval", "1ms"), NOW - timedelta(days=30), NOW, STALE)
    assert interval.fire_at == NOW
