"""Bad input at the boundary: a typed error, and nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import (
    InMemoryJobStorage,
    InvalidDurationError,
    InvalidStorageUrlError,
    JobAlreadyRegisteredError,
    JobContext,
    JobDefinition,
    JobDefinitionNotFoundError,
    JobNotFoundError,
    JobScheduler,
    JobValidationError,
    StorageError,
    TimeCrisisError,
    storage_from_url,
)
from timecrisis.storage.base import JobStorage


@pytest.fixture
def scheduler(store: JobStorage, make_scheduler: SchedulerFactory) -> JobScheduler:
    scheduler = make_scheduler(store)

    @scheduler.job("typed", concurrency=None)
    async def typed(data: Payload, ctx: JobContext) -> None:
        return None

    return scheduler


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"priority": 21}, JobValidationError),
        ({"priority": -21}, JobValidationError),
        ({"priority": 1.5}, JobValidationError),
        ({"max_retries": -1}, JobValidationError),
        ({"backoff_strategy": "fibonacci"}, JobValidationError),
        ({"delay": "soon"}, InvalidDurationError),
        ({"delay": -1}, InvalidDurationError),
        ({"expires_in": "1x"}, InvalidDurationError),
        ({"run_at": datetime(2030, 1, 1)}, JobValidationError),
        ({"expires_at": datetime(2030, 1, 1)}, JobValidationError),
        ({"run_at": "2030-01-01"}, JobValidationError),
        ({"delay": 1, "run_at": datetime.now().astimezone()}, JobValidationError),
        ({"entity_id": 5}, JobValidationError),
        ({"unique_key": ""}, JobValidationError),
        # issue 11: what one store took, another crashed on or could not read back
        ({"expires_in": "3000000d"}, InvalidDurationError),
        ({"delay": "3000000d"}, InvalidDurationError),
        ({"delay": timedelta(days=36_501)}, InvalidDurationError),
        ({"run_at": datetime(9999, 6, 1, tzinfo=UTC)}, JobValidationError),
        (
            {"expires_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
            JobValidationError,
        ),
        ({"max_retries": 2**63}, JobValidationError),
        ({"max_retries": 2**31}, JobValidationError),
        ({"max_retries": 1_000_001}, JobValidationError),
        ({"entity_id": "a\x00b"}, JobValidationError),
        ({"unique_key": "a\x00b"}, JobValidationError),
        ({"entity_id": "\ud800"}, JobValidationError),
        ({"unique_key": "k" * 1025}, JobValidationError),
    ],
)
async def test_a_bad_enqueue_option_is_a_typed_error_and_stores_nothing(
    scheduler: JobScheduler, options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        await scheduler.enqueue("typed", {"n": 1}, **options)  # type: ignore[arg-type]
    assert isinstance(caught.value, TimeCrisisError) and isinstance(caught.value, ValueError)
    assert await scheduler.list_jobs() == []


async def test_the_largest_accepted_values_read_back_on_every_store(
    scheduler: JobScheduler,
) -> None:
    job_id = await scheduler.enqueue(
        "typed", {"n": 1}, max_retries=1_000_000, expires_in="36500d", entity_id="é" * 512
    )
    later = await scheduler.enqueue("typed", {"n": 2}, run_at=datetime(9999, 1, 1, tzinfo=UTC))
    jobs = {job.id: job for job in await scheduler.list_jobs()}
    assert jobs[job_id].max_retries == 1_000_000 and jobs[later].run_at.year == 9999


async def test_a_payload_string_no_store_can_encode_is_refused(scheduler: JobScheduler) -> None:
    with pytest.raises(JobValidationError, match="lone surrogate"):
        await scheduler.enqueue("typed", {"n": 1, "text": "\ud800"})
    nul = await scheduler.enqueue("typed", {"n": 1, "text": "a\x00b"})  # json holds it, everywhere
    job = await scheduler.get_job(nul)
    assert job is not None and job.data["text"] == "a\x00b"
    assert [j.id for j in await scheduler.list_jobs()] == [nul]


class Numbers(BaseModel):
    values: list[float] = []


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
async def test_a_payload_number_that_is_not_finite_is_refused_on_every_store(
    scheduler: JobScheduler, bad: float
) -> None:
    # Left to the stores, PostgreSQL refused it (a StorageError) while SQLite and the memory
    # store kept a non-JSON `Infinity`: the same typed error everywhere instead, nothing written.
    @scheduler.job("numbers", concurrency=None)
    async def numbers(data: Numbers, ctx: JobContext) -> None:
        return None

    with pytest.raises(JobValidationError, match="not finite"):
        await scheduler.enqueue("numbers", {"values": [1.0, bad]})
    with pytest.raises(JobValidationError, match="not finite"):
        await scheduler.enqueue_many("numbers", [{"values": [1.0]}, {"values": [bad]}])
    # A string that merely spells the token is data, not a number.
    ok = await scheduler.enqueue("typed", {"n": 1, "text": "Infinity NaN"})
    assert [j.id for j in await scheduler.list_jobs()] == [ok]
    job = await scheduler.get_job(ok)
    assert job is not None and job.data == {"n": 1, "text": "Infinity NaN"}


@pytest.mark.parametrize("job_id", [2**64, 2**63, "a\x00b", "\ud800", "k" * 2000, None, b"x"])
async def test_an_id_no_store_can_hold_is_a_miss(scheduler: JobScheduler, job_id: object) -> None:
    assert await scheduler.get_job(job_id) is None  # type: ignore[arg-type]
    assert await scheduler.get_job_runs(job_id) == []  # type: ignore[arg-type]
    assert await scheduler.get_job_logs(job_id) == []  # type: ignore[arg-type]
    assert await scheduler.cancel_job(job_id) is False  # type: ignore[arg-type]
    assert await scheduler.retry_job(job_id) is False  # type: ignore[arg-type]
    assert await scheduler.get_scheduled_job(job_id) is None  # type: ignore[arg-type]
    assert await scheduler.disable_scheduled_job(job_id) is False  # type: ignore[arg-type]
    with pytest.raises(JobNotFoundError):
        await scheduler.wait_for_job(job_id, timeout=1)  # type: ignore[arg-type]
    if job_id is not None:
        assert await scheduler.list_jobs(cursor=job_id) == []  # type: ignore[arg-type]
        assert await scheduler.list_jobs(entity_id=job_id) == []  # type: ignore[arg-type]
        assert await scheduler.list_dead_letters(cursor=job_id) == []  # type: ignore[arg-type]


async def test_an_invalid_payload_names_the_field_and_stores_nothing(
    scheduler: JobScheduler,
) -> None:
    with pytest.raises(JobValidationError, match=r"'typed'.*n: Input should be a valid integer"):
        await scheduler.enqueue("typed", {"n": "many"})
    with pytest.raises(JobValidationError):
        await scheduler.enqueue_many("typed", [{"n": 1}, {"n": "bad"}, {"n": 3}])
    assert await scheduler.list_jobs() == []  # the batch is all or nothing


@pytest.mark.parametrize("bad_at", [0, 299, 999], ids=["first", "middle", "last"])
async def test_a_large_batch_with_one_invalid_payload_stores_nothing(
    scheduler: JobScheduler, bad_at: int
) -> None:
    # Large enough that PostgreSQL streams it (validated while the first jobs are copied).
    payloads: list[dict[str, object]] = [{"n": i} for i in range(1000)]
    payloads[bad_at] = {"n": "bad"}

    with pytest.raises(JobValidationError, match=r"'typed'.*n: Input should be a valid integer"):
        await scheduler.enqueue_many("typed", payloads)

    assert await scheduler.list_jobs() == []


async def test_a_large_batch_stores_every_payload_validated_in_order(
    scheduler: JobScheduler,
) -> None:
    ids = await scheduler.enqueue_many("typed", ({"n": i} for i in range(700)), priority=4)

    assert len(set(ids)) == 700
    listed = await scheduler.list_jobs(limit=1000)
    assert [job.id for job in listed] == ids[::-1]  # newest first
    assert [job.data for job in reversed(listed)] == [{"n": i, "text": ""} for i in range(700)]
    assert {job.priority for job in listed} == {4}


async def test_an_unknown_type_is_a_lookup_error(scheduler: JobScheduler) -> None:
    with pytest.raises(JobDefinitionNotFoundError, match="'nope'"):
        await scheduler.enqueue("nope", {})
    assert await scheduler.list_jobs() == []


async def test_a_model_instance_is_accepted_as_a_payload(scheduler: JobScheduler) -> None:
    job_id = await scheduler.enqueue("typed", Payload(n=5))
    job = await scheduler.get_job(job_id)
    assert job is not None and job.data == {"n": 5, "text": ""}


async def test_registering_a_type_twice_is_an_error(scheduler: JobScheduler) -> None:
    async def handle(data: Payload, ctx: JobContext) -> None:
        return None

    with pytest.raises(JobAlreadyRegisteredError):
        scheduler.register_job(
            JobDefinition(type="typed", schema=Payload, handle=handle, concurrency=1)
        )


def test_the_decorator_needs_a_model_annotation_or_an_explicit_schema(
    store: JobStorage,
) -> None:
    scheduler = JobScheduler(store)
    with pytest.raises(TypeError, match="pydantic model"):

        @scheduler.job("untyped", concurrency=None)  # type: ignore[type-var] # mypy sees it too
        async def untyped(data: dict[str, int], ctx: JobContext) -> None:
            return None

    class Explicit(BaseModel):
        x: int

    @scheduler.job("explicit", concurrency=None, schema=Explicit)
    async def explicit(data, ctx):  # type: ignore[no-untyped-def]
        return None

    assert scheduler.get_job_definition("explicit").schema is Explicit


@pytest.mark.parametrize(
    "fields",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"priority": 99},
        {"max_retries": -2},
        {"retry_delay": "fast"},
        {"timeout": 0},
        {"backoff_strategy": "random"},
        {"type": ""},
        # issue 11: bounded like the enqueue options
        {"max_retries": 2**31},
        {"retry_delay": "3000000d"},
        {"max_retry_delay": timedelta.max},
        {"timeout": "36501d"},
        {"type": "a\x00b"},
    ],
)
def test_a_bad_job_definition_is_refused(fields: dict[str, object]) -> None:
    async def handle(data: Payload, ctx: JobContext) -> None:
        return None

    base: dict[str, object] = {"type": "t", "schema": Payload, "handle": handle, "concurrency": 1}
    with pytest.raises(ValueError):
        JobDefinition(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrent_jobs": 0},
        {"job_lock_ttl": "forever"},
        {"leader_lock_ttl": 0},
        {"job_retention": "-1d"},
        {"worker": ""},
    ],
)
def test_bad_scheduler_options_are_refused(store: JobStorage, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        JobScheduler(store, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "option",
    [
        "job_lock_ttl",
        "leader_lock_ttl",
        "job_processing_interval",
        "scheduled_job_max_stale_age",
        "job_retention",
    ],
)
def test_a_scheduler_duration_past_the_calendar_is_refused(store: JobStorage, option: str) -> None:
    # The loops add these to the store's clock (retention and stale age take them from it).
    with pytest.raises(InvalidDurationError, match="at most 36500d"):
        JobScheduler(store, **{option: "3000000d"})  # type: ignore[arg-type]


async def test_purging_older_than_the_calendar_is_refused(scheduler: JobScheduler) -> None:
    with pytest.raises(InvalidDurationError, match="at most 36500d"):
        await scheduler.purge_jobs(older_than="3000000d")
    assert await scheduler.purge_jobs(older_than="36500d") == 0


@pytest.mark.parametrize(
    "url",
    [
        "",
        "redis://localhost",
        "sqlite://relative.db",
        "sqlite:///",
        "memory://somewhere",
        "not a url",
        "sqlite:///:memory:",
    ],
)
def test_an_unknown_or_malformed_storage_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidStorageUrlError) as caught:
        storage_from_url(url)
    assert isinstance(caught.value, StorageError) and isinstance(caught.value, ValueError)


def test_storage_urls_build_the_named_backend(tmp_path: object) -> None:
    from timecrisis import PostgresJobStorage, SQLiteJobStorage

    assert isinstance(storage_from_url("memory://"), InMemoryJobStorage)
    assert isinstance(storage_from_url("sqlite:///demo.db"), SQLiteJobStorage)
    assert isinstance(storage_from_url("sqlite:////tmp/abs.db"), SQLiteJobStorage)
    assert isinstance(
        storage_from_url("postgresql://postgres@127.0.0.1:5432/test"), PostgresJobStorage
    )


async def test_wait_for_job_raises_for_unknown_ids_and_times_out(scheduler: JobScheduler) -> None:
    from timecrisis import JobNotFoundError

    with pytest.raises(JobNotFoundError):
        await scheduler.wait_for_job("missing", timeout=1)
    job_id = await scheduler.enqueue("typed", {}, delay=timedelta(hours=1))
    with pytest.raises(TimeoutError):
        await scheduler.wait_for_job(job_id, timeout=0.05)


def test_an_unknown_type_suggests_the_closest_registered_one(store: JobStorage) -> None:
    scheduler = JobScheduler(store)

    @scheduler.job("send-email", concurrency=None)
    async def send_email(data: Payload, ctx: JobContext) -> None:
        return None

    with pytest.raises(JobDefinitionNotFoundError, match="did you mean 'send-email'"):
        scheduler.get_job_definition("send_email")
    with pytest.raises(JobDefinitionNotFoundError) as raised:
        scheduler.get_job_definition("resize-image")
    assert "did you mean" not in str(raised.value)
    assert raised.value.job_type == "resize-image"
