"""Cron expressions evaluated in an IANA time zone, with Debian cron's DST rules.

`cronsim` (the maintained parser behind healthchecks.io) answers a pure calendar question here:
the next, or the latest, *wall-clock reading* that matches an expression. Everything about time
zones lives in this module, because cronsim's own zone handling (2.8) has three gaps a scheduler
cannot live with:

- started in the second pass of a repeated (fall-back) hour, a fixed-time expression returns a
  time *before* its start (the first pass of the same wall time): a schedule would stay due;
- its DST rules only apply to 5-field expressions, so `0 30 2 * * *` is skipped on a
  spring-forward day and fires twice on a fall-back night, unlike `30 2 * * *`;
- in a zone whose shift is not a whole hour (Australia/Lord_Howe, 02:00 → 02:30), `* 3 * * *`
  skips 03:00-03:29.

As in Debian cron, the rule depends on whether the minute or the hour field starts with `*`:

**Fixed time** (both fixed: `30 2 * * *`, `0 9,17 * * 1-5`, `0 30 2 * * *`): the expression names
wall-clock times, and each matching wall time fires exactly once. A wall time that a forward shift
skips fires when the gap ends (02:30 → 03:00 on a spring-forward day; if a regular tick falls on
that instant too, they are one tick). A wall time that a backward shift repeats fires in its first
pass only. Formally the fire instant of a wall time is `first_instant(wall)` (the transition itself
for a skipped one), a non-decreasing function, so the fire instants stay in wall-time order.

**Wildcard** (`*/30 * * * *`, `0 * * * *`, `* 3 * * *`): the expression names a rhythm, kept in real
time. It fires at every real instant whose wall-clock reading matches: both 01:30s of a fall-back
night, none of the wall times a forward shift skips. Between two offset changes the wall clock is
UTC plus a constant, so cronsim's wall-clock answer is exact inside that segment; the search walks
segment by segment.

Zones keep their offset changes to themselves (`zoneinfo` has no transition API), so they are
found by probing the offset once a day and bisecting to the microsecond. That is exact as long as
a zone never changes its offset twice within a day: in the IANA database (2025b) the closest two
changes of any zone since 1970 are 6 days 23 hours apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

from timecrisis.errors import InvalidScheduleError

FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")

_TINY = timedelta(microseconds=1)
# One probe per day finds every offset change (see the module docstring for why that is enough).
_PROBE_STEP = timedelta(days=1)
# Whether an expression can ever fire is a question about the calendar only. A cron match depends
# on the date, the weekday and the year's length, and 2000-2027 is one full 28-year cycle of the
# Gregorian calendar without a skipped leap year (2000 is leap, 2100 is not): every kind of year
# (14: 7 starting weekdays, leap or not) occurs in it. An expression that matches no wall time in
# that window matches none in any year.
# Wall-clock readings, so naive on purpose.
_CYCLE_START = datetime(2000, 1, 1)  # noqa: DTZ001
_CYCLE_END = datetime(2028, 1, 1)  # noqa: DTZ001


@dataclass(frozen=True, slots=True)
class CronRule:
    """A validated cron expression in a zone. Build it with `parse_cron`.

    `fixed_time` says which DST rule applies (see the module docstring). Both methods take and
    return aware datetimes; results are in UTC and always whole seconds.
    """

    expression: str
    zone: tzinfo
    fixed_time: bool

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire time strictly after `instant`, or None if there is none before
        year 9999 (or within cronsim's 50-year look-ahead from the last match)."""
        try:
            fixed_offset = self.zone.utcoffset(None)
            if fixed_offset is not None:
                wall = _naive_next(self.expression, _wall(instant, fixed_offset))
                return None if wall is None else _instant(wall, fixed_offset)
            if self.fixed_time:
                wall = _naive_next(self.expression, _last_wall_time_reached(self.zone, instant))
                return None if wall is None else _fire_instant(self.zone, wall)
            return _next_real_match(self.expression, self.zone, instant)
        except OverflowError:  # the calendar ends at year 9999: no fire time after that
            return None

    def latest_at_or_before(self, instant: datetime) -> datetime | None:
        """The most recent fire time at or before `instant`, or None. The same ticks as
        `next_after` (never a tick that `next_after` would skip), found without walking the
        ticks in between, so a month of every-second ticks costs one step."""
        try:
            fixed_offset = self.zone.utcoffset(None)
            if fixed_offset is not None:
                wall = _naive_latest(self.expression, _wall(instant, fixed_offset))
                return None if wall is None else _instant(wall, fixed_offset)
            if self.fixed_time:
                reached = _last_wall_time_reached(self.zone, instant)
                wall = _naive_latest(self.expression, reached)
                return None if wall is None else _fire_instant(self.zone, wall)
            return _latest_real_match(self.expression, self.zone, instant)
        except OverflowError:  # before year 1
            return None


def parse_cron(expression: str, zone: tzinfo) -> CronRule:
    """Validate `expression` (5 fields, or 6 with seconds first) and build its rule in `zone`.

    Raises `InvalidScheduleError` naming the bad field, or saying that the expression can never
    fire (`0 0 30 2 *`, or `0 0 */30 2 MON#5`: no fifth Monday of February is the 1st).
    """
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"or 6 with seconds first; got {len(fields)} in {expression!r}"
        )
    normalized = " ".join(fields)
    try:
        first = _naive_next(normalized, _CYCLE_START - _TINY)
    except CronSimError as exc:
        raise _explain(normalized, fields, exc) from exc
    if first is None or first >= _CYCLE_END:
        raise InvalidScheduleError(
            f"the cron expression {normalized!r} can never fire: no date of a whole 28-year "
            "calendar cycle matches it"
        )
    minute, hour = fields[-5], fields[-4]
    fixed_time = not (minute.startswith("*") or hour.startswith("*"))
    return CronRule(normalized, zone, fixed_time)


