"""The named-query catalogue: `queries.sql` parsed once, rendered once per store for its schema.

The file uses procrastinate's format: a `-- name --` header line, description comment lines,
then the statement. Rendering goes through `psycopg.sql` (the schema is an `Identifier`, never
pasted into text), and the result is kept as bytes, so each call sends the same query text and
psycopg's automatic prepared statements apply.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

from psycopg import sql

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)
NOW = "coalesce(%(now)s::timestamptz, now())"
"""The store's clock inside a statement: the injected test clock if any, else the database's."""
NEW_ID = (
    "overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint), 12, '0')"
    " placing '-' from 9 for 0) || '-7' || substr(gen_random_uuid()::text, 16)"
)
"""A fresh id made inside a statement, one per row: a version 7 UUID like `_common.new_id` (48
bits of Unix milliseconds, then the version, then the random rest of a `gen_random_uuid()`),
for the same reason: ids that grow at the right edge of their index, where random ones land
on a random leaf of job_runs' primary key each, and that index grows with the history kept.
PostgreSQL 15 has no uuidv7(). (Measured on W5, 1,000,000 runs: within the noise of this
machine, medians 2,250 and 2,270 jobs/s; it matters once the index outgrows the cache.)"""


@cache
def load_queries() -> dict[str, LiteralString]:
    """Every statement of `queries.sql` by name, with comment lines removed (they would be sent
    to the server on every call)."""
    text = resources.files("timecrisis.storage.postgres").joinpath("queries.sql").read_text("utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        statement = "\n".join(lines).strip()
        if name in queries:
            raise ValueError(f"queries.sql defines {name!r} twice")
        # The file ships with the package and is never built from input: a literal in spirit
        # (mypy reads LiteralString as str; a pyright user would need a cast here).
        queries[name] = statement
    return _splice_fragments(_scope_claims(queries))


_FRAGMENT_PREFIX = "fragment_"

# Flow control (docs/flow-control.md): each claim statement comes in two forms, picked by the
# claim's `queues`: every queue (`claim_jobs`), reading each type's head; or named queues
# (`claim_jobs_in_queues`), reading one (type, queue) head each, so the jobs of queues the
# worker does not serve are never read. Two statements, not one with an OR: the claim pool plans
# each statement once (generic plans), and one plan cannot pick its index by a parameter.
_QUEUE_SCOPES = ("claim_jobs", "complete_and_claim")
IN_QUEUES = "_in_queues"
"""The suffix of a claim statement's named-queues form."""


def _scope_claims(sections: dict[str, LiteralString]) -> dict[str, LiteralString]:
    """Expand each claim's `{queue_heads}` into its two forms (see `_QUEUE_SCOPES`)."""
    scoped = dict(sections)
    for name in _QUEUE_SCOPES:
        text = sections[name]
        scoped[name] = text.replace("{queue_heads}", "{fragment_heads_every_queue}")
        scoped[name + IN_QUEUES] = text.replace("{queue_heads}", "{fragment_heads_in_queues}")
    return scoped


def _splice_fragments(sections: dict[str, LiteralString]) -> dict[str, LiteralString]:
    """Replace each `{fragment_x}` in a statement with the text of the `fragment_x` section, so
    SQL that two statements share (the writes of a claim, of a completion batch) is written
    once. Fragments are pieces, not statements: they are not returned."""
    fragments = {n: text for n, text in sections.items() if n.startswith(_FRAGMENT_PREFIX)}
    statements: dict[str, LiteralString] = {}
    for name, text in sections.items():
        if name in fragments:
            continue
        for fragment, body in fragments.items():
            text = text.replace(f"{{{fragment}}}", body)
        if _FRAGMENT_PREFIX in text:
            raise ValueError(f"queries.sql: {name!r} names a fragment that does not exist")
        statements[name] = text
    return statements


# Statements rendered more than once: {name: {variant name: {placeholder: SQL fragment}}}.
_VARIANTS: dict[str, dict[str, dict[str, LiteralString]]] = {
    "insert_jobs": {
        "insert_jobs": {"on_conflict": ""},
        "insert_jobs_skipping_taken": {"on_conflict": "ON CONFLICT DO NOTHING"},
    },
}


def render(template: LiteralString, schema: str, **fragments: LiteralString) -> bytes:
    """Fill `{schema}` (quoted as an identifier), `{now}`, `{new_id}` and any fixed `fragments`
    into a statement or a migration."""
    composed = sql.SQL(template).format(
        schema=sql.Identifier(schema),
        now=sql.SQL(NOW),
        new_id=sql.SQL(NEW_ID),
        **{name: sql.SQL(fragment) for name, fragment in fragments.items()},
    )
    return composed.as_bytes(None)


class Queries:
    """The catalogue rendered for one schema: `queries["claim_jobs"]` is ready to execute."""

    def __init__(self, schema: str) -> None:
        self._rendered: dict[str, bytes] = {}
        for name, text in load_queries().items():
            variants = _VARIANTS.get(name, {name: {}})
            for variant, fragments in variants.items():
                self._rendered[variant] = render(text, schema, **fragments)

    def __getitem__(self, name: str) -> bytes:
        return self._rendered[name]
