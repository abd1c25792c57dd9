"""`timecrisis worker TARGET`: run a worker process for an application's scheduler."""

from __future__ import annotations

import logging

import click

from timecrisis.cli._logsetup import LOG_LEVELS, LogFormat, configure_logging
from timecrisis.cli._store import (
    STORAGE_ENV,
    connect,
    open_storage,
    redact,
    run,
    storage_option,
)
from timecrisis.cli._target import load_scheduler
from timecrisis.scheduler import JobScheduler

logger = logging.getLogger("timecrisis.cli")


@click.command(short_help="Run a worker for a JobScheduler.")
@click.argument("target", metavar="TARGET")
@storage_option(
    required=False,
    help=(
        "Store to work on, replacing the scheduler's own (same URL forms as every command). "
        f"Default: ${STORAGE_ENV}, else the store the scheduler was built with."
    ),
)
@click.option(
    "--worker",
    "worker_name",
    metavar="NAME",
    help="Worker name, unique per process (default: the scheduler's, else host-uuid).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Most jobs this process runs at once (default: the scheduler's max_concurrent_jobs).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    metavar="N",
    help=(
        "Most claimed jobs held beyond the free slots while handlers are short "
        "(default: the scheduler's prefetch, else 4 x concurrency; 0 turns it off)."
    ),
)
@click.option(
    "--queues",
    metavar="A,B",
    help=(
        "Claim only the jobs of these queues, comma-separated (default: the scheduler's "
        "queues=, else every queue)."
    ),
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Lowest level logged (applies to the application's loggers too).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text lines, or one JSON object per line for log shippers. Logs go to stderr.",
)
def worker(
    target: str,
    storage_url: str | None,
    worker_name: str | None,
    concurrency: int | None,
    prefetch: int | None,
    queues: str | None,
    log_level: str,
    log_format: LogFormat,
) -> None:
    """Run a worker for the JobScheduler TARGET until SIGINT, SIGTERM or SIGHUP.

    TARGET is MODULE:ATTRIBUTE (the working directory is importable) or
    path/to/file.py:ATTRIBUTE. The first SIGINT/SIGTERM/SIGHUP stops gracefully: no new claims,
    running jobs get the scheduler's shutdown_timeout to finish, then what still runs goes back
    to pending. A second signal stops at once (running jobs go back to pending, no attempt
    charged). Exit status: 0 after a stop, 1 on failure, 2 for a bad TARGET or option.

    \b
    Examples:
      timecrisis worker myapp.jobs:scheduler
      timecrisis worker src/myapp/jobs.py:scheduler --concurrency 10
      timecrisis worker myapp.jobs:scheduler --queues emails,reports
      timecrisis worker myapp.jobs:scheduler --storage postgresql://app@db:5432/app \\
          --worker web-1 --log-format json
    """
    served = None if queues is None else _queue_list(queues)
    configure_logging(log_level, log_format)
    scheduler = load_scheduler(target)
    run(_serve(scheduler, target, storage_url, worker_name, concurrency, prefetch, served))


def _queue_list(value: str) -> list[str]:
    """`--queues a,b` as names; an empty one is a usage error, before anything runs."""
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise click.BadParameter(
            f"queue names must not be empty, got {value!r}", param_hint="'--queues'"
        )
    return names


async def _serve(
    scheduler: JobScheduler,
    target: str,
    storage_url: str | None,
    worker_name: str | None,
    concurrency: int | None,
    prefetch: int | None,
    queues: list[str] | None,
) -> None:
    replaced = None
    if storage_url is not None:
        # Built in the event loop (a PostgreSQL pool binds to it). A worker may create its store.
        replaced = scheduler.storage
        scheduler.configure(storage=open_storage(storage_url, must_exist=False))
    scheduler.configure(
        worker=worker_name, max_concurrent_jobs=concurrency, prefetch=prefetch, queues=queues
    )
    where = redact(storage_url) if storage_url is not None else repr(scheduler.storage)
    # An unreachable database is one error line at once, not the pool's 30 s of retries.
    # The worker creates its schema if missing, so only reachability is checked here.
    await connect(scheduler.storage, where, must_exist=False, init=False)
    served = scheduler.settings.queues
    logger.info(
        "running %s as worker %s on %s, queues: %s",
        target,
        scheduler.worker,
        where,
        "every queue" if served is None else ", ".join(sorted(served)),
    )
    try:
        await scheduler.serve()  # SIGINT/SIGTERM/SIGHUP, second-signal force stop, close
    finally:
        if replaced is not None:
            await replaced.close()  # never opened; closing releases its thread, if any