def _explain(expression: str, fields: list[str], error: CronSimError) -> InvalidScheduleError:
    names = FIELD_NAMES[6 - len(fields) :]
    by_name = dict(zip(names, fields, strict=True))
    for name, field in by_name.items():
        if str(error) != f"Bad {name}":
            continue
        if name == "day-of-month" and _parses_in_any_month(fields):
            # cronsim refuses a day that no listed month has; say so instead of "bad field".
            return InvalidScheduleError(
                f"the cron expression {expression!r} can never fire: day-of-month {field!r} "
                f"does not occur in month {by_name['month']!r}"
            )
        return InvalidScheduleError(
            f"invalid cron expression {expression!r}: bad {name} field {field!r}"
        )
    return InvalidScheduleError(f"invalid cron expression {expression!r}: {error}")


def _parses_in_any_month(fields: list[str]) -> bool:
    every_month = [*fields[:-2], "*", fields[-1]]
    try:
        CronSim(" ".join(every_month), _CYCLE_START)
    except CronSimError:
        return False
    return True


# ---- wall-clock matches (cronsim on naive datetimes: no zone, no DST) ---------------------------


def _naive_next(expression: str, wall: datetime) -> datetime | None:
    """The first matching wall time strictly after `wall` (cron times are whole seconds)."""
    try:
        match: datetime = next(CronSim(expression, wall))
    except StopIteration:  # cronsim gives up after 50 years without a match
        return None
    return match


def _naive_latest(expression: str, wall: datetime) -> datetime | None:
    """The latest matching wall time at or before `wall`."""
    # In reverse, cronsim starts strictly before its start unless the start has microseconds, in
    # which case the whole second itself is the first candidate: that includes `wall`'s second.
    start = wall.replace(microsecond=0) + _TINY
    try:
        match: datetime = next(CronSim(expression, start, reverse=True))
    except StopIteration:
        return None
    return match


def _wall(instant: datetime, offset: timedelta) -> datetime:
    return (instant.astimezone(UTC) + offset).replace(tzinfo=None)


def _instant(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # an aware datetime in a real zone always has one
    return offset


# ---- fixed time: every matching wall time fires once --------------------------------------------


def _fire_instant(zone: tzinfo, wall: datetime) -> datetime:
    """When the wall time `wall` fires: its first occurrence, or the end of the gap skipping it."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first of a repeated time
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # A skipped wall time. Read with the offset before the shift (fold=0) it lands after the
    # transition, read with the offset after it (fold=1) before: the transition is in between.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(zone, before, first)


def _last_wall_time_reached(zone: tzinfo, instant: datetime) -> datetime:
    """The latest wall time whose fire instant is at or before `instant`.

    It is the local reading of `instant`, except in the second pass of a repeated period: every
    wall time of that period already fired in the first pass, so all of them are reached.
    """
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if not local.fold:
        return wall
    first_pass = local.replace(fold=0).astimezone(UTC)
    transition = _transition(zone, first_pass, instant)
    # The repeated period ends at the transition's reading on the old clock (02:00 for 01:xx).
    repetition_end = (transition + _offset(zone, first_pass)).replace(tzinfo=None)
    return repetition_end - _TINY


# ---- wildcard: every real instant whose wall reading matches ------------------------------------


def _next_real_match(expression: str, zone: tzinfo, after: datetime) -> datetime | None:
    lower, offset, segment_start = after, _offset(zone, after), after
    while True:
        wall = _naive_next(expression, _wall(lower, offset))
        if wall is None:
            return None
        candidate = _instant(wall, offset)
        change = _first_change(zone, segment_start, candidate, offset)
        if change is None:
            return candidate
        # The candidate was read on a clock that had changed by then: restart at the change.
        lower, offset, segment_start = change - _TINY, _offset(zone, change), change


def _latest_real_match(expression: str, zone: tzinfo, moment: datetime) -> datetime | None:
    upper, offset = moment, _offset(zone, moment)
    while True:
        wall = _naive_latest(expression, _wall(upper, offset))
        if wall is None:
            return None
        candidate = _instant(wall, offset)
        change = _last_change(zone, candidate, upper, offset)
        if change is None:
            return candidate
        upper = change - _TINY
        offset = _offset(zone, upper)


def _first_change(
    zone: tzinfo, start: datetime, end: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in (start, end] whose offset is not `offset` (the offset at `start`)."""
    probe = start
    while probe < end:
        step_end = min(probe + _PROBE_STEP, end)
        if _offset(zone, step_end) != offset:
            return _transition(zone, probe, step_end)
        probe = step_end
    return None


def _last_change(
    zone: tzinfo, start: datetime, end: datetime, offset: timedelta
) -> datetime | None:
    """The latest offset change in (start, end], where `offset` is the offset at `end`: the
    first instant of `end`'s segment, or None if that segment reaches back to `start`."""
    probe = end
    while probe > start:
        step_start = max(probe - _PROBE_STEP, start)
        if _offset(zone, step_start) != offset:
            return _transition(zone, step_start, probe)
        probe = step_start
    return None


def _transition(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The instant in (before, after] where the offset changes, to the microsecond; the two
    ends have different offsets and at most one change lies between them."""
    target = _offset(zone, after)
    while after - before > _TINY:
        middle = before + (after - before) / 2
        if _offset(zone, middle) == target:
            after = middle
        else:
            before = middle
    return after
