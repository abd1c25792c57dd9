"""`queries.sql` (loaded by `storage/_queries.py`) rendered once per store for its schema.

Each statement is written out in full in the file; the schema is the one thing filled in here.
It goes through `psycopg.sql` (an `Identifier`, never pasted into text), and the result is kept
as bytes, so each call sends the same query text and psycopg's automatic prepared statements
apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import LiteralString

from psycopg import sql

from timecrisis.storage._queries import load_queries


def render(template: LiteralString, schema: str) -> bytes:
    """Fill `{schema}` (quoted as an identifier) into a statement or a migration."""
    return sql.SQL(template).format(schema=sql.Identifier(schema)).as_bytes(None)


class Queries:
    """The catalogue rendered for one schema: `queries["claim_jobs"]` is ready to execute."""

    def __init__(self, schema: str) -> None:
        statements = load_queries("timecrisis.storage.postgres")
        self._source = statements.source
        self._rendered = {name: render(text, schema) for name, text in statements.items()}

    def __getitem__(self, name: str) -> bytes:
        try:
            return self._rendered[name]
        except KeyError:
            raise KeyError(f"{self._source} has no query named {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._rendered)
