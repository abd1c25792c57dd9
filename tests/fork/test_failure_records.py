"""Fork mode records failures like in-process runs do (DESIGN §4): the run keeps the traceback
printed in the child, and a crash, a timeout or a handler's error each get their own kind."""

from __future__ import annotations

from tests.fork import handlers
from tests.fork.conftest import SchedulerFactory
from timecrisis import FailureKind, JobDefinition, JobStatus, JobStorage

EXPECTED_KINDS = {
    "raise": FailureKind.ERROR,
    "nonretryable": FailureKind.NON_RETRYABLE,
    "exit": FailureKind.CRASHED,
    "kill": FailureKind.CRASHED,
}


async def test_each_fork_mode_failure_records_its_kind_and_the_childs_traceback(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    scheduler.register_job(
        JobDefinition(
            type="crash", schema=handlers.Work, handle=handlers.crash, concurrency=None,
            fork_mode=True,
        )
    )  # fmt: skip
    scheduler.register_job(
        JobDefinition(
            type="block", schema=handlers.Blocker, handle=handlers.block, concurrency=None,
            fork_mode=True, timeout="300ms",
        )
    )  # fmt: skip
    async with scheduler:
        ids = {
            kind: await scheduler.enqueue("crash", {"kind": kind, "n": 7})
            for kind in EXPECTED_KINDS
        }
        blocked = await scheduler.enqueue("block", {})
        jobs = {kind: await scheduler.wait_for_job(i, timeout=30) for kind, i in ids.items()}
        timed_out = await scheduler.wait_for_job(blocked, timeout=30)

    for kind, job in jobs.items():
        [run] = await scheduler.get_job_runs(job.id)
        assert (job.status, job.failure_kind, run.failure_kind) == (
            JobStatus.FAILED,
            EXPECTED_KINDS[kind],
            EXPECTED_KINDS[kind],
        ), kind
    [raised] = await scheduler.get_job_runs(ids["raise"])
    assert raised.traceback is not None
    assert raised.traceback.startswith("Traceback (most recent call last):")
    assert 'in crash\n    raise ValueError(f"bad row {data.n}")' in raised.traceback
    assert raised.traceback.rstrip().endswith("ValueError: bad row 7")
    [refused] = await scheduler.get_job_runs(ids["nonretryable"])
    assert refused.traceback is not None and "NonRetryableError: give up" in refused.traceback
    for kind in ("exit", "kill"):  # a dead child raised nothing: no traceback to show
        [run] = await scheduler.get_job_runs(ids[kind])
        assert run.traceback is None, kind
    [slow] = await scheduler.get_job_runs(blocked)
    assert (timed_out.failure_kind, slow.failure_kind, slow.traceback) == (
        FailureKind.TIMEOUT,
        FailureKind.TIMEOUT,
        None,
    )
