"""A child that crashes fails its attempt with a reason naming how; the worker carries on."""

from __future__ import annotations

import asyncio
import os
import signal

from tests.fork import handlers
from tests.fork.conftest import SchedulerFactory, logged_pid, process_exists
from timecrisis import Job, JobDefinition, JobStatus, JobStorage, NonRetryableError, RunStatus
from timecrisis.execution.fork_server import default_fork_server
from timecrisis.execution.forked import ForkedHandlerError, ForkedProcessError

EXPECTED_REASONS = {
    "exit": "ForkedProcessError: the child process exited with status 3",
    "segv": "ForkedProcessError: the child process was killed by signal SIGSEGV (11)",
    "kill": "ForkedProcessError: the child process was killed by signal SIGKILL (9); the "
    "kernel's out-of-memory killer sends SIGKILL",
    "raise": "ValueError: bad row 7",
    "nonretryable": "NonRetryableError: give up",
}


def _crash_type(**fields: object) -> JobDefinition[handlers.Work]:
    return JobDefinition(
        type="crash",
        schema=handlers.Work,
        handle=handlers.crash,
        concurrency=None,
        fork_mode=True,
        **fields,  # type: ignore[arg-type]
    )


async def test_each_kind_of_crash_fails_the_attempt_with_its_reason_and_retries_apply(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    failures: list[tuple[str, BaseException]] = []

    def on_failed(job: Job, error: BaseException) -> None:
        failures.append((job.id, error))

    scheduler = make_scheduler(memory, on_job_failed=on_failed)
    scheduler.register_job(_crash_type(max_retries=1, retry_delay=0))
    async with scheduler:
        ids = {
            kind: await scheduler.enqueue("crash", {"kind": kind, "n": 7})
            for kind in EXPECTED_REASONS
        }
        jobs = {kind: await scheduler.wait_for_job(i, timeout=30) for kind, i in ids.items()}
        # The worker is unharmed: the next job runs as usual.
        after = await scheduler.wait_for_job(
            await scheduler.enqueue("crash", {"kind": "ok", "n": 5}), timeout=30
        )

    assert after.status == JobStatus.COMPLETED and after.result == 5
    for kind, job in jobs.items():
        expected_runs = 1 if kind == "nonretryable" else 2  # max_retries=1: two attempts
        assert (job.status, job.fail_reason, job.attempts) == (
            JobStatus.FAILED,
            EXPECTED_REASONS[kind],
            expected_runs,
        ), kind
        runs = await scheduler.get_job_runs(job.id)
        assert [(r.status, r.error) for r in runs] == [
            (RunStatus.FAILED, EXPECTED_REASONS[kind])
        ] * expected_runs, kind

    errors = dict(failures)
    assert isinstance(errors[ids["segv"]], ForkedProcessError)
    raised = errors[ids["raise"]]
    assert isinstance(raised, ForkedHandlerError)
    assert raised.remote_type == "ValueError"
    assert 'in crash\n    raise ValueError(f"bad row {data.n}")' in raised.remote_traceback
    assert isinstance(errors[ids["nonretryable"]], NonRetryableError)
    # The traceback printed in the child is kept with the job, once per failed attempt.
    tracebacks = [
        log
        for log in await scheduler.get_job_logs(ids["raise"])
        if log.level == "error" and "Traceback" in log.message
    ]
    assert len(tracebacks) == 2
    assert "ValueError: bad row 7" in tracebacks[0].message


async def test_fifty_jobs_with_a_fifth_of_children_crashing_leave_the_worker_healthy(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    crash_kinds = ["exit", "segv", "kill", "raise", "nonretryable"]
    payloads = [
        {"kind": crash_kinds[(i // 5) % len(crash_kinds)] if i % 5 == 0 else "ok", "n": i}
        for i in range(50)
    ]
    scheduler = make_scheduler(memory, max_concurrent_jobs=8)
    scheduler.register_job(_crash_type())

    @scheduler.job("in-process", concurrency=None)
    async def in_process(data: handlers.Work, ctx: object) -> int:
        return data.n

    async with scheduler:
        ids = await scheduler.enqueue_many("crash", payloads)
        jobs = await asyncio.gather(*(scheduler.wait_for_job(i, timeout=60) for i in ids))
        check = await scheduler.wait_for_job(
            await scheduler.enqueue("in-process", {"n": 1}), timeout=30
        )
        workers = await scheduler.list_workers()

    crashed = [p for p in payloads if p["kind"] != "ok"]
    assert len(crashed) == 10
    for payload, job in zip(payloads, jobs, strict=True):
        if payload["kind"] == "ok":
            assert (job.status, job.result) == (JobStatus.COMPLETED, payload["n"])
        else:
            reason = EXPECTED_REASONS[str(payload["kind"])]
            reason = reason.replace("bad row 7", f"bad row {payload['n']}")
            assert (job.status, job.fail_reason) == (JobStatus.FAILED, reason)
    assert check.status == JobStatus.COMPLETED
    assert [w.name for w in workers] == [scheduler.worker]
    metrics = await scheduler.get_metrics()
    assert (metrics.completed, metrics.failed, metrics.running) == (41, 10, 0)


async def test_a_dead_fork_server_fails_the_running_attempt_and_is_replaced(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(memory)
    scheduler.register_job(
        JobDefinition(
            type="block",
            schema=handlers.Blocker,
            handle=handlers.block,
            concurrency=None,
            fork_mode=True,
        )
    )
    scheduler.register_job(_crash_type())
    async with scheduler:
        job_id = await scheduler.enqueue("block", {})
        pid = await logged_pid(scheduler, job_id)
        server = default_fork_server()._connection
        assert server is not None
        os.kill(server.process.pid, signal.SIGKILL)  # e.g. picked by the OOM killer
        job = await scheduler.wait_for_job(job_id, timeout=30)
        after = await scheduler.wait_for_job(await scheduler.enqueue("crash", {"n": 4}), timeout=30)

    assert (job.status, job.fail_reason) == (
        JobStatus.FAILED,
        "ForkedProcessError: the child process's exit status is unknown (its fork server died)",
    )
    assert not process_exists(pid, zombies_count=False)  # the worker killed the orphan
    assert (after.status, after.result) == (JobStatus.COMPLETED, 4)  # a new server forked it
