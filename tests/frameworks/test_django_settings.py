"""`storage_from_settings` and the `TIMECRISIS` setting, one Django configuration per case.
Django's settings are process-global, so each case runs in a subprocess of its own; none
connects to a database (building a store never does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import timecrisis

SOURCE = Path(timecrisis.__file__).resolve().parents[1]

# Runs in the subprocess: configure Django with SETTINGS (JSON), then report what
# storage_from_settings(ALIAS) built, or the error it raised.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings

    settings.configure(**json.loads(sys.argv[1]))
    django.setup()
    from timecrisis.contrib.django import storage_from_settings, storage_url

    try:
        store = storage_from_settings(sys.argv[2])
    except Exception as error:
        print(json.dumps({"error": type(error).__name__, "message": str(error)}))
    else:
        report = {"type": type(store).__name__, "url": storage_url(store)}
        if hasattr(store, "schema"):
            report |= {"schema": store.schema, "conninfo": store._session.conninfo}
        if hasattr(store, "path"):
            report["path"] = str(store.path)
        print(json.dumps(report))
    """
)


def probe(alias: str = "default", **settings: Any) -> dict[str, Any]:
    settings.setdefault("INSTALLED_APPS", ["timecrisis.contrib.django"])
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(settings), alias],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def postgres(**fields: Any) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.postgresql", **fields}


def test_postgresql_from_the_database_settings() -> None:
    report = probe(
        DATABASES={
            "default": postgres(
                NAME="shop",
                USER="app",
                PASSWORD="s3cr:t@",
                HOST="db.internal",
                PORT=6432,
                OPTIONS={
                    "sslmode": "require",
                    "options": "-c search_path=shop",
                    # Django's own options: not libpq parameters, left out
                    "isolation_level": 1,
                    "server_side_binding": True,
                },
            )
        },
        TIMECRISIS={"SCHEMA": "jobs"},
    )
    assert report["type"] == "PostgresJobStorage"
    assert report["schema"] == "jobs"
    for part in ("dbname=shop", "user=app", "host=db.internal", "port=6432", "sslmode=require"):
        assert part in report["conninfo"]
    assert "isolation_level" not in report["conninfo"]
    assert "server_side_binding" not in report["conninfo"]
    # The URL the operations commands open: the same database, the password in the authority
    # part (where the CLI's messages redact it).
    assert report["url"] == (
        "postgresql://app:s3cr%3At%40@db.internal:6432/shop"
        "?sslmode=require&options=-c%20search_path%3Dshop&schema=jobs"
    )


def test_postgresql_defaults() -> None:
    # No SCHEMA: timecrisis's default schema; a socket directory goes in the URL's query.
    report = probe(DATABASES={"default": postgres(NAME="app", HOST="/run/postgresql")})
    assert report["schema"] == "timecrisis"
    assert report["url"] == "postgresql:///app?host=%2Frun%2Fpostgresql&schema=timecrisis"


def test_the_url_names_the_same_store() -> None:
    report = probe(DATABASES={"default": postgres(NAME="app", USER="u", HOST="::1", PORT="5")})
    assert report["url"] == "postgresql://u@[::1]:5/app?schema=timecrisis"
    rebuilt = timecrisis.storage_from_url(report["url"])
    assert isinstance(rebuilt, timecrisis.PostgresJobStorage)
    assert rebuilt.schema == "timecrisis"


def test_another_alias() -> None:
    report = probe(
        "jobs",
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/web.db"},
            "jobs": postgres(NAME="jobs"),
        },
    )
    assert report["type"] == "PostgresJobStorage"
    assert "dbname=jobs" in report["conninfo"]


def test_sqlite_uses_the_same_file(tmp_path: Path) -> None:
    file = tmp_path / "db.sqlite3"
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(file)}
    report = probe(DATABASES={"default": sqlite})
    assert report == {"type": "SQLiteJobStorage", "url": f"sqlite:///{file}", "path": str(file)}


def test_in_memory_sqlite_is_refused() -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    report = probe(DATABASES={"default": sqlite})
    assert report["error"] == "ImproperlyConfigured"
    assert "in-memory SQLite" in report["message"]


def test_another_engine_is_refused() -> None:
    report = probe(DATABASES={"default": {"ENGINE": "django.db.backends.mysql", "NAME": "x"}})
    assert report["error"] == "ImproperlyConfigured"
    assert "'django.db.backends.mysql'" in report["message"]
    assert "PostgreSQL" in report["message"] and "SQLite" in report["message"]


def test_an_unknown_alias_is_refused() -> None:
    report = probe("replica", DATABASES={"default": postgres(NAME="app")})
    assert report["error"] == "ImproperlyConfigured"
    assert "no database 'replica'" in report["message"] and "'default'" in report["message"]


def test_a_misspelt_setting_is_refused() -> None:
    report = probe(DATABASES={"default": postgres(NAME="app")}, TIMECRISIS={"SCHEMAS": "x"})
    assert report["error"] == "ImproperlyConfigured"
    assert "'SCHEMAS'" in report["message"]


def test_a_bad_schema_is_refused() -> None:
    report = probe(DATABASES={"default": postgres(NAME="app")}, TIMECRISIS={"SCHEMA": "No-Way"})
    assert report["error"] == "InvalidSchemaNameError"


def test_import_timecrisis_never_imports_django() -> None:
    code = (
        "import sys, timecrisis, timecrisis.cli, timecrisis.testing; "
        "assert 'django' not in sys.modules, 'django imported'; "
        "assert 'timecrisis.contrib' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
