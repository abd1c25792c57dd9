"""Fire times: cron in time zones across DST (Debian cron's rules), intervals, exact times,
validation, `preview_schedule`, and the missed-tick policy of `plan_tick`.

Local wall times in the expectations are written as ISO strings with their offset, so every
expected value says which pass of a repeated hour it means."""

from __future__ import annotations

import itertools
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

import timecrisis._cron
from timecrisis import InvalidDurationError, InvalidScheduleError, preview_schedule
from timecrisis.schedules import (
    ParsedSchedule,
    canonical_schedule_value,
    first_fire_at,
    parse_schedule,
    plan_tick,
    validate_not_past,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).isoformat() for t in times]


def preview_local(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[str]:
    """Preview a cron in `zone` from `after` (a naive local time, or an aware instant)."""
    start = after if after.tzinfo is not None else after.replace(tzinfo=zone)
    times = preview_schedule("cron", expression, time_zone=str(zone), after=start, count=count)
    assert all(t.tzinfo is UTC for t in times)
    return local(times, zone)


def gaps(times: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in itertools.pairwise(times)}


# ---- cron: fields and zones --------------------------------------------------------------------


def test_a_five_field_cron_fires_on_its_weekdays_in_utc_by_default() -> None:
    friday = datetime(2025, 1, 3, 12, tzinfo=UTC)
    assert preview_schedule("cron", "0 9 * * 1-5", after=friday, count=3) == [
        datetime(2025, 1, 6, 9, tzinfo=UTC),
        datetime(2025, 1, 7, 9, tzinfo=UTC),
        datetime(2025, 1, 8, 9, tzinfo=UTC),
    ]


def test_six_fields_put_seconds_first() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    assert preview_schedule("cron", "*/15 * * * * *", after=after, count=3) == [
        after + timedelta(seconds=15),
        after + timedelta(seconds=30),
        after + timedelta(seconds=45),
    ]
    assert preview_schedule("cron", "30 0 12 * * *", after=after, count=1) == [
        datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)
    ]


def test_the_next_fire_is_strictly_after_the_start_even_within_the_same_second() -> None:
    parsed = parse_schedule("cron", "* * * * * *")
    exactly = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert parsed.next_fire_after(exactly) == exactly + timedelta(seconds=1)
    assert parsed.next_fire_after(exactly + timedelta(microseconds=1)) == exactly + timedelta(
        seconds=1
    )


def test_a_daily_cron_follows_its_zone_across_the_year() -> None:
    parsed = parse_schedule("cron", "0 9 * * *", "America/New_York")
    winter = parsed.next_fire_after(datetime(2025, 1, 10, tzinfo=UTC))
    summer = parsed.next_fire_after(datetime(2025, 7, 10, tzinfo=UTC))
    assert winter == datetime(2025, 1, 10, 14, tzinfo=UTC)  # 09:00 EST
    assert summer == datetime(2025, 7, 10, 13, tzinfo=UTC)  # 09:00 EDT


def test_an_aware_start_in_any_zone_means_the_same_instant() -> None:
    tokyo = datetime(2025, 7, 10, 9, tzinfo=ZoneInfo("Asia/Tokyo"))  # 00:00 UTC
    in_utc = preview_schedule("cron", "0 9 * * *", time_zone="America/New_York", after=tokyo)
    assert in_utc[0] == datetime(2025, 7, 10, 13, tzinfo=UTC)


