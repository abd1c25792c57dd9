"""`timecrisis pause NAME` and `timecrisis resume NAME`: flow control from the command line
(docs/flow-control.md). A name is a job type or a queue; the pause holds cluster-wide."""

from __future__ import annotations

import click

from timecrisis.cli._output import print_json
from timecrisis.cli._params import json_option
from timecrisis.cli._store import storage_option, with_scheduler
from timecrisis.scheduler import JobScheduler


@click.command(short_help="Pause a job type or a queue, cluster-wide.")
@click.argument("name")
@storage_option()
def pause(name: str, storage_url: str) -> None:
    """Pause NAME, a job type or a queue: no worker of any node claims its jobs until
    `timecrisis resume NAME`. Jobs already running finish. Pausing twice is harmless.

    \b
    Examples:
      timecrisis pause send-email
      timecrisis pause bulk --storage postgresql://app@db:5432/app
    """

    async def act(scheduler: JobScheduler) -> bool:
        return await scheduler.pause(name)

    changed = with_scheduler(storage_url, act)
    click.echo(f"paused {name!r}" if changed else f"{name!r} was already paused")


@click.command(short_help="Resume a paused job type or queue.")
@click.argument("name")
@storage_option()
def resume(name: str, storage_url: str) -> None:
    """Resume NAME: its due jobs start at once (workers are woken, they do not wait for their
    processing interval). Resuming a name that is not paused changes nothing.

    \b
    Example:
      timecrisis resume send-email
    """

    async def act(scheduler: JobScheduler) -> bool:
        return await scheduler.resume(name)

    changed = with_scheduler(storage_url, act)
    click.echo(f"resumed {name!r}" if changed else f"{name!r} was not paused")


@click.command("paused", short_help="List the paused job types and queues.")
@storage_option()
@json_option()
def paused(storage_url: str, as_json: bool) -> None:
    """List the paused job types and queues, one per line (sorted).

    \b
    Example:
      timecrisis paused --json
    """

    async def fetch(scheduler: JobScheduler) -> list[str]:
        return await scheduler.list_paused()

    names = with_scheduler(storage_url, fetch)
    if as_json:
        print_json(names)
        return
    click.echo("\n".join(names) if names else "nothing is paused")
