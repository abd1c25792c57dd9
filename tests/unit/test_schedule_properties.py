"""Property-based checks (hypothesis) of durations, backoff and fire times.

Cron fire times are compared with a brute-force oracle written from the rules themselves (every
matching wall time, mapped to real instants by `zoneinfo` alone), at instants drawn around the
real offset changes of zones with unusual shifts: Paris and New York (one hour), Lord Howe (half
an hour), Chatham (at 02:45 local), Santiago (at midnight), Troll (two hours) and Dublin (whose
winter time is the "daylight" one in the database)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from timecrisis.durations import format_duration, parse_duration
from timecrisis.errors import InvalidScheduleError
from timecrisis.retry import JITTER_FRACTION, retry_delay_seconds
from timecrisis.schedules import parse_schedule, plan_tick, preview_schedule

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Antarctica/Troll",
    "Europe/Dublin",
]
# Date fields are all `*`: the oracle below only has to match the time of day.
EXPRESSIONS = [
    "30 2 * * *",  # fixed: inside most gaps and folds
    "15 1,2,3 * * *",  # fixed: around both kinds of shift
    "0,30 2 * * *",  # fixed: two times inside one gap
    "45 0,23 * * *",  # fixed: around a midnight shift
    "0 0-23/3 * * *",  # fixed (a listed hour range is not a `*`)
    "0 30 2 * * *",  # fixed, 6 fields
    "0 * * * *",  # wildcard: every real hour
    "*/30 * * * *",  # wildcard
    "* 2 * * *",  # wildcard minute, fixed hour
    "*/20 3 * * *",  # wildcard
    "10 */15 * * * *",  # wildcard, 6 fields
]
TINY = timedelta(microseconds=1)


# ---- durations and backoff ---------------------------------------------------------------------

_FORMATTED = re.compile(r"(\d+ms)|(\d+d)?(\d+h)?(\d+m)?(\d+(?:\.\d{3})?s)?")
_PART = re.compile(r"\d+(?:\.\d+)?(?:ms|[smhd])")


@given(st.integers(min_value=0, max_value=10**12))
def test_a_formatted_duration_reads_back_to_the_same_milliseconds(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    text = format_duration(value)
    assert text and _FORMATTED.fullmatch(text), text
    # Each unit part is a duration `parse_duration` accepts; together they are the value,
    # and so is the compound form as a whole.
    parts = _PART.findall(text)
    assert "".join(parts) == text
    assert sum((parse_duration(part) for part in parts), timedelta(0)) == value
    assert parse_duration(text) == value


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_every_unit_means_what_it_says(count: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{count}{unit}") == timedelta(seconds=count * seconds)
    assert parse_duration(f" {count} {unit} ") == parse_duration(f"{count}{unit}")


@given(
    st.sampled_from(["linear", "exponential"]),
    st.integers(min_value=1, max_value=10**6),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e9),
    st.randoms(use_true_random=False),
)
def test_backoff_stays_between_its_base_and_the_cap(
    strategy: str, attempt: int, retry_delay: float, cap: float, rng: object
) -> None:
    delay = retry_delay_seconds(strategy, attempt, retry_delay, cap, rng=rng)  # type: ignore[arg-type]
    base = retry_delay if strategy == "linear" else retry_delay * 2.0 ** min(attempt - 1, 60)
    highest = base if strategy == "linear" else base * (1 + JITTER_FRACTION)
    assert 0 <= delay <= cap
    assert min(base, cap) <= delay <= min(highest, cap)


# ---- the cron oracle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeOfDay:
    """The second, minute and hour sets of an expression whose date fields are `*`."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    fixed_time: bool

    @classmethod
    def parse(cls, expression: str) -> TimeOfDay:
        fields = expression.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        second, minute, hour, *dates = fields
        assert dates == ["*", "*", "*"]
        return cls(
            _values(second, 59),
            _values(minute, 59),
            _values(hour, 23),
            fixed_time=not (minute.startswith("*") or hour.startswith("*")),
        )

    def matches_between(self, first: datetime, last: datetime) -> Iterator[datetime]:
        """Every matching naive wall time in [first, last], in order."""
        hour = datetime.combine(first.date(), time(first.hour))
        while hour <= last:
            if hour.hour in self.hours:
                for minute, second in itertools.product(sorted(self.minutes), sorted(self.seconds)):
                    wall = hour.replace(minute=minute, second=second)
                    if first <= wall <= last:
                        yield wall
            hour += timedelta(hours=1)