# ---- cron: DST, fixed times ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day_before", "expected"),
    [
        # Spring forward 02:00 → 03:00: 02:30 does not exist; it fires once, when the gap ends.
        (NEW_YORK, datetime(2025, 3, 8, 12),
         ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"]),
        (PARIS, datetime(2025, 3, 29, 12),
         ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_a_fixed_time_skipped_by_spring_forward_fires_once_after_the_gap(
    zone: ZoneInfo, day_before: datetime, expected: list[str], expression: str
) -> None:
    # The 6-field form (seconds first) follows the same rule as the 5-field one.
    assert preview_local(expression, zone, day_before, 2) == expected


def test_several_fixed_times_inside_the_gap_fire_once_together() -> None:
    times = preview_local("0,30 2 * * *", NEW_YORK, datetime(2025, 3, 8, 12), 3)
    assert times == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:00:00-04:00",
        "2025-03-10T02:30:00-04:00",
    ]


def test_a_skipped_time_and_a_regular_tick_at_the_end_of_the_gap_are_one_tick() -> None:
    times = preview_local("0 2,3 * * *", NEW_YORK, datetime(2025, 3, 9, 0, 30), 3)
    assert times == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:00:00-04:00",
        "2025-03-10T03:00:00-04:00",
    ]


@pytest.mark.parametrize(
    ("zone", "day_before", "expression", "expected"),
    [
        # Fall back: NY repeats 01:xx (EDT then EST), Paris repeats 02:xx (CEST then CET).
        (NEW_YORK, datetime(2025, 11, 1, 12), "30 1 * * *",
         ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]),
        (PARIS, datetime(2025, 10, 25, 12), "30 2 * * *",
         ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
        (NEW_YORK, datetime(2025, 11, 1, 12), "0 30 1 * * *",
         ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]),
    ],
)  # fmt: skip
def test_a_fixed_time_in_the_repeated_hour_fires_once_the_first(
    zone: ZoneInfo, day_before: datetime, expression: str, expected: list[str]
) -> None:
    assert preview_local(expression, zone, day_before, 2) == expected


@pytest.mark.parametrize(
    "after",
    [
        datetime(2025, 11, 2, 6, 0, tzinfo=UTC),  # 01:00 EST: the second pass starts
        datetime(2025, 11, 2, 6, 10, tzinfo=UTC),  # 01:10 EST: before 01:30 on the wall
        datetime(2025, 11, 2, 6, 45, tzinfo=UTC),  # 01:45 EST: after it
    ],
)
def test_starting_in_the_second_pass_never_goes_back_to_the_first(after: datetime) -> None:
    # cronsim alone answers 01:30 EDT here (05:30 UTC), before the start: a schedule would stay
    # due forever. The second pass has nothing left to fire, so the next tick is tomorrow.
    parsed = parse_schedule("cron", "30 1 * * *", "America/New_York")
    assert parsed.next_fire_after(after) == datetime(2025, 11, 3, 6, 30, tzinfo=UTC)


def test_fixed_times_work_in_a_zone_whose_shift_is_half_an_hour() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2025-10-05: 02:00 +10:30 → 02:30 +11:00
    times = preview_local("15 2 * * *", lord_howe, datetime(2025, 10, 4, 12), 2)
    assert times == ["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"]


def test_a_fixed_time_inside_a_skipped_day_fires_when_the_day_resumes() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 did not happen in Samoa
    times = preview_local("0 9 * * *", apia, datetime(2011, 12, 29, 12), 2)
    assert times == ["2011-12-31T00:00:00+14:00", "2011-12-31T09:00:00+14:00"]


# ---- cron: DST, wildcards keep real intervals ---------------------------------------------------


def test_a_half_hourly_cron_fires_at_both_one_thirties_of_a_fall_back_night() -> None:
    start = datetime(2025, 11, 2, 0, 50, tzinfo=NEW_YORK)
    times = preview_schedule("cron", "*/30 * * * *", time_zone="America/New_York", after=start)
    assert local(times, NEW_YORK) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:30:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]
    assert gaps(times) == {timedelta(minutes=30)}


def test_a_half_hourly_cron_skips_the_missing_hour_of_a_spring_forward_night() -> None:
    start = datetime(2025, 3, 9, 1, 10, tzinfo=NEW_YORK)
    times = preview_schedule(
        "cron", "*/30 * * * *", time_zone="America/New_York", after=start, count=3
    )
    assert local(times, NEW_YORK) == [
        "2025-03-09T01:30:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:30:00-04:00",
    ]
    assert gaps(times) == {timedelta(minutes=30)}


