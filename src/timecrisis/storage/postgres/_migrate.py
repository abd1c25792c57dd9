"""Versioned migrations, applied by `init()` on first use.

- Files `migrations/NNNN_name.sql`, applied in order, each recorded in the schema's
  `timecrisis_migrations` table in the same transaction as its DDL (PostgreSQL DDL is
  transactional: a migration is applied entirely or not at all).
- Many nodes booting at once: each takes one transaction-scoped advisory lock (a key derived
  from the schema name) before looking at the version, so they queue, the first applies what is
  missing and the others find nothing left to do. The lock ends with the transaction, so a
  crashed migrator never leaves it behind.
- A schema at the newest version is recognised without the lock (one read), so a booting node
  does not queue behind its peers, and `CREATE SCHEMA` is only attempted when the schema is
  missing (a role that may use but not create schemas can point at an existing database).
- A schema newer than this code is refused (`StorageError`): old code must not write rows
  whose meaning it does not know.
- Every shipped version the schema has not recorded is applied, not only those above its
  newest: version 9 (the kept counts) was merged after version 10 (runs written once), so a
  schema made by a build between the two holds 10 without 9. A migration that may land below
  an applied one must not depend on the later ones (0009 does not: see its header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, LiteralString

from psycopg import AsyncConnection

from timecrisis.errors import StorageError
from timecrisis.storage._queries import load_queries
from timecrisis.storage.postgres._keys import advisory_key
from timecrisis.storage.postgres._sql import render

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    script: LiteralString


@cache
def available_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("timecrisis.storage.postgres.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            # Shipped with the package, never built from input.
            script: LiteralString = entry.read_text("utf-8")  # mypy: LiteralString is str
            found.append(Migration(int(match.group(1)), match.group(2), script))
    return tuple(sorted(found, key=lambda m: m.version))


def _query(name: str, schema: str) -> bytes:
    """Statement `name` of queries.sql for `schema` (migrations run before any `Queries`)."""
    return render(load_queries("timecrisis.storage.postgres")[name], schema)


def latest_version() -> int:
    migrations = available_migrations()
    return migrations[-1].version if migrations else 0


async def current_version(conn: AsyncConnection[Any], schema: str) -> int | None:
    """The schema's newest recorded version (0 with none), or None when it has no migrations
    table yet."""
    versions = await applied_versions(conn, schema)
    return None if versions is None else max(versions, default=0)


async def applied_versions(conn: AsyncConnection[Any], schema: str) -> frozenset[int] | None:
    """The versions recorded in the schema, or None when it has no migrations table yet."""
    table = f"{schema}.timecrisis_migrations"
    cur = await conn.execute(_query("migrations_table_exists", schema), {"table": _regclass(table)})
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    cur = await conn.execute(_query("applied_versions", schema))
    row = await cur.fetchone()
    return frozenset(row[0]) if row else frozenset()


def _regclass(qualified: str) -> str:
    # to_regclass parses its argument as SQL: quote the schema so its case and characters are
    # taken literally.
    schema, _, table = qualified.partition(".")
    return '"' + schema.replace('"', '""') + '".' + table


def _refuse_newer(schema: str, version: int) -> None:
    newest = latest_version()
    if version > newest:
        raise StorageError(
            f"the PostgreSQL schema {schema!r} is at version {version}, newer than this "
            f"timecrisis knows ({newest}): upgrade timecrisis on this node"
        )


async def migrate(conn: AsyncConnection[Any], schema: str, *, target: int | None = None) -> None:
    """Bring `schema` to the newest version (or to `target`, for upgrade tests). `conn` must
    not be inside a transaction."""
    goal = latest_version() if target is None else target
    wanted = {m.version for m in available_migrations() if m.version <= goal}
    recorded = await applied_versions(conn, schema)
    if recorded is not None:
        _refuse_newer(schema, max(recorded, default=0))
        if wanted <= recorded:
            return
    async with conn.transaction():
        key = advisory_key("migrate", schema)
        await conn.execute(_query("lock_migrations", schema), {"key": key})
        exists = await conn.execute(_query("schema_exists", schema), {"schema": schema})
        row = await exists.fetchone()
        if row is None or not row[0]:
            await conn.execute(_query("create_schema", schema))
        await conn.execute(_query("create_migrations_table", schema))
        applied = await applied_versions(conn, schema) or frozenset()
        _refuse_newer(schema, max(applied, default=0))
        for migration in available_migrations():
            if migration.version in applied or migration.version > goal:
                continue
            await conn.execute(render(migration.script, schema))
            await conn.execute(
                _query("record_migration", schema),
                {"version": migration.version, "name": migration.name},
            )
