"""timecrisis in a Django project (docs/django.md).

- Add `"timecrisis.contrib.django"` to `INSTALLED_APPS`; `python manage.py timecrisis ...` then
  runs any `timecrisis` command with the project's settings loaded.
- `TIMECRISIS = {"SCHEDULER": "proj.jobs:scheduler", "SCHEMA": "timecrisis"}` in the settings:
  the scheduler `manage.py timecrisis worker` runs (no TARGET needed), and the PostgreSQL schema
  `storage_from_settings` puts the tables in. Both are optional.
- `storage_from_settings(alias="default")` builds the store on a database of `DATABASES`, so the
  jobs live next to the application's data and a view can enqueue inside its transaction.

Importing this module imports Django; `import timecrisis` never does.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from timecrisis.storage.base import JobStorage

__all__ = ["SETTING", "storage_from_settings", "storage_url", "timecrisis_settings"]

SETTING = "TIMECRISIS"
_KEYS = frozenset({"SCHEDULER", "SCHEMA"})
DEFAULT_SCHEMA = "timecrisis"

_POSTGRES_ENGINES = frozenset(
    {"django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"}
)
_SQLITE_ENGINES = frozenset(
    {"django.db.backends.sqlite3", "django.contrib.gis.db.backends.spatialite"}
)
# OPTIONS that Django's PostgreSQL backend consumes itself: they are not libpq parameters.
_DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "server_side_binding", "pool", "assume_role"})

# The URL each store built here answers to, so `manage.py timecrisis jobs list` can open the
# same store as the scheduler (the operations commands take a URL).
_urls: weakref.WeakKeyDictionary[JobStorage, str] = weakref.WeakKeyDictionary()


def timecrisis_settings() -> dict[str, Any]:
    """`settings.TIMECRISIS`, checked: a dict whose keys are among SCHEDULER and SCHEMA (a
    misspelt key is an error rather than a setting silently ignored)."""
    value = getattr(settings, SETTING, {})
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, got {value!r}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown key(s) in settings.{SETTING}: {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(_KEYS))})"
        )
    for key in _KEYS & set(value):
        if not isinstance(value[key], str) or not value[key].strip():
            raise ImproperlyConfigured(
                f"settings.{SETTING}[{key!r}] must be a non-empty string, got {value[key]!r}"
            )
    return dict(value)


def storage_from_settings(alias: str = "default") -> JobStorage:
    """A store on the database `alias` of `DATABASES`:

    - PostgreSQL (`django.db.backends.postgresql`): a `PostgresJobStorage` on the same server,
      database and credentials (NAME, USER, PASSWORD, HOST, PORT and the libpq parameters of
      OPTIONS), its tables in the schema `TIMECRISIS["SCHEMA"]` (default `timecrisis`). Jobs
      can then be enqueued in a view's transaction (`connection=django.db.connection`).
    - SQLite (`django.db.backends.sqlite3`): a `SQLiteJobStorage` on the same file.
    - any other engine: `ImproperlyConfigured`.

    The database is read when this is called (Django's test runner renames it before tests
    run); nothing connects until the store is first used."""
    database = _database(alias)
    engine = database.get("ENGINE", "")
    if engine in _POSTGRES_ENGINES:
        return _postgres(database)
    if engine in _SQLITE_ENGINES:
        return _sqlite(alias, database)
    raise ImproperlyConfigured(
        f"timecrisis cannot store jobs in DATABASES[{alias!r}] (ENGINE {engine!r}): "
        "use PostgreSQL (django.db.backends.postgresql) or SQLite (django.db.backends.sqlite3)"
    )


def storage_url(storage: JobStorage) -> str | None:
    """The URL the `timecrisis` command opens `storage` with (`--storage`), if it can tell: a
    store from `storage_from_settings`, or any SQLite store. None otherwise."""
    url = _urls.get(storage)
    if url is not None:
        return url
    from timecrisis.storage.sqlite import SQLiteJobStorage

    if isinstance(storage, SQLiteJobStorage):
        return f"sqlite:///{storage.path.absolute()}"  # an absolute path: four slashes
    return None


def _database(alias: str) -> dict[str, Any]:
    try:
        # Django's view of DATABASES, with its defaults filled in and the test runner's renamed
        # test database, without loading the backend (another engine is refused below, with
        # our message rather than its driver's ImportError).
        return dict(connections.settings[alias])
    except KeyError:
        known = ", ".join(map(repr, settings.DATABASES)) or "none"
        raise ImproperlyConfigured(
            f"no database {alias!r} in settings.DATABASES (defined: {known})"
        ) from None


def _postgres(database: dict[str, Any]) -> JobStorage:
    from psycopg.conninfo import make_conninfo

    from timecrisis.storage.postgres import PostgresJobStorage

    params = _libpq_params(database)
    schema = timecrisis_settings().get("SCHEMA", DEFAULT_SCHEMA)
    storage = PostgresJobStorage(make_conninfo(**params), schema=schema)
    _urls[storage] = _postgres_url(params, schema)
    return storage


def _libpq_params(database: dict[str, Any]) -> dict[str, str]:
    """The libpq parameters Django's PostgreSQL backend connects with (its
    `get_connection_params`, minus the Python objects only psycopg's `connect()` takes)."""
    params: dict[str, str] = {}
    for key, value in (database.get("OPTIONS") or {}).items():
        if key not in _DJANGO_ONLY_OPTIONS and isinstance(value, str | int):
            params[key] = str(value)
    name = database.get("NAME") or ("" if "service" in params else "postgres")
    fields = {"dbname": name, "user": database.get("USER"), "password": database.get("PASSWORD")}
    fields |= {"host": database.get("HOST"), "port": database.get("PORT")}
    params.update({key: str(value) for key, value in fields.items() if value})
    return params


def _postgres_url(params: dict[str, str], schema: str) -> str:
    """`params` as a postgresql:// URL. The password stays in the authority part, where the
    command's messages redact it; a socket directory or a host list goes in the query."""
    rest = dict(params)
    user, password = quote(rest.pop("user", ""), safe=""), rest.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = rest.get("host", "")
    netloc = auth
    if host and not host.startswith("/") and "," not in host:
        rest.pop("host")
        netloc += f"[{host}]" if ":" in host else host
        if "port" in rest:
            netloc += f":{rest.pop('port')}"
    path = quote(rest.pop("dbname", ""), safe="")
    query = urlencode({**rest, "schema": schema}, quote_via=quote)
    return f"postgresql://{netloc}/{path}?{query}"


def _sqlite(alias: str, database: dict[str, Any]) -> JobStorage:
    from timecrisis.storage.sqlite import SQLiteJobStorage

    name = str(database.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] is an in-memory SQLite database: timecrisis needs a file "
            "the web processes and the worker share"
        )
    return SQLiteJobStorage(Path(name))