@pytest.mark.parametrize(
    ("zone", "after"),
    [(PARIS, datetime(2025, 3, 30, 0, 30)), (PARIS, datetime(2025, 10, 26, 0, 30)),
     (NEW_YORK, datetime(2025, 3, 9, 0, 30)), (NEW_YORK, datetime(2025, 11, 2, 0, 30)),
     (ZoneInfo("America/Santiago"), datetime(2025, 9, 6, 22, 30))],  # spring forward at midnight
)  # fmt: skip
def test_an_hourly_cron_fires_every_real_hour_across_transitions(
    zone: ZoneInfo, after: datetime
) -> None:
    times = preview_schedule(
        "cron", "0 * * * *", time_zone=str(zone), after=after.replace(tzinfo=zone), count=5
    )
    assert gaps(times) == {timedelta(hours=1)}
    assert {t.astimezone(zone).minute for t in times} == {0}


def test_wildcards_in_a_half_hour_shift_zone_fire_at_every_wall_time_that_exists() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2025-10-05: 02:00 +10:30 → 02:30 +11:00
    # cronsim alone skips 03:00-03:29 here: it steps an hour from 02:00, which does not exist.
    minutes = preview_local("* 3 * * *", lord_howe, datetime(2025, 10, 5, 2, 40), 2)
    assert minutes == ["2025-10-05T03:00:00+11:00", "2025-10-05T03:01:00+11:00"]
    # The clock never shows 02:00 that night, so the hourly tick after 01:00 is 03:00.
    hours = preview_local("0 * * * *", lord_howe, datetime(2025, 10, 5, 0, 30), 3)
    assert hours == [
        "2025-10-05T01:00:00+10:30",
        "2025-10-05T03:00:00+11:00",
        "2025-10-05T04:00:00+11:00",
    ]


def test_a_listed_hour_range_counts_as_fixed_times_as_in_debian_cron() -> None:
    # Debian decides by the leading `*`: `0 0-23` names wall times (the repeated 01:00 fires
    # once), `0 *` names a rhythm (every real hour).
    listed = preview_local("0 0-23 * * *", NEW_YORK, datetime(2025, 11, 2, 0, 30), 2)
    starred = preview_local("0 * * * *", NEW_YORK, datetime(2025, 11, 2, 0, 30), 3)
    assert listed == ["2025-11-02T01:00:00-04:00", "2025-11-02T02:00:00-05:00"]
    assert starred == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


# ---- intervals and exact times -----------------------------------------------------------------


def test_an_interval_fires_one_interval_after_registration_then_at_a_fixed_rate() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    assert preview_schedule("interval", "500ms", after=after, count=3) == [
        after + timedelta(milliseconds=500 * n) for n in (1, 2, 3)
    ]
    parsed = parse_schedule("interval", "1.5h")
    assert parsed.first_fire(after) == after + timedelta(minutes=90)
    assert parsed.next_fire_after(after + timedelta(minutes=90)) == after + timedelta(hours=3)


def test_an_interval_ignores_its_time_zone_but_keeps_it() -> None:
    parsed = parse_schedule("interval", "10m", "Europe/Paris")
    assert parsed.time_zone == "Europe/Paris"
    fall_back = datetime(2025, 10, 26, 0, 55, tzinfo=UTC)
    assert parsed.next_fire_after(fall_back) == fall_back + timedelta(minutes=10)


def test_an_exact_time_fires_once_at_its_instant() -> None:
    at = "2025-01-02T09:00:00+01:00"
    before = datetime(2025, 1, 1, tzinfo=UTC)
    assert preview_schedule("exact", at, after=before, count=5) == [
        datetime(2025, 1, 2, 8, tzinfo=UTC)
    ]
    assert preview_schedule("exact", at, after=datetime(2025, 1, 2, 8, tzinfo=UTC)) == []
    parsed = parse_schedule("exact", at, "America/New_York")  # the offset decides, not the zone
    assert parsed.instant == datetime(2025, 1, 2, 8, tzinfo=UTC)
    assert parsed.first_fire(before) == parsed.instant


def test_an_exact_time_accepts_z_and_keeps_the_value_as_written() -> None:
    parsed = parse_schedule("exact", "  2030-06-01T12:00:00Z ")
    assert parsed.schedule_value == "2030-06-01T12:00:00Z"
    assert parsed.instant == datetime(2030, 6, 1, 12, tzinfo=UTC)


