"""`storage_from_url`: one string names a store, for the CLI, env vars and config files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from timecrisis.errors import StorageError
from timecrisis.storage.base import JobStorage

_SCHEMES = (
    "memory://, sqlite:///relative.db, sqlite:////absolute/path.db, postgresql://user@host/db"
)


class InvalidStorageUrlError(StorageError, ValueError):
    """A storage URL could not be understood."""


def storage_from_url(url: str) -> JobStorage:
    """Build a store from a URL (SQLAlchemy's conventions):

    - `memory://`
    - `sqlite:///relative/path.db` (three slashes: relative to the working directory),
      `sqlite:////absolute/path.db` (four slashes: absolute)
    - `postgresql://user:password@host:port/dbname` (also `postgres://`; a `?schema=name` query
      parameter picks the schema, default `timecrisis`)

    Nothing connects until the store is first used. Raises `InvalidStorageUrlError` (a
    `StorageError` and a `ValueError`) for anything else."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidStorageUrlError(f"a storage URL is required (one of: {_SCHEMES})")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidStorageUrlError(f"not a storage URL: {url!r} (expected one of: {_SCHEMES})")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest not in ("", "/"):
            raise InvalidStorageUrlError(f"memory:// takes no path, got {url!r}")
        from timecrisis.storage.memory import InMemoryJobStorage

        return InMemoryJobStorage()
    if scheme == "sqlite":
        return _sqlite(url, rest)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return _postgres(url)
    raise InvalidStorageUrlError(
        f"unknown storage scheme {scheme!r} in {url!r} (expected one of: {_SCHEMES})"
    )


def _sqlite(url: str, rest: str) -> JobStorage:
    # "sqlite:///x.db" -> rest "/x.db" -> relative "x.db"; "sqlite:////abs.db" -> "//abs.db"
    if not rest.startswith("/"):
        raise InvalidStorageUrlError(
            f"a SQLite URL needs three slashes (sqlite:///relative.db) or four "
            f"(sqlite:////absolute.db), got {url!r}"
        )
    path_text = rest[1:].split("?", 1)[0]
    if not path_text or path_text in ("/", ":memory:"):
        raise InvalidStorageUrlError(
            f"a SQLite URL needs a file path (use memory:// for an in-memory store), got {url!r}"
        )
    from timecrisis.storage.sqlite import SQLiteJobStorage

    return SQLiteJobStorage(Path(path_text))


def _postgres(url: str) -> JobStorage:
    parts = urlsplit(url)
    if not parts.hostname and not parts.path.strip("/") and "host=" not in parts.query:
        raise InvalidStorageUrlError(f"a PostgreSQL URL needs a host or a database, got {url!r}")
    schema = "timecrisis"
    query = []
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        if key == "schema":
            schema = value
        else:
            query.append(item)
    dsn = parts._replace(scheme="postgresql", query="&".join(query)).geturl()
    from timecrisis.storage.postgres import PostgresJobStorage

    return PostgresJobStorage(dsn, schema=schema)
