"""The `timecrisis` command. Each subcommand lives in its own module of this package."""

from __future__ import annotations

import click

from timecrisis.cli.demo import demo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="timecrisis")
def cli() -> None:
    """timecrisis: run workers and operate the job queue.

    Commands that open a store take --storage URL (else the TIMECRISIS_STORAGE environment
    variable): memory://, sqlite:///relative.db, sqlite:////absolute.db or
    postgresql://user@host:5432/db.
    """


cli.add_command(demo)


def main() -> None:
    cli()
