"""Failures and usage errors: one line on stderr, the right exit code, never a traceback. And
`--help` with examples on every command."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import click
import psycopg
import pytest
from click.testing import CliRunner

from tests.cli.support import REPO, assert_one_line_error, cli_env, run_cli
from tests.pg_support import drop_schema, fresh_schema, require_postgres
from timecrisis.cli import cli


def test_bad_urls_and_unreachable_stores(tmp_path: pathlib.Path) -> None:
    assert_one_line_error(
        run_cli("jobs", "list", "--storage", "redis://localhost"),
        2,
        "--storage",
        "unknown storage scheme 'redis'",
    )
    missing = tmp_path / "missing.db"
    assert_one_line_error(
        run_cli("jobs", "list", "--storage", f"sqlite:///{missing}"),
        1,
        f"no SQLite database at {missing}",
    )
    assert not missing.exists()  # a typo never creates a database


# Nothing listens on port 1: the connection is refused at once.
REFUSED = "postgresql://app:s3cret@127.0.0.1:1/app"
REFUSED_SHOWN = "postgresql://app:***@127.0.0.1:1/app"  # the password never reaches the terminal


def test_a_refused_postgres_connection_fails_at_once_with_the_drivers_reason() -> None:
    # A timeout longer than the test's own: only a probe that does not wait out the pool's
    # retries can answer with the refusal rather than "cannot reach ... within".
    refused = run_cli("workers", "--storage", REFUSED, TIMECRISIS_CONNECT_TIMEOUT="600")
    assert_one_line_error(
        refused, 1, f"cannot open {REFUSED_SHOWN}: cannot connect to PostgreSQL", "refused"
    )
    assert "s3cret" not in refused.stderr


def test_a_worker_on_a_refused_postgres_connection_prints_one_line() -> None:
    # Without the probe: 30 s of psycopg.pool WARNINGs (two lines each), then the error.
    result = run_cli(
        "worker", "tests.cli.app:scheduler", "--storage", REFUSED, TIMECRISIS_CONNECT_TIMEOUT="600"
    )
    assert_one_line_error(result, 1, f"cannot open {REFUSED_SHOWN}", "refused")
    assert "s3cret" not in result.stderr


def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout() -> None:
    # A socket that accepts connections (the kernel's backlog) but never speaks.
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        port = silent.getsockname()[1]
        for args in (("jobs", "list"), ("worker", "tests.cli.app:scheduler")):
            result = run_cli(
                *args,
                "--storage",
                f"postgresql://app@127.0.0.1:{port}/app",
                TIMECRISIS_CONNECT_TIMEOUT="1",
            )
            assert_one_line_error(
                result, 1, f"cannot reach postgresql://app@127.0.0.1:{port}/app within 1s"
            )


@pytest.mark.postgres
def test_operator_commands_refuse_a_postgres_schema_that_does_not_exist() -> None:
    base = require_postgres()
    schema = fresh_schema()  # a mistyped ?schema=
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}schema={schema}"
    try:
        for args in (
            ("jobs", "list"),
            ("workers",),
            ("metrics",),
            ("jobs", "retry", "0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52"),
            ("schedules", "disable", "nightly"),
        ):
            assert_one_line_error(
                run_cli(*args, "--storage", url),
                1,
                f"no timecrisis tables in PostgreSQL schema '{schema}'",
                "check ?schema=",
            )
        with psycopg.connect(base) as conn:  # looking never created it
            found = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
        assert found == (0,)
    finally:
        drop_schema(base, schema)


def test_usage_errors_exit_2_with_one_line() -> None:
    assert_one_line_error(run_cli("jobs", "list"), 2, "Missing option '--storage'", "--help")
    assert_one_line_error(
        run_cli("jobs", "list", "--storage", "memory://", "--limit", "0"), 2, "--limit"
    )
    assert_one_line_error(
        run_cli("metrics", "--storage", "memory://", TIMECRISIS_CONNECT_TIMEOUT="soon"),
        2,
        "TIMECRISIS_CONNECT_TIMEOUT must be a number of seconds",
    )
    bare = run_cli("jobs")  # a group alone shows its help
    assert bare.code == 2
    assert "Commands:" in bare.stderr and "purge" in bare.stderr


def test_storage_comes_from_the_environment() -> None:
    listed = run_cli("jobs", "list", "--json", TIMECRISIS_STORAGE="memory://")
    assert (listed.code, listed.json()) == (0, [])


def test_the_installed_script_runs() -> None:
    script = pathlib.Path(sys.executable).parent / "timecrisis"
    done = subprocess.run(
        [str(script), "--help"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in ("worker", "jobs", "dead-letters", "schedules", "workers", "metrics", "demo"):
        assert name in done.stdout


def _all_commands(group: click.Group, ctx: click.Context) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            sub = click.Context(command, info_name=name, parent=ctx)
            found += [(name,), *((name, *rest) for rest in _all_commands(command, sub))]
        else:
            found.append((name,))
    return found


def test_every_command_has_help_with_an_example() -> None:
    # In-process (click's runner): this checks help texts, not the process behaviour.
    runner = CliRunner()
    commands = _all_commands(cli, click.Context(cli, info_name="timecrisis"))
    assert len(commands) == 22  # 11 top-level commands, jobs: 6, schedules: 5
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"], prog_name="timecrisis")
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output, path
        assert result.output.startswith(f"Usage: timecrisis {' '.join(path)}"), path


def test_a_missing_storage_names_both_ways_to_give_it() -> None:
    result = run_cli("jobs", "list")
    assert_one_line_error(result, 2, "--storage", "TIMECRISIS_STORAGE", "before it")


def test_storage_before_the_command_works_like_after_it(tmp_path: pathlib.Path) -> None:
    """The Celery habit: `timecrisis --storage URL jobs list`."""
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    before = run_cli("--storage", url, "jobs", "list")
    assert_one_line_error(before, 1, "no SQLite database at")  # it reached the store
    assert run_cli("--storage", "memory://", "jobs", "list", "--json").json() == []
    # The command's own option wins over the group's, which wins over the environment.
    both = run_cli("--storage", url, "jobs", "list", "--storage", "memory://", "--json")
    assert both.json() == []
    env = run_cli("--storage", "memory://", "jobs", "list", "--json", TIMECRISIS_STORAGE=url)
    assert env.json() == []
