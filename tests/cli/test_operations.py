"""The operations commands, run as real subprocesses against stores that the tests filled
through the public API. Every command runs against SQLite and PostgreSQL in the first test; the
others pin details on SQLite (the CLI code path is the same for every store). Each test groups
several invocations: a process start costs most of a second on a busy machine."""

from __future__ import annotations

from datetime import datetime

from tests.cli.support import Filled, assert_one_line_error, run_cli


def test_every_command_works_on_each_backend(filled: Filled) -> None:
    url = filled.url
    all_ids = [filled.canceled, filled.pending, filled.failed, *reversed(filled.completed)]

    listed = run_cli("jobs", "list", "--storage", url, "--json")
    assert listed.code == 0, listed
    assert [job["id"] for job in listed.json()] == all_ids  # newest first
    shown = run_cli("jobs", "show", filled.completed[0], "--storage", url, "--json").json()
    assert shown["job"]["result"] == {"greeted": "ada"}
    assert [(run["attempt"], run["status"]) for run in shown["runs"]] == [(1, "completed")]
    assert [entry["message"] for entry in shown["logs"]] == ["hello ada"]
    dead = run_cli("dead-letters", "--storage", url, "--json").json()
    assert [job["id"] for job in dead] == [filled.failed]
    workers = run_cli("workers", "--storage", url, "--json").json()
    # Its heartbeat said 2 running jobs; the store counts its running jobs now: none.
    assert [(w["name"], w["is_leader"], w["running"]) for w in workers] == [
        (filled.worker, True, 0)
    ]
    metrics = run_cli("metrics", "--storage", url, "--json").json()
    assert (metrics["completed"], metrics["failed"], metrics["dead_letter"]) == (2, 1, 1)
    assert (metrics["pending"], metrics["canceled"], metrics["running"]) == (1, 1, 0)
    assert metrics["types"]["greet"]["completed"] == 2
    assert metrics["average_duration"] is not None

    schedules = run_cli("schedules", "list", "--storage", url, "--json").json()
    assert [(s["name"], s["enabled"]) for s in schedules] == [("every-5m", True), ("nightly", True)]
    preview = run_cli(
        "schedules", "preview", "every-5m", "--count", "3", "--storage", url, "--json"
    )
    times = preview.json()
    assert len(times) == 3
    assert _same_instant(times[0], schedules[0]["next_run_at"])

    assert run_cli("jobs", "retry", filled.failed, "--storage", url).code == 0
    assert run_cli("jobs", "cancel", filled.pending, "--storage", url).code == 0
    purged = run_cli(
        "jobs", "purge", "--status", "completed", "--older-than", "0", "--storage", url, "--json"
    )
    assert purged.json() == {"deleted": 2}
    assert run_cli("schedules", "disable", "nightly", "--storage", url).code == 0
    assert run_cli("schedules", "delete", "every-5m", "--storage", url).code == 0

    after = run_cli("jobs", "list", "--storage", url, "--json").json()
    assert {job["id"]: (job["status"], job["attempts"]) for job in after} == {
        filled.failed: ("pending", 0),
        filled.pending: ("canceled", 0),
        filled.canceled: ("canceled", 0),
    }
    remaining = run_cli("schedules", "list", "--storage", url, "--json").json()
    assert [(s["name"], s["enabled"]) for s in remaining] == [("nightly", False)]


def _same_instant(left: str, right: str) -> bool:
    return datetime.fromisoformat(left) == datetime.fromisoformat(right)


