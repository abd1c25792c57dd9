"""Fixtures of the CLI tests: a store URL per backend (a SQLite file, a fresh PostgreSQL
schema), empty or filled through the public API."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.cli.support import Filled, fill
from tests.pg_support import drop_schema, fresh_schema, require_postgres

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """An empty store's URL (nothing created yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"  # an absolute path: four slashes in all
        return
    base = require_postgres()
    schema = fresh_schema()
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}schema={schema}"
    finally:
        drop_schema(base, schema)


@pytest.fixture
def filled(store_url: str) -> Filled:
    return fill(store_url)


@pytest.fixture(scope="module")
def sqlite_filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """One filled SQLite store shared by a module's read-only tests (filling costs a worker
    run, and every command a test runs costs a process start)."""
    return fill(f"sqlite:///{tmp_path_factory.mktemp('cli') / 'shared.db'}")
