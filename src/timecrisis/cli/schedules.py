"""`timecrisis schedules ...`: list, preview, enable, disable and delete schedules."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from timecrisis.cli._errors import fail
from timecrisis.cli._output import (
    Cell,
    Column,
    dump,
    make_console,
    print_json,
    print_listing,
    timestamp,
)
from timecrisis.cli._params import json_option
from timecrisis.cli._store import STORAGE_ENV, run, storage_option, with_scheduler
from timecrisis.models import ScheduledJob
from timecrisis.scheduler import JobScheduler
from timecrisis.schedules import preview_schedule

SCHEDULE_COLUMNS = (
    Column("name", key=True),
    Column("type"),
    Column("schedule"),
    Column("enabled"),
    Column("next run (UTC)"),
    Column("last fired (UTC)"),
)


@click.group(short_help="List, preview and manage schedules.")
def schedules() -> None:
    """Look at and manage recurring schedules: list, preview, enable, disable, delete.

    Schedules are named; the application registers them with scheduler.schedule(...).

    \b
    Examples:
      timecrisis schedules list --storage sqlite:///app.db
      timecrisis schedules preview --cron '0 9 * * 1-5' --tz America/New_York
    """


def describe_schedule(schedule_type: str, value: str, time_zone: str | None) -> str:
    """`cron 0 9 * * 1-5 Europe/Paris`, `interval 5m`, `exact 2030-01-01T09:00:00+01:00`."""
    zone = f" {time_zone}" if time_zone and schedule_type == "cron" else ""
    return f"{schedule_type} {value}{zone}"


def _schedule_row(schedule: ScheduledJob) -> list[Cell]:
    return [
        schedule.name,
        schedule.type,
        describe_schedule(schedule.schedule_type, schedule.schedule_value, schedule.time_zone),
        "yes" if schedule.enabled else "no",
        timestamp(schedule.next_run_at),
        timestamp(schedule.last_scheduled_at),
    ]


@schedules.command("list")
@storage_option()
@json_option()
def list_schedules(storage_url: str, as_json: bool) -> None:
    """List every schedule, by name.

    \b
    Examples:
      timecrisis schedules list --storage sqlite:///app.db
      timecrisis schedules list --json | jq -r '.[] | select(.enabled | not) | .name'
    """

    async def fetch(scheduler: JobScheduler) -> list[ScheduledJob]:
        return await scheduler.list_scheduled_jobs()

    found = with_scheduler(storage_url, fetch)
    if as_json:
        print_json([dump(schedule) for schedule in found])
        return
    print_listing(
        make_console(),
        SCHEDULE_COLUMNS,
        [_schedule_row(schedule) for schedule in found],
        empty="no schedules",
    )


@schedules.command("preview", short_help="Print the next fire times.")
@click.argument("name", required=False)
@click.option("--cron", "cron", metavar="EXPR", help="Preview this cron expression instead.")
@click.option(
    "--interval", "interval", metavar="DURATION", help="Preview this interval (5m, 1h) instead."
)
@click.option(
    "--tz",
    "time_zone",
    metavar="ZONE",
    help="IANA time zone of --cron (default UTC); fire times are also shown in it.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="How many fire times.",
)
@click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    envvar=STORAGE_ENV,
    help=f"Store holding the schedule NAME. Default: ${STORAGE_ENV}.",
)
@json_option("Print the fire times as a JSON array of ISO-8601 strings.")
def preview(
    name: str | None,
    cron: str | None,
    interval: str | None,
    time_zone: str | None,
    count: int,
    storage_url: str | None,
    as_json: bool,
) -> None:
    """Print the next fire times of the schedule NAME, or of --cron EXPR / --interval DURATION,
    exactly as the scheduler fires them (DST rules included).

    For a stored schedule the list starts at its next_run_at. --cron and --interval need no
    store.

    \b
    Examples:
      timecrisis schedules preview daily-report --storage sqlite:///app.db
      timecrisis schedules preview --cron '30 2 * * *' --tz Europe/Paris --count 10
      timecrisis schedules preview --interval 90m --json
    """
    if sum(value is not None for value in (name, cron, interval)) != 1:
        raise click.UsageError("give exactly one of NAME, --cron EXPR or --interval DURATION")
    if name is None:
        schedule_type, value = ("cron", cron) if cron is not None else ("interval", interval)
        assert value is not None
        times = run(_preview_expression(schedule_type, value, time_zone, count))
        zone = time_zone
    else:
        if time_zone is not None:
            raise click.UsageError("--tz goes with --cron; a stored schedule has its own zone")
        if storage_url is None:
            raise click.UsageError(f"previewing NAME needs --storage URL (or ${STORAGE_ENV})")
        schedule, times = _preview_stored(storage_url, name, count)
        zone = schedule.time_zone
        if not schedule.enabled:
            click.echo(f"schedule {name!r} is disabled: it fires only once enabled", err=True)
    _print_times(times, zone, as_json)


async def _preview_expression(
    schedule_type: str, value: str, time_zone: str | None, count: int
) -> list[datetime]:
    # A coroutine only so that `run` turns InvalidScheduleError into a one-line error.
    return preview_schedule(schedule_type, value, time_zone=time_zone, count=count)


def _preview_stored(storage_url: str, name: str, count: int) -> tuple[ScheduledJob, list[datetime]]:
    async def fetch(scheduler: JobScheduler) -> ScheduledJob:
        schedule = await scheduler.get_scheduled_job(name)
        if schedule is None:
            fail(f"no schedule named {name!r}")
        return schedule

    schedule = with_scheduler(storage_url, fetch)
    first = schedule.next_run_at
    if first is None:
        return schedule, []
    # The stored next_run_at is the truth for the first tick (an interval keeps its grid); the
    # ticks after it follow from the definition, exactly as the scheduler computes them.
    later = (
        preview_schedule(
            schedule.schedule_type,
            schedule.schedule_value,
            time_zone=schedule.time_zone,
            after=first,
            count=count - 1,
        )
        if count > 1
        else []
    )
    return schedule, [first, *later]


def _print_times(times: list[datetime], time_zone: str | None, as_json: bool) -> None:
    zone = ZoneInfo(time_zone) if time_zone else None
    shown = [t.astimezone(zone) if zone else t.astimezone(UTC) for t in times]
    if as_json:
        print_json([t.isoformat() for t in shown])
        return
    columns = [Column("#", justify="right"), Column("UTC", key=True)]
    if zone is not None:
        columns.append(Column(str(time_zone), key=True))
    rows: list[list[Cell]] = []
    for number, (utc, local) in enumerate(zip(times, shown, strict=True), start=1):
        row: list[Cell] = [str(number), utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")]
        if zone is not None:
            row.append(local.strftime("%Y-%m-%d %H:%M:%S %Z (%z)"))
        rows.append(row)
    print_listing(make_console(), columns, rows, empty="no fire times: it will not fire again")


def _switch(storage_url: str, name: str, action: str) -> None:
    async def act(scheduler: JobScheduler) -> bool:
        if action == "enable":
            return await scheduler.enable_scheduled_job(name)
        if action == "disable":
            return await scheduler.disable_scheduled_job(name)
        return await scheduler.delete_scheduled_job(name)

    if not with_scheduler(storage_url, act):
        fail(f"no schedule named {name!r}")
    click.echo(f"schedule {name!r} {action}d")


@schedules.command("enable", short_help="Enable a schedule.")
@click.argument("name")
@storage_option()
def enable(name: str, storage_url: str) -> None:
    """Enable the schedule NAME: it fires again from its next fire time.

    \b
    Example:
      timecrisis schedules enable daily-report
    """
    _switch(storage_url, name, "enable")


@schedules.command("disable", short_help="Disable a schedule.")
@click.argument("name")
@storage_option()
def disable(name: str, storage_url: str) -> None:
    """Disable the schedule NAME: it stops firing (jobs it already created are untouched).

    \b
    Example:
      timecrisis schedules disable daily-report
    """
    _switch(storage_url, name, "disable")


@schedules.command("delete", short_help="Delete a schedule.")
@click.argument("name")
@storage_option()
def delete(name: str, storage_url: str) -> None:
    """Delete the schedule NAME (jobs it already created stay). An application that registers
    it at boot creates it again on its next start.

    \b
    Example:
      timecrisis schedules delete old-report
    """
    _switch(storage_url, name, "delete")
