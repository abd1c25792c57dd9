"""`--storage URL` and opening the store a command works on.

Every command that opens a store takes `--storage` after its own name (else the
`TIMECRISIS_STORAGE` environment variable), so one exported variable serves a whole session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from timecrisis.cli._errors import CommandError, describe, one_line
from timecrisis.errors import TimeCrisisError
from timecrisis.scheduler import JobScheduler
from timecrisis.storage.base import JobStorage
from timecrisis.storage.urls import storage_from_url

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

STORAGE_ENV = "TIMECRISIS_STORAGE"
CONNECT_TIMEOUT_ENV = "TIMECRISIS_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 10.0
STORAGE_HELP = (
    "Store to open: memory://, sqlite:///relative.db, sqlite:////absolute.db or "
    f"postgresql://user@host:5432/db?schema=name. Default: ${STORAGE_ENV}."
)


def storage_option(*, required: bool = True, help: str = STORAGE_HELP) -> Callable[[F], F]:
    """The `--storage URL` option. `required=False` leaves it `None` when it is not given."""
    return click.option(
        "--storage",
        "storage_url",
        metavar="URL",
        envvar=STORAGE_ENV,
        show_envvar=False,  # the help text names the variable
        required=required,
        help=help,
    )


def redact(url: str) -> str:
    """The URL with its password hidden, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str, *, must_exist: bool = True) -> JobStorage:
    """Build the store `url` names. A bad URL is a usage error (exit 2).

    With `must_exist`, a SQLite URL naming a file that is not there is refused: an operator who
    mistypes a path must see an error, not an empty queue in a freshly created database."""
    try:
        storage = storage_from_url(url)
    except TimeCrisisError as error:  # InvalidStorageUrlError, or a store refusing an option
        # Building a store never connects, so anything it refuses is in the URL itself
        # (an unknown scheme, a bad schema name...): a usage error.
        raise click.BadParameter(describe(error), param_hint="'--storage'") from None
    if must_exist:
        from timecrisis.storage.sqlite import SQLiteJobStorage

        if isinstance(storage, SQLiteJobStorage) and not storage.path.exists():
            raise CommandError(f"no SQLite database at {storage.path} (from {redact(url)})")
    return storage


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; library errors become one-line command errors (exit 1)."""
    try:
        return asyncio.run(coroutine)
    except TimeCrisisError as error:
        raise CommandError(describe(error)) from None


def with_scheduler(url: str, action: Callable[[JobScheduler], Awaitable[T]]) -> T:
    """Open the store at `url`, run `action` on a bare `JobScheduler` over it, close the store.

    The operations commands read and repair state, which needs no job definitions: the bare
    scheduler is the public read/repair API (DESIGN §1) without starting any worker loop. They
    only work on a store that exists: a SQLite file that is there, a PostgreSQL schema that
    holds timecrisis tables (`open_storage`, `connect`)."""
    _quiet_library_logs()

    async def main() -> T:
        # Built inside the event loop: a PostgreSQL pool binds to the loop that creates it.
        storage = open_storage(url)
        try:
            await connect(storage, redact(url), must_exist=True)
            return await action(JobScheduler(storage))
        finally:
            await storage.close()

    return run(main())


def connect_timeout() -> float:
    raw = os.environ.get(CONNECT_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise click.UsageError(f"{CONNECT_TIMEOUT_ENV} must be a number of seconds, got {raw!r}")
    return value


async def connect(storage: JobStorage, label: str, *, must_exist: bool, init: bool = True) -> None:
    """Reach the store (named `label` in messages) within the connect timeout, then `init()`
    it unless `init` is False. Every failure is a one-line `CommandError`.

    A PostgreSQL store is first probed on one connection of its own: psycopg's pool retries
    an unreachable server for 30 s, which would leave an operator staring at a silent
    terminal, while the probe fails at once. With `must_exist`, a schema without timecrisis
    tables is refused instead of being created by `init()`: a mistyped `?schema=` must not
    show an empty queue (`open_storage` refuses a missing SQLite file for the same reason).
    Past the probe, the last warning logged while `init()` retried explains a timeout."""
    timeout = connect_timeout()
    complaints = _LastComplaint()
    root = logging.getLogger()
    root.addHandler(complaints)
    try:
        async with asyncio.timeout(timeout):
            await _probe_postgres(storage, label, must_exist=must_exist)
            if init:
                await storage.init()
    except TimeoutError:
        detail = f": {complaints.message}" if complaints.message else ""
        raise CommandError(f"cannot reach {label} within {timeout:g}s{detail}") from None
    except TimeCrisisError as error:
        raise CommandError(f"cannot open {label}: {describe(error)}") from None
    finally:
        root.removeHandler(complaints)


async def _probe_postgres(storage: JobStorage, label: str, *, must_exist: bool) -> None:
    if "timecrisis.storage.postgres" not in sys.modules:
        return  # no PostgreSQL store was built (building one imports it): keep psycopg unloaded
    from timecrisis.storage.postgres import PostgresJobStorage

    if not isinstance(storage, PostgresJobStorage):
        return
    version = await storage.probe()  # a StorageError says why: refused, unknown host...
    if must_exist and version is None:
        raise CommandError(
            f"no timecrisis tables in PostgreSQL schema {storage.schema!r} at {label} "
            "(check ?schema=; a worker creates them)"
        )


class _LastComplaint(logging.Handler):
    """Keeps the last warning or error logged anywhere, as one line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = one_line(record.getMessage())


def _quiet_library_logs() -> None:
    # A one-shot command reports failures as its one error line; the library's and the
    # driver's warnings (e.g. every reconnection attempt) would otherwise reach stderr
    # through logging's last-resort handler.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
