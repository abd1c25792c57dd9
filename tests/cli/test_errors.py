"""Failures and usage errors: one line on stderr, the right exit code, never a traceback. And
`--help` with examples on every command."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import click
from click.testing import CliRunner

from tests.cli.support import REPO, assert_one_line_error, cli_env, run_cli
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
    # Nothing listens on port 1; the password never reaches the terminal.
    unreachable = run_cli(
        "workers",
        "--storage",
        "postgresql://app:s3cret@127.0.0.1:1/app",
        TIMECRISIS_CONNECT_TIMEOUT="1",
    )
    assert_one_line_error(
        unreachable, 1, "cannot reach postgresql://app:***@127.0.0.1:1/app within 1s"
    )
    assert "s3cret" not in unreachable.stderr


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
    assert len(commands) == 18  # 7 top-level commands, jobs: 6, schedules: 5
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"], prog_name="timecrisis")
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output, path
        assert result.output.startswith(f"Usage: timecrisis {' '.join(path)}"), path
