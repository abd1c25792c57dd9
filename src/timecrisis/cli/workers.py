"""`timecrisis workers`: the worker processes registered in the store."""

from __future__ import annotations

from datetime import datetime

import click

from timecrisis.cli._output import (
    Cell,
    Column,
    dump,
    make_console,
    print_json,
    print_listing,
    seconds,
    timestamp,
)
from timecrisis.cli._params import json_option
from timecrisis.cli._store import storage_option, with_scheduler
from timecrisis.models import WorkerInfo
from timecrisis.scheduler import JobScheduler

WORKER_COLUMNS = (
    Column("name", key=True),
    Column("leader"),
    Column("running jobs", justify="right"),
    Column("last heartbeat (UTC)"),
    Column("ago", justify="right"),
    Column("first seen (UTC)"),
)


def _worker_row(worker: WorkerInfo, now: datetime) -> list[Cell]:
    return [
        worker.name,
        "yes" if worker.is_leader else "",
        str(worker.running),
        timestamp(worker.last_heartbeat),
        seconds(max(0.0, (now - worker.last_heartbeat).total_seconds())),
        timestamp(worker.first_seen),
    ]


@click.command(short_help="List the registered workers.")
@storage_option()
@json_option()
def workers(storage_url: str, as_json: bool) -> None:
    """List the workers registered in the store: the leader, how many jobs each runs, and when
    each last sent a heartbeat ("ago" is measured on the store's clock).

    A worker that stops heartbeating is removed by the leader, and its jobs are picked up again.

    \b
    Examples:
      timecrisis workers --storage postgresql://app@db:5432/app
      timecrisis workers --json | jq -r '.[] | select(.is_leader) | .name'
    """

    async def fetch(scheduler: JobScheduler) -> tuple[list[WorkerInfo], datetime]:
        return await scheduler.list_workers(), await scheduler.storage.now()

    found, now = with_scheduler(storage_url, fetch)
    if as_json:
        print_json([dump(worker) for worker in found])
        return
    print_listing(
        make_console(),
        WORKER_COLUMNS,
        [_worker_row(worker, now) for worker in found],
        empty="no workers are registered",
    )
