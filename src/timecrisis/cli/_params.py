"""Option types and options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from timecrisis.durations import parse_duration
from timecrisis.errors import InvalidDurationError
from timecrisis.models import FINISHED_STATUSES, JobStatus

F = TypeVar("F", bound=Callable[..., Any])

# Recent click makes ParamType generic (and its stubs need the argument); click 8.1, which
# pyproject still allows, cannot subscript it at runtime.
if TYPE_CHECKING:
    _ParamType = click.ParamType[timedelta]
else:
    _ParamType = click.ParamType

JOB_STATUSES = [status.value for status in JobStatus]
FINISHED_STATUS_NAMES = [status.value for status in JobStatus if status in FINISHED_STATUSES]


class DurationType(_ParamType):
    """The library's duration forms on the command line: `30` (seconds), `500ms`, `5m`, `7d`."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        try:
            return parse_duration(float(text) if _is_number(text) else text)
        except InvalidDurationError:
            self.fail(f"{value!r} is not a duration (examples: 30, 500ms, 10s, 5m, 2h, 7d)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


DURATION = DurationType()


def json_option(help: str = "Print JSON instead of a table.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


def limit_option(default: int = 50) -> Callable[[F], F]:
    return click.option(
        "--limit",
        type=click.IntRange(1, 10_000),
        default=default,
        show_default=True,
        help="Most rows to show.",
    )


def cursor_option() -> Callable[[F], F]:
    return click.option(
        "--cursor",
        metavar="ID",
        help="Show the page after this job id (the last id of the previous page).",
    )
