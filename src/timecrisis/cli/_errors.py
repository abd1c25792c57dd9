"""How the `timecrisis` command fails: one line on stderr and an exit code, never a traceback.

Exit codes: 0 success, 1 failure (unreachable store, unknown id, refused operation), 2 usage
(bad option, bad argument, bad TARGET or storage URL), 130 interrupted.
`TIMECRISIS_TRACEBACK=1` shows the traceback of an unexpected error, for bug reports.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any, NoReturn

import click
from click.exceptions import NoArgsIsHelpError

from timecrisis.errors import TimeCrisisError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TRACEBACK_ENV = "TIMECRISIS_TRACEBACK"


class CommandError(click.ClickException):
    """A failure the user can act on; its message is printed as it is, on one line."""

    exit_code = EXIT_FAILURE


def one_line(text: str) -> str:
    """Driver messages (psycopg's especially) span several lines; an error is one line."""
    return " ".join(str(text).split())


def fail(message: str) -> NoReturn:
    raise CommandError(message)


def describe(error: BaseException) -> str:
    """`TimeCrisisError`s carry messages written for users; others get their type named."""
    message = one_line(str(error))
    if isinstance(error, TimeCrisisError) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_cli(
    group: click.Group,
    args: list[str] | None = None,
    *,
    prog_name: str = "timecrisis",
    default_map: dict[str, Any] | None = None,
) -> NoReturn:
    """Invoke `group` and turn every outcome into an exit code (the command's `main()`).

    `args` (default: `sys.argv[1:]`), `prog_name` and `default_map` are for a host that
    forwards its own command line, such as `manage.py timecrisis` (timecrisis.contrib.django),
    which supplies the project's scheduler and store as defaults."""
    try:
        code = group.main(args, prog_name=prog_name, standalone_mode=False, default_map=default_map)
    except NoArgsIsHelpError as error:  # `timecrisis jobs` alone: the help is the answer
        error.show()
        _exit(EXIT_USAGE)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        _print_error(f"{one_line(_usage_message(error))}{hint}")
        _exit(EXIT_USAGE)
    except click.ClickException as error:
        _print_error(one_line(error.format_message()))
        _exit(error.exit_code)
    except click.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        _print_error("interrupted")
        _exit(EXIT_INTERRUPTED)
    except TimeCrisisError as error:
        _print_error(describe(error))
        _exit(EXIT_FAILURE)
    except BrokenPipeError:
        _silence_stdout()
        _exit(EXIT_FAILURE)
    except Exception as error:  # noqa: BLE001 - the promise is "never a traceback"
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        else:
            _print_error(
                f"unexpected {describe(error)} (set {TRACEBACK_ENV}=1 to see the traceback)"
            )
        _exit(EXIT_FAILURE)
    _exit(code if isinstance(code, int) else 0)


def _usage_message(error: click.UsageError) -> str:
    """Click's message, with the two ways to give a missing store."""
    if (
        isinstance(error, click.MissingParameter)
        and error.param is not None
        and error.param.name == "storage_url"
    ):
        return (
            "Missing option '--storage' URL: give it after the command's name or before it "
            "(timecrisis --storage URL jobs list), or set TIMECRISIS_STORAGE"
        )
    return error.format_message()


def _print_error(message: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        click.echo(f"error: {message}", err=True)


def _silence_stdout() -> None:
    # `timecrisis jobs list | head -1`: the reader left. Point stdout at /dev/null so the
    # interpreter's final flush does not complain (the recipe from the `signal` docs).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _exit(code: int) -> NoReturn:
    sys.exit(code)
