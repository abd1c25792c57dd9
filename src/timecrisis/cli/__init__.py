"""The `timecrisis` command. Each subcommand lives in its own module of this package, imported
only when it runs."""

from __future__ import annotations

import os
from typing import NoReturn

import click

from timecrisis.cli._errors import run_cli
from timecrisis.cli._lazy import LazyGroup

STORAGE_ENV = "TIMECRISIS_STORAGE"  # as in cli/_store.py, which this module must not import

_COMMANDS = {
    "worker": "timecrisis.cli.worker:worker",
    "jobs": "timecrisis.cli.jobs:jobs",
    "dead-letters": "timecrisis.cli.dead_letters:dead_letters",
    "schedules": "timecrisis.cli.schedules:schedules",
    "workers": "timecrisis.cli.workers:workers",
    "metrics": "timecrisis.cli.metrics:metrics",
    "pause": "timecrisis.cli.pauses:pause",
    "resume": "timecrisis.cli.pauses:resume",
    "paused": "timecrisis.cli.pauses:paused",
    "dashboard": "timecrisis.cli.dashboard:dashboard",
    "demo": "timecrisis.cli.demo:demo",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="timecrisis")
@click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    expose_value=True,
    help="Store for the command (the Celery habit): the same as the command's own --storage, "
    "which wins when both are given.",
)
def cli(storage_url: str | None) -> None:
    """timecrisis: run workers and operate the job queue.

    Commands that open a store take --storage URL after their own name (or before it, or
    the TIMECRISIS_STORAGE environment variable): memory://, sqlite:///relative.db,
    sqlite:////absolute.db or postgresql://user@host:5432/db?schema=name. Listings print a
    table on a terminal and JSON with --json. Errors print one line; exit status 1 for a
    failure, 2 for a usage error.

    \b
    Examples:
      timecrisis worker myapp.jobs:scheduler --storage sqlite:///app.db
      export TIMECRISIS_STORAGE=sqlite:///app.db
      timecrisis jobs list --status failed
      timecrisis jobs show 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
      timecrisis metrics --watch
    """
    if storage_url is not None:
        # Every command reads $TIMECRISIS_STORAGE when its own --storage is not given: setting
        # it here gives the precedence users expect (command option > this option > env).
        os.environ[STORAGE_ENV] = storage_url


def main() -> NoReturn:
    run_cli(cli)