def test_an_exact_time_in_the_past_is_refused_when_scheduling() -> None:
    parsed = parse_schedule("exact", "2025-01-02T09:00:00+01:00")
    validate_not_past(parsed, datetime(2025, 1, 2, 8, tzinfo=UTC))  # due now: accepted
    with pytest.raises(InvalidScheduleError, match="in the past"):
        validate_not_past(parsed, datetime(2025, 1, 2, 8, 0, 1, tzinfo=UTC))
    # Only exact schedules have a past.
    validate_not_past(parse_schedule("cron", "0 0 1 1 *"), datetime(2099, 1, 1, tzinfo=UTC))


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule_type", "value", "zone", "message"),
    [
        ("hourly", "0", None, "schedule_type must be one of cron, interval, exact"),
        ("cron", "", None, "must not be empty"),
        ("cron", "   ", None, "must not be empty"),
        ("cron", "* * * *", None, "5 fields .* or 6 with seconds first; got 4"),
        ("cron", "* * * * * * *", None, "got 7"),
        ("cron", "@daily", None, "got 1"),
        ("cron", "61 * * * *", None, "bad minute field '61'"),
        ("cron", "0 25 * * *", None, "bad hour field '25'"),
        ("cron", "60 0 0 * * *", None, "bad second field '60'"),
        ("cron", "0 0 * 13 *", None, "bad month field '13'"),
        ("cron", "0 0 * * 8", None, "bad day-of-week field '8'"),
        ("cron", "0 0 ? * *", None, "bad day-of-month field '\\?'"),
        ("cron", "*/0 * * * *", None, "bad minute field"),
        ("cron", "0 0 30 2 *", None, "can never fire: day-of-month '30' does not occur"),
        ("cron", "0 0 31 4,6,9,11 *", None, "can never fire: day-of-month '31'"),
        ("cron", "0 0 */30 2 MON#5", None, "can never fire: no date of a whole 28-year"),
        ("cron", "0 9 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("cron", "0 9 * * *", "", "unknown time zone ''"),
        ("cron", "0 9 * * *", "../../etc/passwd", "unknown time zone"),
        ("cron", "0 9 * * *", "/usr/share/zoneinfo/UTC", "unknown time zone"),
        ("cron", "0 9 * * *", "europe/paris", "unknown time zone"),
        ("cron", "0 9 * * *", "Europe/Paris ", "unknown time zone"),
        ("cron", "0 9 * * *", "localtime", "unknown time zone"),
        ("interval", "often", None, "invalid interval 'often'"),
        ("interval", "1h30", None, "invalid interval"),
        ("interval", "0s", None, "greater than zero"),
        ("interval", "-5m", None, "invalid interval"),
        ("exact", "next tuesday", None, "needs an ISO-8601 datetime with an offset"),
        ("exact", "2030-01-01T09:00:00", None, "must carry an offset"),
        ("exact", "2030-01-01", None, "must carry an offset"),
        ("exact", "2030-02-30T09:00:00Z", None, "ISO-8601"),
    ],
)
def test_invalid_schedules_are_refused_with_a_clear_message(
    schedule_type: str, value: str, zone: str | None, message: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=message) as caught:
        parse_schedule(schedule_type, value, zone)
    assert isinstance(caught.value, ValueError)


def test_a_valid_but_rare_cron_is_accepted() -> None:
    # The fifth Monday of February is a 29th: 2016, 2044, 2072, then not before 2112.
    parsed = parse_schedule("cron", "0 0 * 2 MON#5")
    assert parsed.next_fire_after(datetime(2017, 1, 1, tzinfo=UTC)) == datetime(
        2044, 2, 29, tzinfo=UTC
    )


def test_a_non_string_value_or_zone_is_refused() -> None:
    with pytest.raises(InvalidScheduleError, match=r"must be a string .*got int 300"):
        parse_schedule("interval", 300)  # type: ignore[arg-type]
    with pytest.raises(InvalidScheduleError, match="IANA zone name"):
        parse_schedule("cron", "0 9 * * *", PARIS)  # type: ignore[arg-type]


