"""Versioned migrations for the SQLite store, applied by `init()` inside `BEGIN IMMEDIATE`, so
several processes opening a fresh file at once migrate it exactly once."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from importlib import resources

from timecrisis.errors import StorageError
from timecrisis.storage.sqlite._rows import to_us

_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in `migrations/`, in version order."""
    found = []
    for entry in resources.files("timecrisis.storage.sqlite.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first; split into statements instead.
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current)
            current = ""
    return statements


def migrate(conn: sqlite3.Connection, now: datetime) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS timecrisis_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    current = conn.execute("SELECT coalesce(max(version), 0) FROM timecrisis_migrations").fetchone()
    applied = int(current[0])
    migrations = available_migrations()
    newest = migrations[-1][0] if migrations else 0
    if applied > newest:
        raise StorageError(
            f"the database schema is at version {applied}, newer than this timecrisis knows "
            f"({newest}); upgrade timecrisis"
        )
    for version, name, sql in migrations:
        if version <= applied:
            continue
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO timecrisis_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, name, to_us(now)),
        )