def _values(field: str, highest: int) -> frozenset[int]:
    values: set[int] = set()
    for part in field.split(","):
        body, _, step = part.partition("/")
        if body == "*":
            low, high = 0, highest
        elif "-" in body:
            low, high = (int(bound) for bound in body.split("-"))
        else:
            low = int(body)
            high = highest if step else low
        values.update(range(low, high + 1, int(step or 1)))
    return frozenset(values)


def _real_instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The real instants whose reading in `zone` is `wall`: none (skipped), one, or two."""
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return sorted(found)


def _first_fire(wall: datetime, zone: ZoneInfo) -> datetime:
    """Fixed-time rule: the first occurrence, or for a skipped time the first second after it
    that exists (the end of the gap)."""
    later = wall
    while not _real_instants(later, zone):
        later += timedelta(seconds=1)
    return _real_instants(later, zone)[0]


def oracle(expression: str, zone: ZoneInfo, after: datetime, last: datetime) -> list[datetime]:
    """Every fire time in (after, last], straight from the rules."""
    rule = TimeOfDay.parse(expression)
    margin = timedelta(hours=4)  # more than any shift: covers every reading of the window
    first_wall = after.astimezone(zone).replace(tzinfo=None) - margin
    last_wall = last.astimezone(zone).replace(tzinfo=None) + margin
    fires: set[datetime] = set()
    for wall in rule.matches_between(first_wall, last_wall):
        if rule.fixed_time:
            fires.add(_first_fire(wall, zone))
        else:
            fires.update(_real_instants(wall, zone))
    return sorted(fire for fire in fires if after < fire <= last)


@cache
def offset_changes(zone_name: str, year: int) -> tuple[datetime, ...]:
    """The instants in `year` where the zone's UTC offset changes. A 2-day scan is enough to
    draw test inputs: offsets change a few times a year (a missed change only means fewer cases)."""
    zone = ZoneInfo(zone_name)
    changes = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        step_end = probe + timedelta(days=2)
        if probe.astimezone(zone).utcoffset() != step_end.astimezone(zone).utcoffset():
            low, high = probe, step_end
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                same = middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            changes.append(high)
        probe = step_end
    return tuple(changes)


@st.composite
def instants_near_a_shift(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone, and an instant within 30 hours of one of its offset changes."""
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(min_value=2015, max_value=2035))
    changes = offset_changes(zone, year)
    assume(changes)  # Santiago kept summer time all through 2015
    shift = draw(st.sampled_from(changes))
    seconds = draw(st.integers(min_value=-30 * 3600, max_value=30 * 3600))
    micro = draw(st.sampled_from([0, 0, 1, 999_999, 500_000]))
    return zone, shift + timedelta(seconds=seconds, microseconds=micro)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(EXPRESSIONS), instants_near_a_shift())
