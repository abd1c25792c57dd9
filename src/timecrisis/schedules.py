"""When schedules fire: cron (in an IANA time zone, with Debian cron's DST rules), interval, exact.

- **cron**: 5 fields, or 6 with seconds first, evaluated in `time_zone` (None means UTC). A fixed
  local time skipped by a spring-forward shift fires once right after the gap (02:30 → 03:00), a
  fixed time in a repeated fall-back hour fires once (the first pass), and expressions whose
  minute or hour field starts with `*` keep real intervals (`*/30 * * * *` fires at both 01:30s of
  a fall-back night). The zone arithmetic lives in `timecrisis._cron`.
- **interval**: a duration string (`'5m'`, `'500ms'`). The first fire is one interval after
  registration, then the schedule keeps a fixed rate on the grid `first + k * interval`, so a slow
  tick or a restart never makes it drift. `time_zone` is stored but plays no part. An interval
  whose first fire would fall after year 9999 is refused, like a cron that can never fire.
- **exact**: an ISO-8601 datetime with an offset (`'2030-01-01T09:00:00+01:00'`, or `Z`); it fires
  once, then the schedule is disabled. The offset in the value decides the instant, which must
  lie within years 1..9999 in UTC.

Two spellings of one schedule (`'10m'` and `'600s'`, two offsets of one instant) are the same
schedule: `canonical_schedule_value` is what the stores compare when a schedule is registered
again.

Missed ticks (the scheduler was down, or no node led): `plan_tick` skips ticks older than the
scheduler's `scheduled_job_max_stale_age`, and fires only the most recent of the newer ones, once.

Every function here is pure: the caller passes the time (the store's clock), and every returned
datetime is aware and in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from timecrisis._cron import CronRule, parse_cron
from timecrisis.durations import parse_positive_duration
from timecrisis.errors import InvalidDurationError, InvalidScheduleError
from timecrisis.models import ScheduleType

__all__ = [
    "SCHEDULE_TYPES",
    "ParsedSchedule",
    "TickPlan",
    "canonical_schedule_value",
    "first_fire_at",
    "parse_schedule",
    "plan_tick",
    "preview_schedule",
    "validate_not_past",
]

SCHEDULE_TYPES: tuple[ScheduleType, ...] = ("cron", "interval", "exact")

_MICROSECOND = timedelta(microseconds=1)
# No two datetimes are further apart: an interval longer than this fires from no date at all.
_LONGEST_INTERVAL = datetime.max.replace(tzinfo=UTC) - datetime.min.replace(tzinfo=UTC)

# Zone names that exist on disk but are not IANA zones: they name the host's own zone, which
# differs between the nodes of a cluster.
_HOST_ZONE_ALIASES = frozenset({"localtime", "posixrules"})


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do with a schedule whose `next_run_at` is due.

    - `fire_at`: the tick to fire now (it keys the job, so a tick fires at most once), or None
      when every due tick is older than the stale age and is skipped;
    - `next_run_at`: the first tick strictly after now, to store; None when there is none (an
      exact schedule, or a calendar that has run out);
    - `disable`: the schedule is finished (an exact time that has passed, fired or skipped).
    """

    fire_at: datetime | None
    next_run_at: datetime | None
    disable: bool


