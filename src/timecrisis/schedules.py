"""When schedules fire: cron (in an IANA time zone, with Debian cron's DST rules), interval, exact.

- **cron**: 5 fields, or 6 with seconds first. Evaluated with `cronsim`, which follows Debian
  cron around DST transitions for 5-field expressions: a fixed local time skipped by
  spring-forward fires once right after the gap (02:30 → 03:00), a fixed time in the repeated
  fall-back hour fires once (the first), and wildcard or step fields keep real intervals
  (`*/30 * * * *` fires at both 01:30s of a fall-back night). `time_zone=None` means UTC.
- **interval**: a duration (`'5m'`, `'500ms'`); first fire one interval after registration, then
  at a fixed rate on the grid `first + k * interval`, so slow ticks never make the schedule drift.
- **exact**: an ISO-8601 datetime with an offset; fires once, then the schedule is disabled.

Missed ticks (the scheduler was down, or no node led): ticks older than the scheduler's
`scheduled_job_max_stale_age` are skipped; among the newer ones only the most recent fires, once
(`plan_tick`). Every result is an aware datetime in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from timecrisis.durations import parse_positive_duration
from timecrisis.errors import InvalidDurationError, InvalidScheduleError
from timecrisis.models import ScheduleType

SCHEDULE_TYPES: tuple[ScheduleType, ...] = ("cron", "interval", "exact")

# A valid cron fires at least once in any 28-year span (the Gregorian calendar's weekday cycle
# for a given date repeats every 28 years between century exceptions, and Feb 29 recurs within
# 8 years), so an expression with no fire time in that horizon can never fire.
_NEVER_HORIZON = timedelta(days=366 * 28)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do with a due schedule: fire `fire_at` (None: skip, everything due is stale),
    then wait for `next_run_at` (None: finished), disabling the schedule if `disable`."""

    fire_at: datetime | None
    next_run_at: datetime | None
    disable: bool


