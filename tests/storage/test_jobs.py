"""Inserting jobs and reading them back: defaults, time resolution, uniqueness, atomic batches,
exact JSON round trips."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.storage.factories import (
    EMAIL,
    REPORT,
    START,
    claim_one,
    complete,
    fail,
    get,
    insert,
    insert_one,
    new_job,
)
from timecrisis.clock import ManualClock
from timecrisis.errors import StorageError
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobQuery, JobStorage

# ---- defaults and fields ----------------------------------------------------------------------


async def test_insert_creates_a_pending_job_with_the_defaults(storage: JobStorage) -> None:
    job_id = await insert_one(storage, data={"to": "a@b.co"})

    job = await get(storage, job_id)
    assert job.id == job_id
    assert job.type == EMAIL
    assert job.data == {"to": "a@b.co"}
    assert job.status is JobStatus.PENDING
    assert (job.priority, job.max_retries, job.attempts) == (1, 0, 0)
    assert job.backoff_strategy == "exponential"
    assert (job.retry_delay, job.max_retry_delay) == (10.0, 86400.0)
    assert job.run_at == START
    assert job.created_at == START
    assert job.expires_at is None
    assert job.progress == 0
    assert job.fail_reason is None
    assert job.result is None
    assert job.started_at is None
    assert job.finished_at is None
    assert job.worker is None
    assert job.dead_lettered is False
    assert (job.entity_id, job.unique_key, job.scheduled_job_id) == (None, None, None)


async def test_insert_keeps_every_option_the_caller_sets(storage: JobStorage) -> None:
    job_id = await insert_one(
        storage,
        REPORT,
        priority=-20,
        max_retries=7,
        backoff_strategy="linear",
        retry_delay=2.5,
        max_retry_delay=60.0,
        entity_id="customer-42",
        unique_key="monthly-2025-01",
    )

    job = await get(storage, job_id)
    assert job.type == REPORT
    assert (job.priority, job.max_retries) == (-20, 7)
    assert job.backoff_strategy == "linear"
    assert (job.retry_delay, job.max_retry_delay) == (2.5, 60.0)
    assert job.entity_id == "customer-42"
    assert job.unique_key == "monthly-2025-01"


async def test_insert_returns_one_result_per_job_in_order_with_the_callers_ids(
    storage: JobStorage,
) -> None:
    jobs = [new_job(data={"i": i}) for i in range(5)]

    results = await storage.insert_jobs(jobs)

    assert [r.id for r in results] == [j.id for j in jobs]
    assert all(r.created for r in results)
    assert [(await get(storage, j.id)).data for j in jobs] == [{"i": i} for i in range(5)]


async def test_an_empty_batch_inserts_nothing(storage: JobStorage) -> None:
    assert await storage.insert_jobs([]) == []
    assert await storage.list_jobs(JobQuery()) == []


async def test_get_job_returns_none_for_an_unknown_id(storage: JobStorage) -> None:
    assert await storage.get_job("00000000-0000-0000-0000-000000000000") is None


async def test_a_new_job_has_no_runs_and_no_logs(storage: JobStorage) -> None:
    job_id = await insert_one(storage)

    assert await storage.get_job_runs(job_id) == []
    assert await storage.get_job_logs(job_id) == []


# ---- times ------------------------------------------------------------------------------------


async def test_run_at_is_stored_as_the_same_instant_in_utc(storage: JobStorage) -> None:
    paris_summer = timezone(timedelta(hours=2))
    run_at = datetime(2025, 6, 1, 14, 30, tzinfo=paris_summer)

    job = await get(storage, await insert_one(storage, run_at=run_at))

    assert job.run_at == run_at
    assert job.run_at.utcoffset() == timedelta(0)
    assert job.run_at.replace(tzinfo=UTC) == datetime(2025, 6, 1, 12, 30, tzinfo=UTC)


async def test_delay_is_resolved_against_the_store_clock(
    storage: JobStorage, clock: ManualClock
) -> None:
    clock.advance(100)

    job = await get(storage, await insert_one(storage, delay=timedelta(minutes=5)))

    assert job.run_at == START + timedelta(seconds=100, minutes=5)
    assert job.created_at == START + timedelta(seconds=100)


async def test_expires_in_is_resolved_against_the_store_clock(
    storage: JobStorage, clock: ManualClock
) -> None:
    clock.advance(60)

    job = await get(storage, await insert_one(storage, expires_in=timedelta(hours=1)))

    assert job.expires_at == START + timedelta(seconds=60, hours=1)


async def test_expires_in_wins_over_expires_at(storage: JobStorage) -> None:
    job = await get(
        storage,
        await insert_one(
            storage, expires_at=START + timedelta(days=3), expires_in=timedelta(minutes=10)
        ),
    )

    assert job.expires_at == START + timedelta(minutes=10)


async def test_expires_at_is_stored_as_given(storage: JobStorage) -> None:
    expires_at = START + timedelta(days=2, seconds=1)

    job = await get(storage, await insert_one(storage, expires_at=expires_at))

    assert job.expires_at == expires_at


async def test_every_returned_time_is_aware_utc(storage: JobStorage) -> None:
    job_id = await insert_one(storage, expires_in=timedelta(hours=1))
    claimed = await claim_one(storage)
    await complete(storage, claimed)

    job = await get(storage, job_id)
    [run] = await storage.get_job_runs(job_id)
    times = [job.run_at, job.created_at, job.expires_at, job.started_at, job.finished_at]
    times += [run.started_at, run.finished_at, claimed.lease_expires_at, await storage.now()]
    for value in times:
        assert value is not None
        assert value.utcoffset() == timedelta(0), value


async def test_now_reports_the_store_clock(storage: JobStorage, clock: ManualClock) -> None:
    assert await storage.now() == START
    clock.advance(90)
    assert await storage.now() == START + timedelta(seconds=90)


# ---- JSON round trips -------------------------------------------------------------------------

PAYLOADS = {
    "a date-like string stays a string": {"s": "2025-01-01T00:00:00Z"},
    "nested containers": {"a": {"b": [1, {"c": [True, False, None]}]}, "empty": {}, "l": []},
    "unicode": {"name": "Zoë Ångström", "emoji": "🚀✨", "cjk": "時間の危機", "quote": 'a"b\\c'},
    "floats and big integers": {"f": 0.1, "tiny": 1e-7, "neg": -2.5, "big": 2**53 + 1},
    "null values": {"none": None, "list": [None]},
    "a top-level list": [1, "two", 3.0, None],
    "a top-level string": "just text",
    "null": None,
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
async def test_payload_round_trips_exactly(storage: JobStorage, payload: object) -> None:
    job = await get(storage, await insert_one(storage, data=payload))

    assert job.data == payload
    assert type(job.data) is type(payload)


@pytest.mark.parametrize("result", list(PAYLOADS.values()), ids=list(PAYLOADS))
async def test_result_round_trips_exactly(storage: JobStorage, result: object) -> None:
    job_id = await insert_one(storage)
    await complete(storage, await claim_one(storage), result)

    assert (await get(storage, job_id)).result == result


async def test_float_types_survive_the_round_trip(storage: JobStorage) -> None:
    job = await get(storage, await insert_one(storage, data={"whole": 3.0, "int": 3}))

    assert isinstance(job.data["whole"], float)
    assert isinstance(job.data["int"], int)


async def test_a_returned_payload_can_be_mutated_without_changing_the_store(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage, data={"items": [1, 2]})

    (await get(storage, job_id)).data["items"].append(3)

    assert (await get(storage, job_id)).data == {"items": [1, 2]}


# ---- unique keys ------------------------------------------------------------------------------


async def test_unique_key_returns_the_pending_holders_id(storage: JobStorage) -> None:
    holder = await insert_one(storage, unique_key="k")

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert (result.id, result.created) == (holder, False)
    assert len(await storage.list_jobs(JobQuery())) == 1


async def test_unique_key_returns_the_running_holders_id(storage: JobStorage) -> None:
    holder = await insert_one(storage, unique_key="k")
    await claim_one(storage)

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert (result.id, result.created) == (holder, False)


@pytest.mark.parametrize("ending", ["completed", "failed", "canceled"])
async def test_unique_key_allows_a_new_job_once_the_holder_finished(
    storage: JobStorage, ending: str
) -> None:
    holder = await insert_one(storage, unique_key="k")
    if ending == "canceled":
        assert await storage.cancel_job(holder) == "canceled"
    else:
        claimed = await claim_one(storage)
        if ending == "completed":
            await complete(storage, claimed)
        else:
            await fail(storage, claimed, retryable=False)

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert result.created
    assert result.id != holder


async def test_a_failed_attempt_that_will_retry_keeps_holding_the_unique_key(
    storage: JobStorage,
) -> None:
    holder = await insert_one(storage, unique_key="k", max_retries=1)
    await fail(storage, await claim_one(storage))

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert (result.id, result.created) == (holder, False)


async def test_unique_key_is_scoped_per_type(storage: JobStorage) -> None:
    email = await insert_one(storage, EMAIL, unique_key="k")

    [result] = await storage.insert_jobs([new_job(REPORT, unique_key="k")])

    assert result.created
    assert result.id != email


async def test_unique_key_repeated_in_one_batch_creates_one_job(storage: JobStorage) -> None:
    first, second, other = new_job(unique_key="k"), new_job(unique_key="k"), new_job()

    results = await storage.insert_jobs([first, second, other])

    assert [(r.id, r.created) for r in results] == [
        (first.id, True),
        (first.id, False),
        (other.id, True),
    ]
    assert await storage.get_job(second.id) is None


# ---- atomic batches ---------------------------------------------------------------------------


async def test_a_batch_repeating_an_id_fails_and_inserts_nothing(storage: JobStorage) -> None:
    first = new_job()
    twin = dataclasses.replace(new_job(data={"other": True}), id=first.id)

    with pytest.raises(StorageError):
        await storage.insert_jobs([new_job(), first, twin])

    assert await storage.list_jobs(JobQuery()) == []


async def test_a_batch_reusing_a_stored_id_fails_and_inserts_nothing(storage: JobStorage) -> None:
    existing = await insert_one(storage, data={"original": True})
    fresh = new_job()
    clash = dataclasses.replace(new_job(data={"replacement": True}), id=existing)

    with pytest.raises(StorageError):
        await storage.insert_jobs([fresh, clash])

    assert await storage.get_job(fresh.id) is None
    assert (await get(storage, existing)).data == {"original": True}
    assert len(await storage.list_jobs(JobQuery())) == 1


async def test_a_batch_with_a_payload_that_is_not_json_inserts_nothing(
    storage: JobStorage,
) -> None:
    fresh = new_job()

    with pytest.raises((TypeError, StorageError)):
        await storage.insert_jobs([fresh, new_job(data={"when": object()})])

    assert await storage.get_job(fresh.id) is None


async def test_a_failed_batch_leaves_unique_keys_free(storage: JobStorage) -> None:
    keyed = new_job(unique_key="k")
    clash = dataclasses.replace(new_job(), id=keyed.id)
    with pytest.raises(StorageError):
        await storage.insert_jobs([keyed, clash])

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert result.created


# ---- large batches ----------------------------------------------------------------------------

# Large enough for every store's bulk path (PostgreSQL copies a batch of 150 jobs or more).
LARGE = 250


async def test_a_large_batch_reads_back_as_the_same_jobs_inserted_one_by_one(
    storage: JobStorage, clock: ManualClock
) -> None:
    clock.advance(30)
    options = {
        "priority": 7,
        "max_retries": 3,
        "backoff_strategy": "linear",
        "retry_delay": 1.5,
        "max_retry_delay": 90.0,
        "entity_id": "customer-7",
        "delay": timedelta(days=1, seconds=5),
        "expires_in": timedelta(hours=2),
        "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "concurrency_key": "tenant-1",
        "queue": "bulk",
    }
    [single] = await insert(storage, new_job(REPORT, **options))
    batch = [new_job(REPORT, data={"i": i, "s": 'é\n"x"'}, **options) for i in range(LARGE)]

    ids = await insert(storage, *batch)

    reference = (await get(storage, single)).model_dump(exclude={"id", "data"})
    assert ids == [job.id for job in batch]
    for i, job_id in enumerate(ids):
        job = await get(storage, job_id)
        assert job.data == {"i": i, "s": 'é\n"x"'}
        assert job.model_dump(exclude={"id", "data"}) == reference
    listed = await storage.list_jobs(JobQuery(limit=LARGE + 1))
    assert [job.id for job in listed] == [*reversed(ids), single]  # newest first: input order


async def test_a_large_batch_with_absolute_times_stores_them_as_given(storage: JobStorage) -> None:
    run_at = START + timedelta(days=3)
    expires_at = START + timedelta(days=4)

    ids = await insert(
        storage, *(new_job(run_at=run_at, expires_at=expires_at) for _ in range(LARGE))
    )

    for job_id in (ids[0], ids[-1]):
        job = await get(storage, job_id)
        assert (job.run_at, job.expires_at, job.created_at) == (run_at, expires_at, START)


async def test_a_large_batch_repeating_an_id_fails_and_inserts_nothing(
    storage: JobStorage,
) -> None:
    batch = [new_job() for _ in range(LARGE)]
    twin = dataclasses.replace(new_job(data={"other": True}), id=batch[10].id)

    with pytest.raises(StorageError):
        await storage.insert_jobs([*batch, twin])

    assert await storage.list_jobs(JobQuery()) == []


async def test_a_large_batch_reusing_a_stored_id_fails_and_inserts_nothing(
    storage: JobStorage,
) -> None:
    existing = await insert_one(storage, data={"original": True})
    batch = [new_job() for _ in range(LARGE)]
    clash = dataclasses.replace(new_job(data={"replacement": True}), id=existing)

    with pytest.raises(StorageError):
        await storage.insert_jobs([*batch, clash])

    assert (await get(storage, existing)).data == {"original": True}
    assert [job.id for job in await storage.list_jobs(JobQuery())] == [existing]


async def test_a_large_batch_with_a_payload_that_is_not_json_inserts_nothing(
    storage: JobStorage,
) -> None:
    batch = [new_job() for _ in range(LARGE)]

    with pytest.raises((TypeError, StorageError)):
        await storage.insert_jobs([*batch, new_job(data={"when": object()})])

    assert await storage.list_jobs(JobQuery()) == []


# ---- connection= ------------------------------------------------------------------------------


async def test_insert_accepts_an_explicit_connection_none(storage: JobStorage) -> None:
    [result] = await storage.insert_jobs([new_job()], connection=None)

    assert result.created


async def test_insert_refuses_a_connection_object_it_cannot_use(storage: JobStorage) -> None:
    job = new_job()

    with pytest.raises(TypeError):
        await storage.insert_jobs([job], connection=object())

    assert await storage.get_job(job.id) is None


# ---- lifecycle --------------------------------------------------------------------------------


async def test_init_is_idempotent(storage: JobStorage) -> None:
    await storage.init()
    await storage.init()

    assert await storage.get_job(await insert_one(storage)) is not None


async def test_close_is_idempotent(storage: JobStorage) -> None:
    await storage.close()
    await storage.close()


async def test_jobs_inserted_through_one_handle_are_read_through_another(
    harness_handles: tuple[JobStorage, JobStorage],
) -> None:
    writer, reader = harness_handles
    ids = await insert(writer, new_job(), new_job(REPORT))

    assert [(await get(reader, job_id)).id for job_id in ids] == ids
