"""The named-query files of the SQL stores: `sqlite/queries.sql` and `postgres/queries.sql`,
each parsed once and looked up by name.

The format is procrastinate's: a `-- name --` header line, comment lines that describe the
statement, then the statement, written out in full so that it can be pasted into `sqlite3` or
`psql` as it stands (parameters stay placeholders). Whole comment lines are dropped from the
text a store sends (they would travel to the server on every call); a comment at the end of a
line of SQL stays part of the statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


class QueryFileError(ValueError):
    """A named-query file that cannot be read as one: a name given twice, or a name with no
    statement under it."""


class QueryFile(Mapping[str, LiteralString]):
    """The statements of one file by name. Looking up a name the file lacks raises a `KeyError`
    that names the file, so a typo fails loudly at the first call, not as a `None` statement."""

    def __init__(self, source: str, statements: dict[str, LiteralString]) -> None:
        self.source = source
        self._statements = statements

    def __getitem__(self, name: str) -> LiteralString:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"{self.source} has no query named {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)


def parse_queries(text: str, source: str) -> QueryFile:
    """The statements of a named-query file's `text`, by name, in file order."""
    parts = _HEADER.split(text)
    statements: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        statement = "\n".join(lines).strip()
        if name in statements:
            raise QueryFileError(f"{source} defines {name!r} twice")
        if not statement:
            raise QueryFileError(f"{source}: {name!r} has no statement")
        # The file ships with the package and is never built from input: a literal in spirit
        # (mypy reads LiteralString as str; a pyright user would need a cast here).
        statements[name] = statement
    return QueryFile(source, statements)


@cache
def load_queries(package: str) -> QueryFile:
    """`queries.sql` of `package` (e.g. "timecrisis.storage.sqlite"), read once per process."""
    text = resources.files(package).joinpath("queries.sql").read_text("utf-8")
    return parse_queries(text, f"{package.rsplit('.', 1)[-1]}/queries.sql")