def test_an_invalid_interval_keeps_the_duration_error_as_its_cause() -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        parse_schedule("interval", "5 minutes")
    assert isinstance(caught.value.__cause__, InvalidDurationError)


def test_the_zone_is_checked_for_every_type() -> None:
    with pytest.raises(InvalidScheduleError, match="unknown time zone"):
        parse_schedule("interval", "5m", "Nowhere/City")
    with pytest.raises(InvalidScheduleError, match="unknown time zone"):
        parse_schedule("exact", "2030-01-01T00:00:00Z", "Nowhere/City")


def test_a_parsed_schedule_is_normalized_and_immutable() -> None:
    parsed = parse_schedule("cron", "  0   9 * *\t1-5 ", "Europe/Paris")
    assert (parsed.schedule_type, parsed.schedule_value, parsed.time_zone) == (
        "cron", "0 9 * * 1-5", "Europe/Paris"
    )  # fmt: skip
    assert parsed == parse_schedule("cron", "0 9 * * 1-5", "Europe/Paris")
    with pytest.raises(FrozenInstanceError):
        parsed.schedule_value = "* * * * *"  # type: ignore[misc]


def test_naive_datetimes_are_refused_everywhere() -> None:
    parsed = parse_schedule("cron", "* * * * *")
    naive = datetime(2025, 1, 1)
    aware = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidScheduleError, match="after must be a timezone-aware"):
        parsed.next_fire_after(naive)
    with pytest.raises(InvalidScheduleError, match="due_at must be"):
        plan_tick(parsed, naive, aware, timedelta(hours=1))
    with pytest.raises(InvalidScheduleError, match="now must be"):
        plan_tick(parsed, aware, naive, timedelta(hours=1))
    with pytest.raises(InvalidScheduleError, match="now must be"):
        validate_not_past(parse_schedule("exact", "2030-01-01T00:00:00Z"), naive)


# ---- preview_schedule ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, True, 2.0, "5"])
def test_preview_refuses_a_bad_count(count: object) -> None:
    with pytest.raises(InvalidScheduleError, match="count must be an int >= 1"):
        preview_schedule("interval", "1m", count=count)  # type: ignore[arg-type]