@dataclass(frozen=True, slots=True)
class ParsedSchedule:
    """A validated schedule. Build it with `parse_schedule`."""

    schedule_type: ScheduleType
    schedule_value: str
    time_zone: str | None
    interval: timedelta | None = None
    instant: datetime | None = None
    zone: ZoneInfo | None = None

    def next_fire_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (None: an exact time not after it).
        For an interval this is `after + interval`: use `plan_tick` to stay on a fixed grid."""
        after = _aware_utc(after, "after")
        if self.schedule_type == "exact":
            assert self.instant is not None
            return self.instant if self.instant > after else None
        if self.schedule_type == "interval":
            assert self.interval is not None
            return after + self.interval
        return _cron_next(self.schedule_value, self._zone(), after)

    def first_fire(self, registered_at: datetime) -> datetime | None:
        """The first fire time of a schedule registered at `registered_at`."""
        if self.schedule_type == "exact":
            return self.instant
        return self.next_fire_after(registered_at)

    def _zone(self) -> ZoneInfo:
        return self.zone or ZoneInfo("UTC")


def parse_schedule(
    schedule_type: str, schedule_value: str, time_zone: str | None = None
) -> ParsedSchedule:
    """Validate a schedule; raise `InvalidScheduleError` saying what is wrong."""
    if schedule_type not in SCHEDULE_TYPES:
        raise InvalidScheduleError(
            f"schedule_type must be one of {', '.join(SCHEDULE_TYPES)}, got {schedule_type!r}"
        )
    if not isinstance(schedule_value, str) or not schedule_value.strip():
        raise InvalidScheduleError(
            f"schedule_value must be a non-empty string, got {schedule_value!r}"
        )
    zone = _zone(time_zone)
    value = schedule_value.strip()
    if schedule_type == "interval":
        try:
            interval = parse_positive_duration(value)
        except InvalidDurationError as exc:
            raise InvalidScheduleError(f"invalid interval {value!r}: {exc}") from exc
        return ParsedSchedule("interval", value, time_zone, interval=interval, zone=zone)
    if schedule_type == "exact":
        return ParsedSchedule("exact", value, time_zone, instant=_exact(value), zone=zone)
    expression = " ".join(value.split())
    fields = len(expression.split(" "))
    if fields not in (5, 6):
        raise InvalidScheduleError(
            f"a cron expression has 5 fields (or 6 with seconds first), got {fields}: {value!r}"
        )
    parsed = ParsedSchedule("cron", expression, time_zone, zone=zone)
    probe = datetime(2000, 1, 1, tzinfo=UTC)
    try:
        first = _cron_next(expression, parsed._zone(), probe)
    except CronSimError as exc:
        raise InvalidScheduleError(f"invalid cron expression {value!r}: {exc}") from exc
    if first is None or first - probe > _NEVER_HORIZON:
        raise InvalidScheduleError(f"the cron expression {value!r} can never fire")
    return parsed


def validate_not_past(parsed: ParsedSchedule, now: datetime) -> None:
    """An exact schedule must not be in the past (checked against the store's clock)."""
    if parsed.schedule_type == "exact" and parsed.instant is not None and parsed.instant < now:
        raise InvalidScheduleError(
            f"the exact time {parsed.schedule_value} is in the past (now is {now.isoformat()})"
        )


def plan_tick(
    parsed: ParsedSchedule, due_at: datetime, now: datetime, max_stale_age: timedelta
) -> TickPlan:
    """Decide what a schedule due at `due_at` (<= `now`) does now: fire its most recent due tick
    once, unless that tick is older than `max_stale_age`; then move to the first tick after now.
    Constant work however long the scheduler was down."""
    due_at = _aware_utc(due_at, "due_at")
    now = _aware_utc(now, "now")
    if parsed.schedule_type == "exact":
        fire = due_at if now - due_at <= max_stale_age else None
        return TickPlan(fire, None, True)
    if parsed.schedule_type == "interval":
        assert parsed.interval is not None
        steps = max(0, math.floor((now - due_at) / parsed.interval))
        latest = due_at + steps * parsed.interval
        next_run: datetime | None = latest + parsed.interval
    else:
        found = _cron_latest_at_or_before(parsed.schedule_value, parsed._zone(), now)
        latest = due_at if found is None else max(found, due_at)
        next_run = _cron_next(parsed.schedule_value, parsed._zone(), now)
    fire = latest if now - latest <= max_stale_age else None
    return TickPlan(fire, next_run, False)


def preview_schedule(
    schedule_type: str,
    schedule_value: str,
    *,
    time_zone: str | None = None,
    after: datetime | None = None,
    count: int = 5,
) -> list[datetime]:
    """The next `count` fire times after `after` (default: now), as the scheduler fires them
    for a schedule registered at `after`. Raises `InvalidScheduleError` for bad input."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidScheduleError(f"count must be an int >= 1, got {count!r}")
    if after is not None and (not isinstance(after, datetime) or after.tzinfo is None):
        raise InvalidScheduleError(f"after must be a timezone-aware datetime, got {after!r}")
    parsed = parse_schedule(schedule_type, schedule_value, time_zone)
    start = (after or datetime.now(UTC)).astimezone(UTC)
    times: list[datetime] = []
    current = parsed.first_fire(start)
    if parsed.schedule_type == "exact":
        return [current] if current is not None and current > start else []
    while current is not None and len(times) < count:
        times.append(current)
        current = parsed.next_fire_after(current)
    return times


def _zone(time_zone: str | None) -> ZoneInfo | None:
    if time_zone is None:
        return None
    if not isinstance(time_zone, str) or not time_zone.strip():
        raise InvalidScheduleError(f"time_zone must be an IANA zone name, got {time_zone!r}")
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidScheduleError(f"unknown time zone {time_zone!r}") from exc


def _exact(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidScheduleError(
            f"an exact schedule needs an ISO-8601 datetime with an offset, got {value!r}"
        ) from exc
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidScheduleError(
            f"an exact time must carry an offset (e.g. '2030-01-01T09:00:00+01:00' or a 'Z'), "
            f"got naive {value!r}"
        )
    return instant.astimezone(UTC)


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidScheduleError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _cron_next(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    try:
        fire: datetime = next(CronSim(expression, after.astimezone(zone)))
    except StopIteration:
        return None
    return fire.astimezone(UTC)


def _cron_latest_at_or_before(expression: str, zone: ZoneInfo, moment: datetime) -> datetime | None:
    # cronsim's reverse iteration yields times strictly before its start unless the start has
    # microseconds, in which case the whole second itself is the first candidate: start one
    # microsecond past the floored second to include `moment` (fire times are whole seconds).
    start = moment.replace(microsecond=0) + timedelta(microseconds=1)
    try:
        fire: datetime = next(CronSim(expression, start.astimezone(zone), reverse=True))
    except StopIteration:
        return None
    return fire.astimezone(UTC)
