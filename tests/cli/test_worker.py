"""`timecrisis worker`: a real worker process over a store the test fills and watches through
the public API; signals stop it gracefully, a second one at once."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.cli.support import REPO, assert_one_line_error, cli_env, command, run_cli, scheduler_on
from tests.waiting import eventually as wait_until
from timecrisis import JobScheduler, JobStatus, storage_from_url

WAIT = 30.0  # a safety net for waits on outcomes, never a timing assertion


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    await wait_until(condition, timeout=WAIT, every=0.05)


class WorkerProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log_lines: list[str] = []

    async def wait_for_log(self, fragment: str) -> None:
        """Read stderr until a line contains `fragment`."""
        assert self.process.stderr is not None
        async with asyncio.timeout(WAIT):
            while not any(fragment in line for line in self.log_lines):
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"worker exited before logging {fragment!r}")
                self.log_lines.append(raw.decode())

    async def finish(self) -> int:
        assert self.process.stderr is not None
        async with asyncio.timeout(WAIT):
            rest = await self.process.stderr.read()
            self.log_lines += rest.decode().splitlines(keepends=True)
            return await self.process.wait()


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    async def start(*args: str) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            *command("worker", *args),
            cwd=REPO,
            env=cli_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = WorkerProcess(process)
        started.append(worker)
        return worker

    yield start
    for worker in started:  # a failed test must not leave a worker behind
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.finish()


async def _job_status(scheduler: JobScheduler, job_id: str) -> JobStatus | None:
    job = await scheduler.get_job(job_id)
    return None if job is None else job.status


async def test_worker_runs_jobs_and_stops_on_sigterm(
    store_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    producer = scheduler_on(storage_from_url(store_url))
    try:
        await producer.storage.init()  # the schema exists before the worker's first poll
        worker = await start_worker(
            "tests.cli.app:scheduler",
            "--storage",
            store_url,
            "--worker",
            "cli-w1",
            "--concurrency",
            "2",
            "--log-format",
            "json",
        )
        greeted = await producer.enqueue("greet", {"name": "ada"})
        done = await producer.wait_for_job(greeted, timeout=WAIT)
        assert (done.status, done.result) == (JobStatus.COMPLETED, {"greeted": "ada"})
        assert [run.worker for run in await producer.get_job_runs(greeted)] == ["cli-w1"]
        assert [w.name for w in await producer.list_workers()] == ["cli-w1"]

        polite = await producer.enqueue("polite", {})

        async def running() -> bool:
            return await _job_status(producer, polite) == JobStatus.RUNNING

        await eventually(running)
        # `jobs logs --follow` prints the handler's lines and returns once the job finishes
        follow = await asyncio.create_subprocess_exec(
            *command("jobs", "logs", polite, "--follow", "--interval", "50ms"),
            cwd=REPO,
            env=cli_env(TIMECRISIS_STORAGE=store_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert follow.stdout is not None
        async with asyncio.timeout(WAIT):
            first_line = await follow.stdout.readline()
        assert b"INFO  #1 started" in first_line
        worker.process.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
        async with asyncio.timeout(WAIT):
            rest, follow_errors = await follow.communicate()
        assert (follow.returncode, rest, follow_errors) == (0, b"", b"")
        # the graceful stop let the handler finish, and the worker unregistered
        finished = await producer.wait_for_job(polite, timeout=WAIT)
        assert (finished.status, finished.result) == (JobStatus.COMPLETED, "stopped politely")
        assert await producer.list_workers() == []
        records = [json.loads(line) for line in worker.log_lines]
        messages = [record["message"] for record in records]
        assert "worker cli-w1 started (4 job types, up to 2 concurrent jobs)" in messages
        assert "worker cli-w1 stopped" in messages
        assert {record["level"] for record in records} <= {"debug", "info", "warning", "error"}
    finally:
        await producer.close()


async def test_second_signal_stops_at_once_and_releases_the_job(
    tmp_path: pathlib.Path, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    producer = scheduler_on(storage_from_url(url))
    try:
        await producer.storage.init()
        # a file path TARGET this time
        worker = await start_worker("tests/cli/app.py:scheduler", "--storage", url)
        job_id = await producer.enqueue("stubborn", {})

        async def running() -> bool:
            return await _job_status(producer, job_id) == JobStatus.RUNNING

        await eventually(running)
        worker.process.send_signal(signal.SIGTERM)
        # The stubborn handler ignores the graceful stop (shutdown_timeout is 30 s)...
        await worker.wait_for_log("stepped down as leader")
        # Resigning at stop is routine (INFO); a lost lease would be a WARNING.
        [resigned] = [line for line in worker.log_lines if "stepped down as leader" in line]
        assert " INFO " in resigned and "the scheduler is stopping" in resigned, resigned
        worker.process.send_signal(signal.SIGINT)  # ...the second signal does not wait
        assert await worker.finish() == 0
        job = await producer.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts) == (JobStatus.PENDING, 0)  # released, not charged
        assert [run.status for run in await producer.get_job_runs(job_id)] == ["released"]
        assert any("second signal" in line for line in worker.log_lines)
    finally:
        await producer.close()


def test_bad_targets_are_usage_errors(tmp_path: pathlib.Path) -> None:
    assert_one_line_error(
        run_cli("worker", "tests.cli.app"), 2, "expected MODULE:ATTRIBUTE or path/to/file.py"
    )
    assert_one_line_error(
        run_cli("worker", "tests.cli.nope:scheduler"),
        2,
        "cannot import 'tests.cli.nope': no module named 'tests.cli.nope'",
    )
    assert_one_line_error(
        run_cli("worker", "tests/cli/app.py:Greeting"),
        2,
        "tests.cli.app:Greeting is a ModelMetaclass, not a JobScheduler",
    )
    broken = tmp_path / "broken_app.py"
    broken.write_text("import os\n\nraise RuntimeError('no config')\n")
    assert_one_line_error(
        run_cli("worker", f"{broken}:scheduler"),
        1,
        f"importing 'broken_app' failed: RuntimeError: no config at {broken}:3",
    )


async def test_ctrl_c_ends_metrics_watch_cleanly(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    producer = scheduler_on(storage_from_url(url))
    await producer.enqueue("greet", {"name": "ada"})
    await producer.close()
    watch = await asyncio.create_subprocess_exec(
        *command("metrics", "--storage", url, "--watch", "--json", "--interval", "50ms"),
        cwd=REPO,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert watch.stdout is not None
    async with asyncio.timeout(WAIT):
        first = json.loads(await watch.stdout.readline())
    assert first["pending"] == 1
    watch.send_signal(signal.SIGINT)
    async with asyncio.timeout(WAIT):
        _, errors = await watch.communicate()
    assert (watch.returncode, errors) == (0, b"")


async def test_the_worker_brings_the_schedules_its_app_declares(
    store_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    """`scheduler.periodic(...)` in the app module: `timecrisis worker` upserts the schedules at
    start, with no separate script, and fires them."""
    reader = JobScheduler(storage_from_url(store_url))
    try:
        await reader.storage.init()
        worker = await start_worker("tests.cli.periodic_app:scheduler", "--storage", store_url)

        async def declared() -> bool:
            names = {s.name for s in await reader.list_scheduled_jobs()}
            return names == {"nightly-report", "often"}

        await eventually(declared)
        nightly = await reader.get_scheduled_job("nightly-report")
        assert nightly is not None
        assert (nightly.schedule_value, nightly.time_zone) == ("0 3 * * *", "Europe/Paris")

        async def fired() -> bool:
            jobs = await reader.list_jobs(status=JobStatus.COMPLETED)
            return any(job.result == "often" for job in jobs)

        await eventually(fired)
        worker.process.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
    finally:
        await reader.close()