def test_preview_refuses_a_naive_or_non_datetime_start() -> None:
    with pytest.raises(InvalidScheduleError, match="timezone-aware"):
        preview_schedule("interval", "1m", after=datetime(2025, 1, 1))
    with pytest.raises(InvalidScheduleError, match="must be a datetime"):
        preview_schedule("interval", "1m", after="2025-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_preview_reports_an_invalid_schedule() -> None:
    with pytest.raises(InvalidScheduleError, match="bad minute"):
        preview_schedule("cron", "61 * * * *")


def test_preview_starts_from_now_by_default() -> None:
    before = datetime.now(UTC)
    times = preview_schedule("interval", "1h", count=2)
    after = datetime.now(UTC)
    assert before + timedelta(hours=1) <= times[0] <= after + timedelta(hours=1)
    assert times[1] - times[0] == timedelta(hours=1)


# ---- the missed-tick policy ----------------------------------------------------------------------

STALE = timedelta(hours=1)
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_a_tick_due_now_fires_and_the_next_one_is_planned() -> None:
    plan = plan_tick(parse_schedule("interval", "5m"), NOW, NOW, STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (
        NOW, NOW + timedelta(minutes=5), False
    )  # fmt: skip


def test_one_missed_cron_tick_fires_late() -> None:
    due = NOW - timedelta(minutes=5)  # 11:55 was missed; it is 11:58 when the leader looks
    plan = plan_tick(parse_schedule("cron", "*/5 * * * *"), due, due + timedelta(minutes=3), STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (due, NOW, False)


def test_many_missed_interval_ticks_fire_once_and_stay_on_the_grid() -> None:
    due = NOW - timedelta(minutes=12)  # ticks at -12, -7 and -2 minutes were missed
    plan = plan_tick(parse_schedule("interval", "5m"), due, NOW, STALE)
    assert plan.fire_at == NOW - timedelta(minutes=2)
    assert plan.next_run_at == NOW + timedelta(minutes=3)


def test_many_missed_cron_ticks_fire_once_the_newest() -> None:
    due = NOW - timedelta(minutes=10)
    plan = plan_tick(parse_schedule("cron", "* * * * *"), due, NOW + timedelta(seconds=30), STALE)
    assert plan.fire_at == NOW
    assert plan.next_run_at == NOW + timedelta(minutes=1)
    assert not plan.disable


def test_ticks_older_than_the_stale_age_are_skipped_and_the_next_is_in_the_future() -> None:
    cron = plan_tick(parse_schedule("cron", "0 0 * * *"), NOW - timedelta(hours=12), NOW, STALE)
    assert (cron.fire_at, cron.next_run_at, cron.disable) == (
        None, datetime(2025, 6, 2, tzinfo=UTC), False
    )  # fmt: skip
    # Ticks at -5h and -2h were missed, both stale.
    interval = plan_tick(parse_schedule("interval", "3h"), NOW - timedelta(hours=5), NOW, STALE)
    assert (interval.fire_at, interval.next_run_at) == (None, NOW + timedelta(hours=1))


def test_a_tick_exactly_at_the_stale_age_still_fires() -> None:
    plan = plan_tick(parse_schedule("cron", "0 11 * * *"), NOW - STALE, NOW, STALE)
    assert plan.fire_at == NOW - STALE


def test_a_promised_tick_off_the_grid_still_fires_when_nothing_newer_is_due() -> None:
    # A stored next_run_at that the expression no longer produces (the zone database changed,
    # or the row predates a fix) is still a promise: it fires, then the grid takes over.
    due = NOW - timedelta(minutes=7)  # 11:53, while `0 * * * *` last ticked at 11:00
    plan = plan_tick(parse_schedule("cron", "0 * * * *"), due, NOW - timedelta(minutes=1), STALE)
    assert (plan.fire_at, plan.next_run_at) == (due, NOW)


def test_a_schedule_not_due_yet_plans_nothing() -> None:
    due = NOW + timedelta(minutes=1)
    plan = plan_tick(parse_schedule("cron", "* * * * *"), due, NOW, STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (None, due, False)


def test_an_exact_schedule_fires_once_then_is_disabled() -> None:
    parsed = parse_schedule("exact", "2025-06-01T11:59:00Z")
    due = parsed.first_fire(NOW - timedelta(days=1))
    assert due is not None
    plan = plan_tick(parsed, due, NOW, STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (due, None, True)


def test_a_stale_exact_schedule_is_skipped_and_disabled() -> None:
    parsed = parse_schedule("exact", "2025-06-01T11:59:00Z")
    due = datetime(2025, 6, 1, 11, 59, tzinfo=UTC)
    plan = plan_tick(parsed, due, due + STALE + timedelta(seconds=1), STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (None, None, True)


def test_missed_ticks_around_a_fall_back_night_fire_the_first_pass_only() -> None:
    # Due at 01:30 EDT; the leader comes back at 01:10 EST, 40 real minutes later.
    parsed = parse_schedule("cron", "30 1 * * *", "America/New_York")
    due = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
    plan = plan_tick(parsed, due, datetime(2025, 11, 2, 6, 10, tzinfo=UTC), STALE)
    assert plan.fire_at == due
    assert plan.next_run_at == datetime(2025, 11, 3, 6, 30, tzinfo=UTC)


def test_a_wildcard_cron_down_over_a_fall_back_night_fires_the_newest_real_tick() -> None:
    parsed = parse_schedule("cron", "*/30 * * * *", "America/New_York")
    due = datetime(2025, 11, 2, 5, 0, tzinfo=UTC)  # 01:00 EDT
    plan = plan_tick(parsed, due, datetime(2025, 11, 2, 6, 40, tzinfo=UTC), STALE)
    assert plan.fire_at == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert plan.next_run_at == datetime(2025, 11, 2, 7, 0, tzinfo=UTC)  # 02:00 EST


def test_looking_back_across_a_spring_forward_finds_the_last_tick_that_existed() -> None:
    # `* 2 * * *` has no 02:xx on 2025-03-09 in New York: the newest tick at 03:10 EDT is the
    # day before's 02:59 EST, not a 01:59 read off the new clock.
    parsed = parse_schedule("cron", "* 2 * * *", "America/New_York")
    due = datetime(2025, 3, 8, 7, 59, tzinfo=UTC)  # 02:59 EST
    plan = plan_tick(parsed, due, datetime(2025, 3, 9, 7, 10, tzinfo=UTC), timedelta(days=2))
    assert plan.fire_at == due
    assert plan.next_run_at == datetime(2025, 3, 10, 6, 0, tzinfo=UTC)  # 02:00 EDT


def test_a_schedule_with_no_future_fire_is_disabled() -> None:
    end_of_calendar = datetime(9999, 12, 31, 12, tzinfo=UTC)
    plan = plan_tick(parse_schedule("interval", "1d"), end_of_calendar, end_of_calendar, STALE)
    assert (plan.fire_at, plan.next_run_at, plan.disable) == (end_of_calendar, None, True)


class CountingCronSim(CronSim):
    """cronsim, counting how many ticks every instance is asked for."""

    steps = 0

    def __next__(self) -> datetime:
        CountingCronSim.steps += 1
        return super().__next__()


@pytest.fixture
def cron_steps(monkeypatch: pytest.MonkeyPatch) -> type[CountingCronSim]:
    CountingCronSim.steps = 0
    monkeypatch.setattr(timecrisis._cron, "CronSim", CountingCronSim)
    return CountingCronSim


@pytest.mark.parametrize("zone", [None, "Europe/Paris"])
def test_a_month_of_downtime_costs_a_few_steps_not_millions(
    cron_steps: type[CountingCronSim], zone: str | None
) -> None:
    parsed = parse_schedule("cron", "* * * * * *", zone)  # every second: 2.6M missed ticks
    cron_steps.steps = 0
    plan = plan_tick(parsed, NOW - timedelta(days=30), NOW, STALE)
    assert plan.fire_at == NOW
    assert plan.next_run_at == NOW + timedelta(seconds=1)
    assert cron_steps.steps <= 4


def test_years_of_downtime_of_a_millisecond_interval_is_plain_arithmetic() -> None:
    due = NOW - timedelta(days=3 * 365, microseconds=500)
    plan = plan_tick(parse_schedule("interval", "1ms"), due, NOW, STALE)
    assert plan.fire_at == NOW - timedelta(microseconds=500)
    assert plan.next_run_at == NOW + timedelta(microseconds=500)


def test_parsed_schedules_hold_exactly_one_rule() -> None:
    kinds = {
        "cron": parse_schedule("cron", "* * * * *"),
        "interval": parse_schedule("interval", "1s"),
        "exact": parse_schedule("exact", "2030-01-01T00:00:00Z"),
    }
    for kind, parsed in kinds.items():
        assert isinstance(parsed, ParsedSchedule)
        held = [parsed.cron is not None, parsed.interval is not None, parsed.instant is not None]
        assert held.count(True) == 1, kind


# ---- the edges of the calendar (issue 11, item 12) ---------------------------------------------

NOW_2026 = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
    ],
)
def test_an_exact_time_whose_utc_instant_leaves_the_calendar_is_invalid(value: str) -> None:
    with pytest.raises(InvalidScheduleError, match=r"outside years 1\.\.9999"):
        parse_schedule("exact", value)
    with pytest.raises(InvalidScheduleError, match=r"outside years 1\.\.9999"):
        preview_schedule("exact", value, after=NOW_2026)


def test_an_exact_time_at_the_very_end_of_the_calendar_is_valid() -> None:
    parsed = parse_schedule("exact", "9999-12-31T23:59:59.999999+00:00")
    assert parsed.instant == datetime.max.replace(tzinfo=UTC)
    assert first_fire_at(parsed, NOW_2026) == parsed.instant


def test_an_interval_whose_first_fire_leaves_year_9999_is_refused_when_scheduling() -> None:
    parsed = parse_schedule("interval", "3000000d")  # 8,214 years: fine from year 1000
    assert first_fire_at(parsed, datetime(1000, 1, 1, tzinfo=UTC)) is not None
    with pytest.raises(InvalidScheduleError, match="'3000000d' can never fire"):
        first_fire_at(parsed, NOW_2026)  # year 10240: it would be stored and never fire


def test_preview_refuses_an_interval_that_can_never_fire_from_its_start() -> None:
    with pytest.raises(InvalidScheduleError, match="can never fire"):
        preview_schedule("interval", "3000000d", after=NOW_2026)
    # From a start early enough it fires (once: the second would be past year 9999).
    assert preview_schedule("interval", "3000000d", after=datetime(1000, 1, 1, tzinfo=UTC)) == [
        datetime(1000, 1, 1, tzinfo=UTC) + timedelta(days=3_000_000)
    ]


@pytest.mark.parametrize("value", ["3652059d", "999999999d"])
def test_an_interval_longer_than_the_calendar_is_invalid_from_any_date(value: str) -> None:
    with pytest.raises(InvalidScheduleError, match=r"longer than years 1\.\.9999"):
        parse_schedule("interval", value)


def test_an_interval_beyond_the_timedelta_range_is_invalid() -> None:
    with pytest.raises(InvalidScheduleError, match="invalid interval"):
        parse_schedule("interval", "1000000000d")


def test_first_fire_at_refuses_an_exact_time_in_the_past_and_accepts_now() -> None:
    parsed = parse_schedule("exact", "2026-12-01T10:00:00+01:00")
    assert first_fire_at(parsed, NOW_2026) == NOW_2026
    with pytest.raises(InvalidScheduleError, match="in the past"):
        first_fire_at(parsed, NOW_2026 + timedelta(microseconds=1))


def test_first_fire_at_is_one_interval_or_the_next_cron_tick() -> None:
    assert first_fire_at(parse_schedule("interval", "10m"), NOW_2026) == NOW_2026 + timedelta(
        minutes=10
    )
    assert first_fire_at(parse_schedule("cron", "0 0 * * *"), NOW_2026) == datetime(
        2026, 12, 2, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("schedule_type", "one", "other"),
    [
        ("interval", "10m", "600s"),
        ("interval", "10m", " 600000ms "),
        ("interval", "1h30m", "90m"),
        ("interval", "1.5h", "5400s"),
        ("exact", "2030-01-01T09:00:00+01:00", "2030-01-01T08:00:00Z"),
        ("exact", "2030-01-01T08:00:00Z", "2030-01-01T08:00:00.000+00:00"),
        ("cron", "0 9 * * 1-5", "  0   9 * * 1-5"),
    ],
)
def test_two_spellings_of_one_schedule_have_one_canonical_value(
    schedule_type: str, one: str, other: str
) -> None:
    assert canonical_schedule_value(schedule_type, one) == canonical_schedule_value(
        schedule_type, other
    )


@pytest.mark.parametrize(
    ("schedule_type", "one", "other"),
    [
        ("interval", "10m", "601s"),
        ("interval", "1ms", "1s"),
        ("exact", "2030-01-01T09:00:00+01:00", "2030-01-01T09:00:00Z"),
        ("cron", "0 9 * * 1-5", "0 9 * * 1-6"),
    ],
)
def test_different_schedules_have_different_canonical_values(
    schedule_type: str, one: str, other: str
) -> None:
    assert canonical_schedule_value(schedule_type, one) != canonical_schedule_value(
        schedule_type, other
    )


@pytest.mark.parametrize(
    ("schedule_type", "value"),
    [("interval", "soon"), ("exact", "tomorrow"), ("interval", "3652059d"), ("nope", "x")],
)
def test_a_value_that_does_not_parse_is_only_equal_to_itself(
    schedule_type: str, value: str
) -> None:
    assert canonical_schedule_value(schedule_type, f" {value} ") == value
