"""Versioned migrations for the SQLite store.

The files `migrations/NNNN_name.sql` are applied in version order and recorded in
`timecrisis_migrations(version, name, applied_at)`. `migrate` runs inside the `BEGIN IMMEDIATE`
transaction the connection thread opens for it: when several processes open a fresh file at
once, one of them takes the write lock and migrates, and the others wait for it, then find
nothing left to do. A migration is all or nothing, since SQLite's DDL is transactional.

A database whose recorded version is newer than the newest file here was migrated by a newer
timecrisis: this code would misread it, so it refuses to touch it (`StorageError`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from timecrisis.errors import StorageError
from timecrisis.storage._queries import load_queries
from timecrisis.storage.sqlite._rows import to_us

Q = load_queries("timecrisis.storage.sqlite")
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def available_migrations() -> tuple[Migration, ...]:
    """Every file of the `migrations` package, in version order (read once per process)."""
    found = []
    for entry in resources.files("timecrisis.storage.sqlite.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return tuple(sorted(found, key=lambda migration: migration.version))


def latest_version() -> int:
    migrations = available_migrations()
    return migrations[-1].version if migrations else 0


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration recorded in the database (0 for a fresh file)."""
    exists = conn.execute(Q["migrations_table_exists"]).fetchone()
    if exists is None:
        return 0
    row = conn.execute(Q["schema_version"]).fetchone()
    return int(row[0])


def needs_migration(conn: sqlite3.Connection) -> bool:
    """Whether `migrate` has anything to do (or to refuse): a cheap read, no write lock."""
    return schema_version(conn) != latest_version()


def migrate(conn: sqlite3.Connection, now: datetime) -> None:
    """Apply the migrations the database lacks. Runs inside the caller's write transaction."""
    migrations = available_migrations()
    newest = migrations[-1].version if migrations else 0
    applied = schema_version(conn)
    if applied > newest:
        raise StorageError(
            f"the database schema is at version {applied}, newer than the newest this "
            f"timecrisis knows ({newest}); upgrade timecrisis to use this database"
        )
    if applied == newest:
        return
    conn.execute(Q["create_migrations_table"])
    for migration in migrations:
        if migration.version <= applied:
            continue
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(
            Q["record_migration"],
            (migration.version, migration.name, to_us(now)),
        )


def _statements(script: str) -> list[str]:
    """Split a script into statements. `executescript()` cannot be used: it COMMITs the open
    transaction first, and the migration must run inside ours."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip() and not _only_comments(current):
        raise StorageError(f"incomplete SQL statement at the end of a migration: {current!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())