def test_jobs_list_filters_and_pages(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    failed = run_cli("jobs", "list", "--storage", url, "--status", "failed", "--json").json()
    assert [job["id"] for job in failed] == [sqlite_filled.failed]
    by_type = run_cli("jobs", "list", "--storage", url, "--type", "boom", "--json").json()
    assert [job["id"] for job in by_type] == [sqlite_filled.failed]
    by_entity = run_cli("jobs", "list", "--storage", url, "--entity", "customer-7", "--json")
    assert [job["id"] for job in by_entity.json()] == [sqlite_filled.completed[0]]

    first_page = run_cli("jobs", "list", "--storage", url, "--limit", "2")
    assert first_page.code == 0
    assert sqlite_filled.canceled in first_page.stdout
    assert sqlite_filled.pending in first_page.stdout
    assert sqlite_filled.failed not in first_page.stdout
    assert first_page.stderr.strip() == f"more may follow: add --cursor {sqlite_filled.pending}"
    next_page = run_cli(
        "jobs",
        "list",
        "--storage",
        url,
        "--limit",
        "2",
        "--cursor",
        sqlite_filled.pending,
        "--json",
    )
    assert [job["id"] for job in next_page.json()] == [
        sqlite_filled.failed,
        sqlite_filled.completed[1],
    ]


def test_tables_keep_ids_whole_and_fit_the_terminal(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    wide = run_cli("jobs", "list", "--storage", url, COLUMNS="160")
    assert wide.stdout.startswith("┏"), wide.stdout  # a table on a wide terminal
    for job_id in [*sqlite_filled.completed, sqlite_filled.failed, sqlite_filled.pending]:
        assert job_id in wide.stdout
    assert all(len(line) <= 160 for line in wide.stdout.splitlines())

    dead = run_cli("dead-letters", "--storage", url, COLUMNS="60")
    assert dead.code == 0
    assert f"id             {sqlite_filled.failed}" in dead.stdout  # records: ids whole
    assert "NonRetryableError: the upstream said no" in dead.stdout
    assert all(len(line) <= 60 for line in dead.stdout.splitlines())

    schedules = run_cli("schedules", "list", "--storage", url, COLUMNS="60")
    assert "nightly" in schedules.stdout and "every-5m" in schedules.stdout
    assert "Europe/Paris" in schedules.stdout
    workers = run_cli("workers", "--storage", url, COLUMNS="60")
    assert sqlite_filled.worker in workers.stdout
    metrics = run_cli("metrics", "--storage", url)
    assert "greet" in metrics.stdout and "all types" in metrics.stdout


def test_jobs_show_and_logs_on_a_terminal(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    job_id = sqlite_filled.completed[0]
    shown = run_cli("jobs", "show", job_id, "--storage", url)
    assert shown.code == 0, shown
    for expected in (
        f"id              {job_id}",
        "status          completed",
        "entity          customer-7",
        'result          {"greeted": "ada"}',
        "filler",  # the run's worker
        'INFO  #1 hello ada {"name": "ada"}',
    ):
        assert expected in shown.stdout, expected

    logs = run_cli("jobs", "logs", job_id, "--storage", url)
    assert logs.stdout.endswith('INFO  #1 hello ada {"name": "ada"}\n'), logs.stdout
    as_lines = run_cli("jobs", "logs", sqlite_filled.failed, "--storage", url, "--json")
    assert [line.startswith('{"job_id":') for line in as_lines.stdout.splitlines()] == [True]
    # --follow on a finished job prints what there is and returns
    followed = run_cli("jobs", "logs", sqlite_filled.failed, "--storage", url, "--follow")
    assert (followed.code, followed.stdout.count("about to fail")) == (0, 1)


def test_jobs_show_gives_each_runs_failure_kind_and_the_last_traceback(
    sqlite_filled: Filled,
) -> None:
    url, job_id = sqlite_filled.url, sqlite_filled.failed
    shown = run_cli("jobs", "show", job_id, "--storage", url)
    assert shown.code == 0, shown
    for expected in (
        "failure kind    non_retryable",
        "traceback of attempt 1",
        "Traceback (most recent call last):",
        'in boom\n    raise NonRetryableError("the upstream said no")',
        "timecrisis.errors.NonRetryableError: the upstream said no",
    ):
        assert expected in shown.stdout, (expected, shown.stdout)

    as_json = run_cli("jobs", "show", job_id, "--storage", url, "--json").json()
    assert as_json["job"]["failure_kind"] == "non_retryable"
    [run] = as_json["runs"]
    assert run["failure_kind"] == "non_retryable"
    assert "in boom" in run["traceback"]


def test_refusals_and_unknown_names_are_one_line_errors(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    assert_one_line_error(
        run_cli("jobs", "show", "no-such-id", "--storage", url), 1, "no job with id 'no-such-id'"
    )
    assert_one_line_error(
        run_cli("jobs", "retry", "no-such-id", "--storage", url), 1, "no job with id"
    )
    assert_one_line_error(
        run_cli("jobs", "retry", sqlite_filled.completed[0], "--storage", url),
        1,
        "is completed: only failed or canceled jobs can be retried",
    )
    assert_one_line_error(
        run_cli("jobs", "cancel", sqlite_filled.canceled, "--storage", url),
        1,
        "already canceled",
    )
    assert_one_line_error(
        run_cli("schedules", "delete", "no-such-schedule", "--storage", url),
        1,
        "no schedule named 'no-such-schedule'",
    )


def test_schedule_previews(sqlite_filled: Filled) -> None:
    paris = run_cli(
        "schedules", "preview", "nightly", "--count", "2", "--storage", sqlite_filled.url, "--json"
    ).json()
    assert len(paris) == 2
    assert all(t.endswith(("+01:00", "+02:00")) and "T02:30:00" in t for t in paris)

    # no store needed; the spring-forward night fires once, right after the gap (DESIGN §2)
    table = run_cli(
        "schedules", "preview", "--cron", "30 2 * * *", "--tz", "Europe/Paris", "--count", "40"
    )
    assert table.code == 0, table
    assert "Europe/Paris" in table.stdout
    # --cron and NAME together, and a cron that is not one
    assert_one_line_error(
        run_cli("schedules", "preview", "nightly", "--cron", "* * * * *"), 2, "exactly one of"
    )
    assert_one_line_error(
        run_cli("schedules", "preview", "--cron", "61 * * * *"), 1, "invalid cron expression"
    )


def test_metrics_watch_refreshes(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    watched = run_cli(
        "metrics", "--storage", url, "--watch", "--interval", "10ms", "--iterations", "3", "--json"
    )
    assert watched.code == 0, watched
    lines = watched.stdout.splitlines()
    assert len(lines) == 3
    assert all('"dead_letter":1' in line and line.startswith('{"time":') for line in lines)
    tables = run_cli(
        "metrics", "--storage", url, "--watch", "--interval", "10ms", "--iterations", "2"
    )
    assert tables.stdout.count("all types") == 2


def test_an_unknown_cursor_is_an_error_not_an_empty_list(sqlite_filled: Filled) -> None:
    url = sqlite_filled.url
    for command in (("jobs", "list"), ("dead-letters",)):
        assert_one_line_error(
            run_cli(*command, "--cursor", "bogus", "--storage", url), 1, "unknown cursor 'bogus'"
        )
        # The last job's id is a known cursor: the page after it is truly empty.
        oldest = run_cli(*command, "--storage", url, "--json").json()[-1]["id"]
        last = run_cli(*command, "--cursor", oldest, "--storage", url, "--json")
        assert last.code == 0 and last.json() == [], last
