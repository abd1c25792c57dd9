"""Terminal and JSON output shared by the commands.

Two promises: an id (or a schedule name) is never cut or wrapped, because users copy it from one
command into the next; and data is never read as rich markup (a job type such as `[red]x` prints
as it is). A table that cannot fit its ids on the terminal is printed as records instead,
one `field: value` line each, the way `psql`'s expanded mode does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from timecrisis.models import JobStatus, RunStatus

Cell = str | Text

STATUS_STYLES: dict[str, str] = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "magenta",
    RunStatus.RELEASED: "yellow",
}

# Rich pads each cell by one space on both sides and draws one border between columns and at
# both ends. A word longer than this may be folded (long error texts, JSON); shorter ones not.
_CELL_PADDING = 2
_LONGEST_UNFOLDED_WORD = 10


def make_console() -> Console:
    """stdout; the width is the terminal's (or $COLUMNS); colors only on a terminal."""
    return Console(highlight=False, emoji=False)


def timestamp(value: datetime | None) -> str:
    """UTC, to the second (the headers say UTC). The space lets a narrow column wrap there."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}m"


def status_text(status: str) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(status, ""))


def dump(record: BaseModel) -> Any:
    return record.model_dump(mode="json")


def print_json(value: Any) -> None:
    """A document for scripts (`jq` and friends): indented, UTF-8, stable keys order."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_json_line(value: Any) -> None:
    """One compact object per line, for streams (`jobs logs --json`, `metrics --watch --json`)."""
    click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    # A value the user copies (an id, a schedule name): printed whole, never wrapped or cut.
    key: bool = False
    justify: Literal["left", "right"] = "left"


def print_listing(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
    empty: str,
) -> None:
    """A table, or records when the terminal is too narrow to show every key column whole."""
    if not rows:
        console.print(Text(empty, style="dim"))
        return
    if title:  # above the table, not rich's centred or padded table title
        console.print(Text(title, style="bold"))
    if _table_fits(console.width, columns, rows):
        console.print(_table(columns, rows))
    else:
        _print_records(console, columns, rows)


def print_fields(console: Console, fields: Iterable[tuple[str, Cell]]) -> None:
    """`label  value` lines, labels aligned; long values run on (never cut)."""
    items = list(fields)
    width = max((len(label) for label, _ in items), default=0)
    for label, value in items:
        line = Text(f"{label:<{width}}  ", style="bold")
        line.append_text(_as_text(value))
        console.print(line, soft_wrap=True)


def _as_text(value: Cell) -> Text:
    return value if isinstance(value, Text) else Text(value)


def _table_fits(width: int, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bool:
    """Whether every key column fits whole and every other column gets at least its longest word
    (capped), so a table never degrades into a stack of 3-letter fragments."""
    needed = len(columns) + 1  # borders
    for index, column in enumerate(columns):
        texts = [column.header, *(_as_text(row[index]).plain for row in rows)]
        if column.key:
            needed += max(len(text) for text in texts) + _CELL_PADDING
        else:
            longest_word = max((len(word) for text in texts for word in text.split()), default=1)
            needed += min(longest_word, _LONGEST_UNFOLDED_WORD) + _CELL_PADDING
    return needed <= width


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> Table:
    table = Table(header_style="bold")
    for column in columns:
        if column.key:
            table.add_column(column.header, no_wrap=True, justify=column.justify)
        else:
            table.add_column(column.header, overflow="fold", justify=column.justify)
    for row in rows:
        table.add_row(*(_as_text(cell) for cell in row))
    return table


def _print_records(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
) -> None:
    for number, row in enumerate(rows):
        if number:
            console.print()
        print_fields(console, zip((c.header for c in columns), row, strict=True))
