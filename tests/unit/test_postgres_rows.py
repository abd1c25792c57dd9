"""`job_from_row` builds the PostgreSQL store's records by copying a template
(`model_copy(update=...)`) instead of `model_construct`: the record must be the one
`model_construct` builds, field for field, with every field counted as set, and copies must
never share state with the template or with each other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from timecrisis.models import FailureKind, Job, JobStatus
from timecrisis.storage.postgres._rows import job_from_row

_PARIS = timezone(timedelta(hours=1))  # what a session in another time zone returns


def _row(**changes: Any) -> dict[str, Any]:
    at = datetime(2026, 12, 1, 16, 0, tzinfo=_PARIS)
    row: dict[str, Any] = {
        "seq": 7,
        "id": "0190a3c2-0000-7000-8000-000000000001",
        "type": "send-email",
        "data": {"to": "a@b.co", "tags": [1, 2]},
        "status": "running",
        "priority": 5,
        "max_retries": 3,
        "attempts": 2,
        "backoff_strategy": "linear",
        "entity_id": "user-1",
        "scheduled_job_id": None,
        "unique_key": "k",
        "run_at": at,
        "expires_at": at + timedelta(hours=1),
        "progress": 40.0,
        "fail_reason": "TimeoutError: slow",
        "result": None,
        "created_at": at - timedelta(minutes=1),
        "started_at": at,
        "finished_at": None,
        "worker": "w-1",
        "lock_token": "t",
        "lock_expires_at": at + timedelta(seconds=30),
        "run_id": "r",
        "cancel_requested": True,
        "dead_lettered": False,
        "failure_kind": "timeout",
        "headers": {"traceparent": "00-abc-def-01"},
        "queue": "emails",
        "concurrency_key": None,
        "retry_delay": 2.0,
        "max_retry_delay": 60.0,
    }
    row.update(changes)
    return row


def _constructed(row: dict[str, Any]) -> Job:
    """The record as `model_construct` built it before."""
    return Job.model_construct(
        id=row["id"],
        type=row["type"],
        data=row["data"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        max_retries=row["max_retries"],
        attempts=row["attempts"],
        backoff_strategy=row["backoff_strategy"],
        entity_id=row["entity_id"],
        scheduled_job_id=row["scheduled_job_id"],
        unique_key=row["unique_key"],
        run_at=row["run_at"].astimezone(UTC),
        expires_at=None if row["expires_at"] is None else row["expires_at"].astimezone(UTC),
        progress=row["progress"],
        fail_reason=row["fail_reason"],
        result=row["result"],
        created_at=row["created_at"].astimezone(UTC),
        started_at=None if row["started_at"] is None else row["started_at"].astimezone(UTC),
        finished_at=None if row["finished_at"] is None else row["finished_at"].astimezone(UTC),
        worker=row["worker"],
        dead_lettered=row["dead_lettered"],
        retry_delay=row["retry_delay"],
        max_retry_delay=row["max_retry_delay"],
        failure_kind=None if row["failure_kind"] is None else FailureKind(row["failure_kind"]),
        headers=row["headers"],
        concurrency_key=row["concurrency_key"],
        queue=row["queue"],
        cancel_requested=row["cancel_requested"] and row["status"] == "running",
    )


def test_the_record_is_the_one_model_construct_builds() -> None:
    for row in (_row(), _row(status="completed", finished_at=_row()["run_at"], result=[1])):
        job = job_from_row(row)
        assert job == _constructed(row)
        assert job.__dict__ == _constructed(row).__dict__
        assert job.model_fields_set == set(Job.model_fields)
        assert job.run_at.tzinfo is UTC and job.created_at.tzinfo is UTC


def test_a_finished_job_is_never_cancel_requested() -> None:
    assert job_from_row(_row()).cancel_requested is True
    assert job_from_row(_row(status="completed")).cancel_requested is False


def test_records_share_nothing() -> None:
    first, second = job_from_row(_row()), job_from_row(_row(id="other", priority=1))
    assert (first.id, first.priority) != (second.id, second.priority)
    assert first.model_fields_set is not second.model_fields_set
    assert first.__dict__ is not second.__dict__
    assert Job.model_validate(first.model_dump()) == first  # a valid record, as stored