def test_cron_fire_times_are_exactly_the_rules_fire_times(
    expression: str, near: tuple[str, datetime]
) -> None:
    zone_name, after = near
    zone = ZoneInfo(zone_name)
    times = preview_schedule("cron", expression, time_zone=zone_name, after=after, count=4)
    assert len(times) == 4
    assert after < times[0]
    assert all(earlier < later for earlier, later in itertools.pairwise(times))
    assert times == oracle(expression, zone, after, times[-1])
    if TimeOfDay.parse(expression).fixed_time:
        # Each wall time fires once, in wall-clock order: the readings never go back.
        readings = [t.astimezone(zone).replace(tzinfo=None) for t in times]
        assert all(earlier < later for earlier, later in itertools.pairwise(readings))


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(EXPRESSIONS),
    instants_near_a_shift(),
    st.integers(min_value=0, max_value=3 * 86400),
    st.integers(min_value=0, max_value=2 * 86400),
)
def test_plan_tick_fires_the_newest_fresh_tick_and_moves_past_now(
    expression: str, near: tuple[str, datetime], age_seconds: int, stale_seconds: int
) -> None:
    # `now` is near a shift; the schedule was registered up to 3 days before it.
    zone_name, now = near
    parsed = parse_schedule("cron", expression, zone_name)
    due = parsed.first_fire(now - timedelta(seconds=age_seconds))
    assert due is not None
    assume(due <= now)
    stale = timedelta(seconds=stale_seconds)
    plan = plan_tick(parsed, due, now, stale)
    assert not plan.disable
    assert plan.next_run_at is not None and plan.next_run_at > now
    # Looking back and looking forward agree: the next run is the first tick after now.
    assert plan.next_run_at == parsed.next_fire_after(now)
    if plan.fire_at is not None:
        assert due <= plan.fire_at <= now
        assert now - plan.fire_at <= stale
        # A real tick (one the forward walk produces), and the newest one up to now.
        assert plan.fire_at == due or parsed.next_fire_after(plan.fire_at - TINY) == plan.fire_at
        assert parsed.next_fire_after(plan.fire_at) == plan.next_run_at
    else:
        # Nothing due is fresh: no tick at all in the stale window.
        assert now - due > stale
        fresh = parsed.next_fire_after(max(due, now - stale - TINY))
        assert fresh is not None and fresh > now


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EXPRESSIONS), instants_near_a_shift())
def test_a_scheduler_on_time_fires_exactly_the_previewed_ticks(
    expression: str, near: tuple[str, datetime]
) -> None:
    zone_name, registered_at = near
    parsed = parse_schedule("cron", expression, zone_name)
    previewed = preview_schedule(
        "cron", expression, time_zone=zone_name, after=registered_at, count=6
    )
    fired = []
    due = parsed.first_fire(registered_at)
    for _ in range(6):
        assert due is not None
        plan = plan_tick(parsed, due, due, timedelta(0))  # the leader looks exactly on time
        assert plan.fire_at is not None
        fired.append(plan.fire_at)
        due = plan.next_run_at
    assert fired == previewed


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**11),  # the interval in microseconds (up to ~28 h)
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=0, max_value=10**15),  # the lag in microseconds (up to ~31 years)
    st.integers(min_value=0, max_value=10**11),
)  # fmt: skip
def test_plan_tick_keeps_an_interval_on_its_grid(
    interval_us: int, due: datetime, lag_us: int, stale_us: int
) -> None:
    interval = timedelta(microseconds=interval_us)
    parsed = parse_schedule("interval", f"{interval_us / 1000}ms")
    assert parsed.interval == interval
    now = due + timedelta(microseconds=lag_us)
    stale = timedelta(microseconds=stale_us)
    plan = plan_tick(parsed, due, now, stale)
    assert plan.next_run_at is not None
    assert now < plan.next_run_at <= now + interval
    assert (plan.next_run_at - due) % interval == timedelta(0)
    latest = plan.next_run_at - interval
    assert plan.fire_at in (latest, None)
    assert (plan.fire_at is None) == (now - latest > stale)


# ---- any text ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.text(alphabet="0123456789*/,-#LW?MONFEBSUNJAN", min_size=1, max_size=6),
        min_size=4,
        max_size=7,
    ).map(" ".join),
    st.datetimes(datetime(2000, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)),
)  # fmt: skip
def test_any_text_is_a_cron_or_an_invalid_schedule_error(expression: str, after: datetime) -> None:
    try:
        parsed = parse_schedule("cron", expression, "Europe/Paris")
    except InvalidScheduleError:
        return
    fire = parsed.next_fire_after(after)
    assert fire is not None and fire > after
    latest = parsed.cron.latest_at_or_before(fire) if parsed.cron else None
    assert latest == fire


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2500, 12, 31)))
def test_a_weekday_of_any_real_date_is_a_cron_that_fires(day: date) -> None:
    # "The nth <weekday> of <month>" for a date that exists is never refused as never-firing,
    # including fifth weekdays of February, which skip decades.
    weekday = (day.weekday() + 1) % 7  # cron counts from Sunday = 0
    nth = (day.day + 6) // 7
    parsed = parse_schedule("cron", f"0 0 * {day.month} {weekday}#{nth}")
    fire = parsed.next_fire_after(datetime(2000, 1, 1, tzinfo=UTC))
    assert fire is not None
    assert fire.month == day.month and (fire.weekday() + 1) % 7 == weekday
