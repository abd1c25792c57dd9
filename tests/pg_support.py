"""PostgreSQL for tests: the URL, a reachability check that fails (never skips) in CI, and
throwaway schemas.

- `TIMECRISIS_TEST_POSTGRES_URL` names the server (default: the local `test` database).
- `require_postgres()` returns the URL once the server answers. When it does not: with
  `CI=true` the test FAILS (a CI run that silently skipped PostgreSQL would prove nothing),
  elsewhere it is skipped with the reason.
- `fresh_schema()` names a schema no other test uses; `drop_schema()` removes it;
  `temporary_schema()` does both around a block.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("TIMECRISIS_TEST_POSTGRES_URL", DEFAULT_URL)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


_unreachable_reason: str | None = None
_checked = False


def require_postgres() -> str:
    """The test URL, after checking (once per process) that the server answers."""
    global _checked, _unreachable_reason
    url = postgres_url()
    if not _checked:
        _checked = True
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            _unreachable_reason = f"PostgreSQL at {url} is unreachable: {exc}".strip()
    if _unreachable_reason is not None:
        if in_ci():
            pytest.fail(f"{_unreachable_reason} (CI=true: PostgreSQL tests never skip in CI)")
        pytest.skip(_unreachable_reason)
    return url


def fresh_schema() -> str:
    """A schema name no other test (or test process) uses."""
    return f"t_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def adrop_schema(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@asynccontextmanager
async def temporary_schema() -> AsyncIterator[tuple[str, str]]:
    """(url, schema) for the block; the schema (and whatever the block created) is dropped
    afterwards."""
    url = require_postgres()
    schema = fresh_schema()
    try:
        yield url, schema
    finally:
        await adrop_schema(url, schema)
