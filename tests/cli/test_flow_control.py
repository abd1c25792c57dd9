"""`timecrisis pause|resume|paused` and `timecrisis worker --queues` (docs/flow-control.md), as
real subprocesses against stores filled through the public API."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

from tests.cli.support import Filled, assert_one_line_error, run_cli, scheduler_on
from tests.cli.test_worker import WAIT, WorkerProcess
from tests.cli.test_worker import start_worker as start_worker
from timecrisis import JobStatus, storage_from_url


def test_pause_resume_and_paused_on_each_backend(filled: Filled) -> None:
    url = filled.url

    assert run_cli("pause", "greet", "--storage", url).stdout == "paused 'greet'\n"
    assert run_cli("pause", "greet", "--storage", url).stdout == "'greet' was already paused\n"
    assert run_cli("pause", "bulk", "--storage", url).code == 0
    assert run_cli("paused", "--storage", url, "--json").json() == ["bulk", "greet"]
    resumed = run_cli("resume", "greet", "--storage", url)
    assert (resumed.code, resumed.stdout) == (0, "resumed 'greet'\n")
    assert run_cli("resume", "greet", "--storage", url).stdout == "'greet' was not paused\n"
    assert run_cli("paused", "--storage", url).stdout == "bulk\n"

    assert_one_line_error(run_cli("pause", "", "--storage", url), 1, "pause name")
    assert run_cli("paused", "--storage", url, "--json").json() == ["bulk"]  # nothing written


async def test_a_worker_with_queues_claims_only_those(
    store_url: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    producer = scheduler_on(storage_from_url(store_url))
    try:
        await producer.storage.init()
        mail = await producer.enqueue("greet", {"name": "mail"}, queue="mail")
        other = await producer.enqueue("greet", {"name": "other"})  # the default queue
        worker = await start_worker(
            "tests.cli.app:scheduler", "--storage", store_url, "--queues", "mail,bulk"
        )
        await worker.wait_for_log("queues: bulk, mail")

        done = await producer.wait_for_job(mail, timeout=WAIT)
        assert done.status == JobStatus.COMPLETED
        # Paused while the worker runs: a later job of the queue waits for the resume.
        assert run_cli("pause", "mail", "--storage", store_url).code == 0
        held = await producer.enqueue("greet", {"name": "held"}, queue="mail")
        bulk = await producer.enqueue("greet", {"name": "bulk"}, queue="bulk")
        assert (await producer.wait_for_job(bulk, timeout=WAIT)).status == JobStatus.COMPLETED
        for job_id in (held, other):
            job = await producer.get_job(job_id)
            assert job is not None and job.status == JobStatus.PENDING
        assert run_cli("resume", "mail", "--storage", store_url).code == 0
        assert (await producer.wait_for_job(held, timeout=WAIT)).status == JobStatus.COMPLETED

        worker.process.send_signal(signal.SIGTERM)
        assert await worker.finish() == 0
        job = await producer.get_job(other)
        assert job is not None and job.status == JobStatus.PENDING  # no worker serves default
    finally:
        await producer.close()


def test_an_empty_queue_name_is_a_usage_error() -> None:
    for value in ("", "mail,,bulk", " , "):
        result = run_cli("worker", "tests.cli.app:scheduler", "--queues", value)
        assert_one_line_error(result, 2, "--queues")
