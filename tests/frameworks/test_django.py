"""`timecrisis.contrib.django` with a real Django project on PostgreSQL (tests/django_project):
views enqueue inside the request's transaction (gone after a rollback, kept after a commit),
`manage.py timecrisis worker` runs the job with the project's scheduler and stops cleanly on
SIGTERM, and `manage.py timecrisis jobs list` finds the project's store by itself.

Each scenario runs Django in a subprocess: Django's settings are process-global, and the
pytest process must stay free of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import timecrisis
from tests.pg_support import drop_schema, fresh_schema, require_postgres

pytestmark = pytest.mark.postgres

PROJECT = Path(__file__).resolve().parents[1] / "django_project"
SOURCE = Path(timecrisis.__file__).resolve().parents[1]  # the tree under test, not an install
WAIT = 30.0


@dataclass(frozen=True)
class Project:
    url: str
    schema: str
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=PROJECT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args, **env)

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            return conn.execute(statement, params).fetchall()

    def job_status(self, job_id: str) -> str | None:
        rows = self.query("SELECT status FROM jobs WHERE id = %s", job_id)
        return str(rows[0][0]) if rows else None


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def project() -> Iterator[Project]:
    url = require_postgres()
    schema = fresh_schema()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {k: v for k, v in os.environ.items() if k not in ("TIMECRISIS_STORAGE", "PYTHONPATH")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "TC_DJANGO_SCHEMA": schema,
        "TIMECRISIS_TEST_POSTGRES_URL": url,
        "PYTHONPATH": os.pathsep.join([str(SOURCE), str(PROJECT)]),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    project = Project(url, schema, env)
    try:
        # The app has no migrations: --run-syncdb creates its table (in the schema, through
        # the connection's search_path).
        _ok(project.manage("migrate", "--run-syncdb", "--verbosity", "0"))
        yield project
    finally:
        drop_schema(url, schema)


def _drive(project: Project, **env: str) -> dict[str, Any]:
    done = _ok(project.run("drive.py", **env))
    answers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def test_a_view_enqueues_in_its_transaction(project: Project) -> None:
    answers = _drive(project)
    kept, lost = answers["kept"], answers["lost"]
    assert kept["committed"] and not lost["committed"]
    # Committed with the order; rolled back with the other, although its id was handed out.
    assert project.job_status(kept["job_id"]) == "pending"
    assert project.job_status(lost["job_id"]) is None
    assert project.query("SELECT id, item FROM shop_order") == [(kept["order"], "book")]


def test_atomic_requests(project: Project) -> None:
    answers = _drive(project, TC_DJANGO_ATOMIC_REQUESTS="1")
    assert answers["failed_status"] == 500
    assert project.job_status(answers["kept"]) == "pending"
    assert project.job_status(answers["lost"]) is None
    assert project.query("SELECT item FROM shop_order") == [("pen",)]


def test_manage_py_timecrisis_worker_runs_the_job(project: Project) -> None:
    kept = _drive(project)["kept"]
    # No TARGET: the worker runs settings.TIMECRISIS["SCHEDULER"], on its own store.
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "timecrisis", "worker", "--concurrency", "2"],
        cwd=PROJECT,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while project.job_status(kept["job_id"]) != "completed":
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker did not complete the job"
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=WAIT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, output
    assert "running proj.jobs:scheduler" in output
    # The handler used the ORM in the worker process.
    assert project.query("SELECT receipt_sent FROM shop_order") == [(True,)]

    listed = _ok(project.manage("timecrisis", "jobs", "list", "--json")).stdout
    jobs = {job["id"]: job for job in json.loads(listed)}
    assert set(jobs) == {kept["job_id"]}
    assert jobs[kept["job_id"]]["status"] == "completed"
    shown = _ok(project.manage("timecrisis", "jobs", "show", kept["job_id"], "--json")).stdout
    assert json.loads(shown)["job"]["result"] == f"receipt for order {kept['order']}"


def test_manage_py_timecrisis_forwards_the_command_line(project: Project) -> None:
    helped = _ok(project.manage("timecrisis", "--help")).stdout
    assert "manage.py timecrisis" in helped and "worker" in helped
    # A usage error is the CLI's own: one line, exit 2.
    bad = project.manage("timecrisis", "jobs", "list", "--status", "nonsense")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("error: ")
    # An explicit --storage wins over the project's store.
    missing = project.manage("timecrisis", "jobs", "list", "--storage", "sqlite:///nowhere.db")
    assert missing.returncode == 1 and "no SQLite database" in missing.stderr
    # Django's own --settings option is accepted and not passed on.
    kept = _drive(project)["kept"]
    listed = project.manage("timecrisis", "--settings", "proj.settings", "jobs", "list", "--json")
    assert [job["id"] for job in json.loads(_ok(listed).stdout)] == [kept["job_id"]]
