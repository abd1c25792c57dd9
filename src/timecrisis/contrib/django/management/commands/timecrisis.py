"""`python manage.py timecrisis <command> ...`: any `timecrisis` command, with the project's
settings (`TIMECRISIS`, `DATABASES`) supplying the scheduler and the store. See
timecrisis/contrib/django/_cli.py and docs/django.md."""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from timecrisis.contrib.django import _cli


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = (
        "Run a timecrisis command (worker, jobs, schedules, metrics, ...) with this project's "
        "scheduler (settings.TIMECRISIS['SCHEDULER']) and store. "
        "`manage.py timecrisis --help` lists the commands."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        # manage.py has set Django up; everything after the command's name is timecrisis's
        # (Django's own parser would reject `worker --concurrency 4`, and swallow --help).
        _cli.run(argv[2:], prog_name=f"{os.path.basename(argv[0])} {argv[1]}")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # For call_command("timecrisis", "jobs", "list"): the arguments, as they are.
        parser.add_argument("args", nargs=argparse.REMAINDER)

    def handle(self, *args: str, **options: Any) -> None:
        try:
            _cli.run(list(args), prog_name="timecrisis")
        except SystemExit as done:
            if done.code not in (0, None):
                raise CommandError(
                    f"timecrisis {' '.join(args)} failed", returncode=done.code
                ) from None
