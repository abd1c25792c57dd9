"""Turning `enqueue(...)` arguments into a validated `NewJob`, or a typed error. Nothing is stored
until every argument of every job has passed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from timecrisis._bounds import check_flow_name, instant_problem, text_problem
from timecrisis.definitions import (
    JobDefinition,
    check_backoff,
    check_max_retries,
    check_priority,
)
from timecrisis.durations import Duration, parse_job_duration
from timecrisis.errors import JobValidationError
from timecrisis.models import BackoffStrategy, JsonValue
from timecrisis.storage._common import new_id, new_ids
from timecrisis.storage.base import NewJob


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """The per-job options of `enqueue`, checked once and shared by every job of a batch."""

    priority: int
    max_retries: int
    backoff_strategy: BackoffStrategy
    entity_id: str | None
    unique_key: str | None
    run_at: datetime | None
    delay: timedelta | None
    expires_at: datetime | None
    expires_in: timedelta | None
    concurrency_key: str | None
    queue: str

    @classmethod
    def parse(
        cls,
        definition: JobDefinition[Any],
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        backoff_strategy: str | None = None,
        entity_id: str | None = None,
        expires_at: datetime | None = None,
        expires_in: Duration | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        unique_key: str | None = None,
        concurrency_key: str | None = None,
        queue: str | None = None,
    ) -> EnqueueOptions:
        if run_at is not None and delay is not None:
            raise JobValidationError("pass run_at or delay, not both")
        return cls(
            priority=check_priority(definition.priority if priority is None else priority),
            max_retries=check_max_retries(
                definition.max_retries if max_retries is None else max_retries
            ),
            backoff_strategy=check_backoff(
                definition.backoff_strategy if backoff_strategy is None else backoff_strategy
            ),
            entity_id=_optional_text("entity_id", entity_id),
            unique_key=_optional_text("unique_key", unique_key),
            run_at=_aware("run_at", run_at),
            delay=None if delay is None else parse_job_duration(delay),
            expires_at=_aware("expires_at", expires_at),
            expires_in=None if expires_in is None else parse_job_duration(expires_in),
            concurrency_key=_concurrency_key(definition, concurrency_key),
            queue=definition.queue if queue is None else check_flow_name(queue, "queue"),
        )

    def new_job(
        self,
        definition: JobDefinition[Any],
        data: Any,
        headers: dict[str, str] | None = None,
        *,
        data_json: str | None = None,
        job_id: str | None = None,
    ) -> NewJob:
        return NewJob(
            id=new_id() if job_id is None else job_id,
            type=definition.type,
            data=data,
            priority=self.priority,
            max_retries=self.max_retries,
            backoff_strategy=self.backoff_strategy,
            retry_delay=definition.retry_delay_td.total_seconds(),
            max_retry_delay=definition.max_retry_delay_td.total_seconds(),
            entity_id=self.entity_id,
            unique_key=self.unique_key,
            run_at=self.run_at,
            delay=self.delay,
            expires_at=self.expires_at,
            expires_in=self.expires_in,
            headers=headers,
            data_json=data_json,
            concurrency_key=self.concurrency_key,
            queue=self.queue,
        )

    def new_jobs(
        self,
        definition: JobDefinition[Any],
        payloads: Sequence[tuple[JsonValue, str]],
        headers: dict[str, str] | None = None,
    ) -> list[NewJob]:
        """A `NewJob` per (payload, its JSON text), in order: `new_job` for each, made faster
        for a batch. Its jobs differ only in id and payload, so one is built by `new_job` and
        the others copy its fields (a frozen dataclass's `__init__` is a third of an
        `enqueue_many`'s per-job cost before the store)."""
        if len(payloads) == 1:
            [(data, text)] = payloads
            return [self.new_job(definition, data, headers, data_json=text)]
        ids = new_ids(len(payloads))
        template = self.new_job(definition, None, headers, job_id=ids[0])
        return _copies(template, ids, payloads)

    def stream_jobs(
        self,
        definition: JobDefinition[Any],
        items: Sequence[Any],
        headers: dict[str, str] | None = None,
    ) -> Iterator[NewJob]:
        """`new_jobs` of the validated `items`, made a chunk at a time as they are consumed
        (`StreamedInsert`): a store writes one chunk while the next is validated. Raises
        `JobValidationError` at the first invalid payload."""
        for start in range(0, len(items), _STREAM_CHUNK):
            chunk = items[start : start + _STREAM_CHUNK]
            yield from self.new_jobs(
                definition, [definition.stored_payload(x) for x in chunk], headers
            )


# Jobs validated at a time by `stream_jobs`: about what psycopg sends to the server at once
# (32 KiB of COPY rows), so the server has the first rows after a few hundred microseconds.
_STREAM_CHUNK = 256

# A slot set through its descriptor, which is what a frozen dataclass's `__init__` does too
# (through `object.__setattr__`), minus the keyword arguments and the per-field lookups.
_OWN_FIELDS = ("id", "data", "data_json")
_SHARED_SLOTS = [
    getattr(NewJob, field.name) for field in fields(NewJob) if field.name not in _OWN_FIELDS
]
_ID, _DATA, _DATA_JSON = (getattr(NewJob, name) for name in _OWN_FIELDS)


def _copies(
    template: NewJob, ids: Sequence[str], payloads: Sequence[tuple[JsonValue, str]]
) -> list[NewJob]:
    """Copies of `template`, each with its own id and payload: what `new_job` would make."""
    shared = [(slot.__set__, slot.__get__(template)) for slot in _SHARED_SLOTS]
    make = object.__new__
    jobs = []
    for job_id, (data, text) in zip(ids, payloads, strict=True):
        job = make(NewJob)
        for set_slot, value in shared:
            set_slot(job, value)
        _ID.__set__(job, job_id)
        _DATA.__set__(job, data)
        _DATA_JSON.__set__(job, text)
        jobs.append(job)
    return jobs


def _concurrency_key(definition: JobDefinition[Any], value: object) -> str | None:
    """A key is only meaningful for a type that limits its keys: refused elsewhere, so a
    forgotten `key_concurrency` never goes unnoticed as a limit that does nothing."""
    key = _optional_text("concurrency_key", value)
    if key is not None and definition.key_concurrency is None:
        raise JobValidationError(
            f"concurrency_key needs key_concurrency on job type {definition.type!r}, "
            f"which sets none"
        )
    return key


def _aware(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise JobValidationError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise JobValidationError(
            f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got naive {value!r}"
        )
    problem = instant_problem(value)
    if problem is not None:
        raise JobValidationError(f"{name} {problem}, got {value.isoformat()}")
    return value


def _optional_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    problem = text_problem(value)
    if problem is not None:
        raise JobValidationError(f"{name} {problem}: {value!r}")
    assert isinstance(value, str)
    return value
