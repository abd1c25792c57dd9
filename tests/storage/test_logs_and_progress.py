"""What a running job reports: progress on the job and its run, and log lines."""

from __future__ import annotations

import pytest

from tests.storage.factories import START, claim_one, fail, get, insert_one, seconds
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage, NewLogEntry

# ---- progress ---------------------------------------------------------------------------------


async def test_progress_is_set_on_the_job_and_its_run(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)

    assert await storage.update_progress(claimed.ref, 37.5) is True

    assert (await get(storage, job_id)).progress == 37.5
    [run] = await storage.get_job_runs(job_id)
    assert run.progress == 37.5


async def test_progress_can_go_to_either_end_of_the_range(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)

    assert await storage.update_progress(claimed.ref, 100)
    assert (await get(storage, job_id)).progress == 100
    assert await storage.update_progress(claimed.ref, 0)
    assert (await get(storage, job_id)).progress == 0


async def test_progress_does_not_extend_the_lease(storage: JobStorage, clock: ManualClock) -> None:
    job_id = await insert_one(storage, max_retries=1)
    claimed = await claim_one(storage, lease_ttl=seconds(30))
    clock.advance(29)
    await storage.update_progress(claimed.ref, 50)
    clock.advance(1)

    [recovered] = await storage.recover_expired_leases()

    assert recovered.job.id == job_id


async def test_progress_of_a_second_attempt_goes_to_the_second_run(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=1)
    first = await claim_one(storage)
    await storage.update_progress(first.ref, 10)
    await fail(storage, first)
    clock.advance(1)
    second = await claim_one(storage)

    await storage.update_progress(second.ref, 80)

    assert [run.progress for run in await storage.get_job_runs(job_id)] == [10, 80]


# ---- logs -------------------------------------------------------------------------------------


async def test_logs_are_returned_in_order_with_their_run(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    clock.advance(1)

    await storage.append_logs(
        [
            NewLogEntry(job_id, claimed.run_id, "info", "starting"),
            NewLogEntry(job_id, claimed.run_id, "debug", "step 1"),
            NewLogEntry(job_id, claimed.run_id, "warn", "slow"),
            NewLogEntry(job_id, claimed.run_id, "error", "oops"),
        ]
    )

    logs = await storage.get_job_logs(job_id)
    assert [(log.level, log.message) for log in logs] == [
        ("info", "starting"),
        ("debug", "step 1"),
        ("warn", "slow"),
        ("error", "oops"),
    ]
    assert {log.run_id for log in logs} == {claimed.run_id}
    assert {log.job_id for log in logs} == {job_id}
    assert {log.timestamp for log in logs} == {START + seconds(1)}


async def test_logs_appended_later_come_later(storage: JobStorage, clock: ManualClock) -> None:
    job_id = await insert_one(storage)
    for i in range(5):
        await storage.append_logs([NewLogEntry(job_id, None, "info", f"line {i}")])
        clock.advance(0.25)

    logs = await storage.get_job_logs(job_id)

    assert [log.message for log in logs] == [f"line {i}" for i in range(5)]
    assert [log.timestamp for log in logs] == [START + seconds(0.25 * i) for i in range(5)]


async def test_a_log_without_a_run_keeps_run_id_none(storage: JobStorage) -> None:
    job_id = await insert_one(storage)

    await storage.append_logs([NewLogEntry(job_id, None, "info", "queued by the API")])

    [log] = await storage.get_job_logs(job_id)
    assert log.run_id is None
    assert log.metadata is None


@pytest.mark.parametrize(
    "metadata",
    [
        {"user": "zoë", "ids": [1, 2, 3], "nested": {"ok": True, "none": None}},
        {"ratio": 0.1, "when": "2025-01-01T00:00:00Z"},
        {},
    ],
    ids=["nested-unicode", "float-and-date-string", "empty"],
)
async def test_log_metadata_round_trips_exactly(
    storage: JobStorage, metadata: dict[str, object]
) -> None:
    job_id = await insert_one(storage)

    await storage.append_logs([NewLogEntry(job_id, None, "info", "m", metadata)])

    [log] = await storage.get_job_logs(job_id)
    assert log.metadata == metadata


async def test_logs_of_one_job_are_not_returned_for_another(storage: JobStorage) -> None:
    first = await insert_one(storage)
    second = await insert_one(storage)

    await storage.append_logs(
        [NewLogEntry(first, None, "info", "mine"), NewLogEntry(second, None, "info", "theirs")]
    )

    assert [log.message for log in await storage.get_job_logs(first)] == ["mine"]
    assert [log.message for log in await storage.get_job_logs(second)] == ["theirs"]


async def test_logs_of_several_runs_stay_with_their_runs(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=1)
    first = await claim_one(storage)
    await storage.append_logs([NewLogEntry(job_id, first.run_id, "error", "attempt 1 failed")])
    await fail(storage, first)
    clock.advance(1)
    second = await claim_one(storage)
    await storage.append_logs([NewLogEntry(job_id, second.run_id, "info", "attempt 2 ok")])

    logs = await storage.get_job_logs(job_id)

    assert [(log.run_id, log.message) for log in logs] == [
        (first.run_id, "attempt 1 failed"),
        (second.run_id, "attempt 2 ok"),
    ]


async def test_appending_no_logs_does_nothing(storage: JobStorage) -> None:
    job_id = await insert_one(storage)

    await storage.append_logs([])

    assert await storage.get_job_logs(job_id) == []
