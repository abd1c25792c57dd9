"""`timecrisis dead-letters`: the jobs that failed for good."""

from __future__ import annotations

import click

from timecrisis.cli._output import dump, make_console, print_json
from timecrisis.cli._params import cursor_option, json_option, limit_option
from timecrisis.cli._store import storage_option, with_scheduler
from timecrisis.cli._views import print_jobs
from timecrisis.cli.jobs import check_cursor
from timecrisis.models import Job
from timecrisis.scheduler import JobScheduler


@click.command("dead-letters", short_help="List the jobs that failed for good.")
@storage_option()
@limit_option()
@cursor_option()
@json_option()
def dead_letters(storage_url: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """List the dead-letter queue: jobs that exhausted their retries, failed with a
    non-retryable error or expired, newest first. `timecrisis jobs retry ID` puts one back.

    \b
    Examples:
      timecrisis dead-letters --storage sqlite:///app.db
      timecrisis dead-letters --json | jq -r '.[] | "\\(.id) \\(.fail_reason)"'
    """

    async def fetch(scheduler: JobScheduler) -> list[Job]:
        found = await scheduler.list_dead_letters(limit=limit, cursor=cursor)
        await check_cursor(scheduler, cursor, found)
        return found

    found = with_scheduler(storage_url, fetch)
    if as_json:
        print_json([dump(job) for job in found])
        return
    print_jobs(make_console(), found, title=None, empty="the dead-letter queue is empty")
    if len(found) == limit:
        click.echo(f"more may follow: add --cursor {found[-1].id}", err=True)
