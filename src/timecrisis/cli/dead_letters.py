"""`timecrisis dead-letters`: the jobs that failed for good."""

from __future__ import annotations

import click

from timecrisis.cli._params import cursor_option, json_option, limit_option
from timecrisis.cli._store import storage_option
from timecrisis.cli.jobs import print_job_page
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

    async def read(scheduler: JobScheduler) -> list[Job]:
        return await scheduler.list_dead_letters(limit=limit, cursor=cursor)

    print_job_page(
        storage_url,
        read,
        limit=limit,
        cursor=cursor,
        as_json=as_json,
        empty="the dead-letter queue is empty",
    )