@dataclass(frozen=True, slots=True)
class ParsedSchedule:
    """A validated schedule; build it with `parse_schedule`.

    `schedule_value` is normalized (surrounding whitespace dropped, cron fields single-spaced);
    store it as is. Exactly one of `cron`, `interval` and `instant` is set, by `schedule_type`.
    """

    schedule_type: ScheduleType
    schedule_value: str
    time_zone: str | None
    cron: CronRule | None = None
    interval: timedelta | None = None
    instant: datetime | None = None

    def next_fire_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (aware; returned in UTC).

        None for an exact time that is not after `after`. For an interval this is
        `after + interval`: pass the previous due time to stay on the fixed-rate grid.
        Raises `InvalidScheduleError` if `after` is naive.
        """
        after = _aware_utc(after, "after")
        if self.cron is not None:
            return self.cron.next_after(after)
        if self.interval is not None:
            return _shifted(after, self.interval)
        assert self.instant is not None
        return self.instant if self.instant > after else None

    def first_fire(self, registered_at: datetime) -> datetime | None:
        """The first fire time of a schedule registered at `registered_at`: one interval later
        for an interval, the next cron tick strictly after it, the instant of an exact time."""
        if self.instant is not None:
            return self.instant
        return self.next_fire_after(registered_at)


def parse_schedule(
    schedule_type: str, schedule_value: str, time_zone: str | None = None
) -> ParsedSchedule:
    """Validate a schedule and return it parsed; raise `InvalidScheduleError` saying what is wrong.

    Refused: an unknown `schedule_type`; an empty or non-string value; a cron with the wrong
    number of fields, a bad field, or no fire time at all (`0 0 30 2 *`); an unknown or
    host-specific zone name (`time_zone` is checked for every type, since it is stored); an
    interval that is not a positive duration, or too long to fire from any date; an exact time
    that is not ISO-8601, has no offset, or whose UTC instant leaves years 1..9999. What depends
    on the store's clock (an exact time in the past, an interval whose first fire would leave
    year 9999) is refused later, by `first_fire_at`.
    """
    if schedule_type not in SCHEDULE_TYPES:
        raise InvalidScheduleError(
            f"schedule_type must be one of {', '.join(SCHEDULE_TYPES)}, got {schedule_type!r}"
        )
    if not isinstance(schedule_value, str):
        raise InvalidScheduleError(
            "schedule_value must be a string (an interval too: '5m', '500ms'), "
            f"got {type(schedule_value).__name__} {schedule_value!r}"
        )
    value = schedule_value.strip()
    if not value:
        raise InvalidScheduleError(f"schedule_value must not be empty, got {schedule_value!r}")
    zone = _zone(time_zone)
    if schedule_type == "cron":
        cron = parse_cron(value, zone)
        return ParsedSchedule("cron", cron.expression, time_zone, cron=cron)
    if schedule_type == "interval":
        return ParsedSchedule("interval", value, time_zone, interval=_interval(value))
    return ParsedSchedule("exact", value, time_zone, instant=_exact(value))


def validate_not_past(parsed: ParsedSchedule, now: datetime) -> None:
    """Refuse an exact schedule whose instant is before `now` (the store's clock).

    An instant equal to `now` is accepted: it is due at once. Other types always pass.
    """
    now = _aware_utc(now, "now")
    if parsed.instant is not None and parsed.instant < now:
        raise InvalidScheduleError(
            f"the exact time {parsed.schedule_value!r} is in the past (now is {now.isoformat()})"
        )


def first_fire_at(parsed: ParsedSchedule, now: datetime) -> datetime:
    """The first fire time of `parsed` registered at `now` (the store's clock); raise
    `InvalidScheduleError` when there is none: an exact time before `now` (one equal to `now` is
    due at once), or an interval whose first fire would leave year 9999 (`'3000000d'`), which
    would otherwise be stored and never fire."""
    validate_not_past(parsed, now)
    first = parsed.first_fire(now)
    if first is None:
        raise _never_fires(parsed, now)
    return first


def canonical_schedule_value(schedule_type: str, schedule_value: str) -> str:
    """A text equal for two values that mean the same schedule: an interval as its length in
    microseconds (`'10m'` = `'600s'`), an exact time as its UTC instant, a cron with its fields
    single-spaced. A value that does not parse is returned stripped, so it only equals itself.
    Never raises: the stores call it on rows written by any version."""
    value = schedule_value.strip()
    try:
        if schedule_type == "interval":
            return str(_interval(value) // _MICROSECOND)
        if schedule_type == "exact":
            return _exact(value).isoformat()
    except InvalidScheduleError:
        return value
    return " ".join(value.split())


def plan_tick(
    parsed: ParsedSchedule, due_at: datetime, now: datetime, max_stale_age: timedelta
) -> TickPlan:
    """Decide what a schedule whose stored `next_run_at` is `due_at` (<= `now`) does at `now`.

    The due ticks are `due_at` and every later tick up to `now`. Only the most recent of them
    fires, once (a backlog never becomes a storm), and only if it is at most `max_stale_age`
    old; the rest are skipped. An interval stays on its grid `due_at + k * interval`. The work
    is constant however long the scheduler was down: intervals use arithmetic, crons one
    backward step from `now`.

    An exact schedule fires `due_at` unless stale, and is disabled either way. A `due_at` after
    `now` (not due yet) plans nothing and keeps `due_at`.
    """
    due_at = _aware_utc(due_at, "due_at")
    now = _aware_utc(now, "now")
    if due_at > now:
        return TickPlan(fire_at=None, next_run_at=due_at, disable=False)
    if parsed.instant is not None:
        return TickPlan(_fresh(due_at, now, max_stale_age), next_run_at=None, disable=True)
    if parsed.interval is not None:
        # Integer arithmetic on microseconds: exact for a 1ms interval after years of downtime.
        latest = due_at + (now - due_at) // parsed.interval * parsed.interval
        next_run_at = _shifted(latest, parsed.interval)
    else:
        assert parsed.cron is not None
        # `due_at` is a tick that was promised even if it is off the current grid (the zone
        # database may have changed since), so it counts when no grid tick is more recent.
        found = parsed.cron.latest_at_or_before(now)
        latest = due_at if found is None else max(found, due_at)
        next_run_at = parsed.cron.next_after(now)
    return TickPlan(
        _fresh(latest, now, max_stale_age), next_run_at=next_run_at, disable=next_run_at is None
    )


def preview_schedule(
    schedule_type: str,
    schedule_value: str,
    *,
    time_zone: str | None = None,
    after: datetime | None = None,
    count: int = 5,
) -> list[datetime]:
    """The next `count` fire times (aware, UTC) of a schedule registered at `after` (default:
    now), exactly as the scheduler fires them when it is running.

    An interval gives `after + interval`, `after + 2 * interval`, ...; an exact time gives one
    instant, or none if it is not after `after`. Raises `InvalidScheduleError` for a bad
    schedule, a naive `after`, or a `count` that is not an int >= 1.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidScheduleError(f"count must be an int >= 1, got {count!r}")
    if after is not None and not isinstance(after, datetime):
        raise InvalidScheduleError(f"after must be a datetime, got {after!r}")
    start = datetime.now(UTC) if after is None else _aware_utc(after, "after")
    parsed = parse_schedule(schedule_type, schedule_value, time_zone)
    times: list[datetime] = []
    # For every type the first fire strictly after `start` is also the first fire of a
    # schedule registered at `start` (an exact time already past gives nothing).
    fire = parsed.next_fire_after(start)
    if fire is None and parsed.interval is not None:
        raise _never_fires(parsed, start)  # as `schedule()` refuses it
    while fire is not None and len(times) < count:
        times.append(fire)
        fire = parsed.next_fire_after(fire)
    return times


# ---- validation helpers ----------------------------------------------------------------------


@cache
def _known_zone_names() -> frozenset[str]:
    # Scanning the zone database takes tens of milliseconds: once per process.
    return frozenset(available_timezones()) - _HOST_ZONE_ALIASES


def _zone(time_zone: str | None) -> tzinfo:
    if time_zone is None:
        return UTC
    if not isinstance(time_zone, str):
        raise InvalidScheduleError(f"time_zone must be an IANA zone name, got {time_zone!r}")
    # Checking the list (not only ZoneInfo) keeps the spelling canonical: on a case-insensitive
    # file system ZoneInfo('europe/paris') loads, and then fails on the Linux nodes.
    if time_zone not in _known_zone_names():
        raise InvalidScheduleError(
            f"unknown time zone {time_zone!r} (use an IANA name such as 'Europe/Paris' or 'UTC')"
        )
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # pragma: no cover - listed above
        raise InvalidScheduleError(f"unknown time zone {time_zone!r}") from exc


def _interval(value: str) -> timedelta:
    try:
        interval = parse_positive_duration(value)
    except InvalidDurationError as exc:
        raise InvalidScheduleError(f"invalid interval {value!r}: {exc}") from exc
    if interval > _LONGEST_INTERVAL:
        raise InvalidScheduleError(
            f"the interval {value!r} can never fire: it is longer than years 1..9999"
        )
    return interval


def _exact(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidScheduleError(
            f"an exact schedule needs an ISO-8601 datetime with an offset, got {value!r}"
        ) from exc
    if instant.utcoffset() is None:
        raise InvalidScheduleError(
            "an exact time must carry an offset (e.g. '2030-01-01T09:00:00+01:00' or "
            f"'2030-01-01T08:00:00Z'), got the naive {value!r}"
        )
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # '9999-12-31T23:00:00-05:00' is in year 10000 in UTC
        raise InvalidScheduleError(
            f"the exact time {value!r} is outside years 1..9999 in UTC"
        ) from None


def _never_fires(parsed: ParsedSchedule, after: datetime) -> InvalidScheduleError:
    return InvalidScheduleError(
        f"the {parsed.schedule_type} schedule {parsed.schedule_value!r} can never fire: "
        f"its first fire after {after.isoformat()} would be past year 9999"
    )


# ---- time helpers ------------------------------------------------------------------------------


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidScheduleError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _shifted(instant: datetime, delta: timedelta) -> datetime | None:
    try:
        return instant + delta
    except OverflowError:  # past year 9999: the schedule has no more fire times
        return None


def _fresh(tick: datetime, now: datetime, max_stale_age: timedelta) -> datetime | None:
    """`tick` if it is recent enough to fire at `now`, else None (skipped as stale)."""
    return tick if now - tick <= max_stale_age else None
