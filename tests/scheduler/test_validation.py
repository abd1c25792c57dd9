"""Bad input at the boundary: a typed error, and nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    ],
)
async def test_a_bad_enqueue_option_is_a_typed_error_and_stores_nothing(
    scheduler: JobScheduler, options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        await scheduler.enqueue("typed", {"n": 1}, **options)  # type: ignore[arg-type]
    assert isinstance(caught.value, TimeCrisisError) and isinstance(caught.value, ValueError)
    assert await scheduler.list_jobs() == []


async def test_an_invalid_payload_names_the_field_and_stores_nothing(
    scheduler: JobScheduler,
) -> None:
    with pytest.raises(JobValidationError, match=r"'typed'.*n: Input should be a valid integer"):
        await scheduler.enqueue("typed", {"n": "many"})
    with pytest.raises(JobValidationError):
        await scheduler.enqueue_many("typed", [{"n": 1}, {"n": "bad"}, {"n": 3}])
    assert await scheduler.list_jobs() == []  # the batch is all or nothing


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
