"""The names users and acceptance checks import (DESIGN §1) stay importable from the root."""

from __future__ import annotations

import inspect

import timecrisis

DESIGN_NAMES = {
    "JobScheduler", "JobContext", "JobDefinition", "InMemoryJobStorage", "SQLiteJobStorage",
    "PostgresJobStorage", "storage_from_url", "preview_schedule", "JobStorage",
    "Job", "JobRun", "JobLog", "ScheduledJob", "WorkerInfo", "JobStatus", "RunStatus",
    "Metrics", "TypeMetrics", "FailureKind",
    "TimeCrisisError", "JobDefinitionNotFoundError", "JobAlreadyRegisteredError",
    "DistributedLockError", "JobValidationError", "InvalidScheduleError", "InvalidDurationError",
    "StorageError", "NonRetryableError",
    # DESIGN §4
    "Retry", "Snooze", "JobType",
}  # fmt: skip


def test_every_design_name_is_exported() -> None:
    assert set(timecrisis.__all__) >= DESIGN_NAMES
    for name in timecrisis.__all__:
        assert getattr(timecrisis, name) is not None, name


def test_all_errors_derive_from_the_base_and_input_errors_are_value_errors() -> None:
    for name in ("JobValidationError", "InvalidScheduleError", "InvalidDurationError"):
        error = getattr(timecrisis, name)
        assert issubclass(error, timecrisis.TimeCrisisError)
        assert issubclass(error, ValueError)
    for name in timecrisis.__all__:
        value = getattr(timecrisis, name)
        if inspect.isclass(value) and issubclass(value, Exception):
            assert issubclass(value, timecrisis.TimeCrisisError), name


def test_the_scheduler_defaults_are_the_documented_ones() -> None:
    params = inspect.signature(timecrisis.JobScheduler).parameters
    expected = {
        "max_concurrent_jobs": 20, "job_lock_ttl": 60, "leader_lock_ttl": 30,
        "job_processing_interval": 5, "job_scheduling_interval": 60,
        "expired_job_check_interval": 60, "worker_heartbeat_interval": 15,
        "worker_inactive_check_interval": 60, "shutdown_timeout": 15,
        "scheduled_job_max_stale_age": 3600, "job_retention": "30d",
    }  # fmt: skip
    assert {name: params[name].default for name in expected} == expected


def test_job_status_values() -> None:
    assert [s.value for s in timecrisis.JobStatus] == [
        "pending", "running", "completed", "failed", "canceled"
    ]  # fmt: skip
    assert [s.value for s in timecrisis.RunStatus] == [
        "running", "completed", "failed", "released"
    ]  # fmt: skip


def test_failure_kind_values() -> None:
    assert [k.value for k in timecrisis.FailureKind] == [
        "error", "timeout", "lease_expired", "expired", "crashed", "non_retryable", "canceled"
    ]  # fmt: skip


def test_the_testing_helpers_have_their_own_module() -> None:
    from timecrisis.testing import TestContext

    assert issubclass(TestContext, timecrisis.JobContext)
    for name in ("enqueue_sync", "enqueue_many_sync", "schedule_sync", "get_job_sync"):
        assert callable(getattr(timecrisis.JobScheduler, name)), name
    for name in ("wait_for_job_sync", "cancel_job_sync", "retry_job_sync", "periodic", "drain"):
        assert callable(getattr(timecrisis.JobScheduler, name)), name


# Every public name, exactly: adding or dropping one is a decision, made here on purpose (other
# branches that export new names add them to this set).
EXPORTED = {
    "Clock", "DistributedLockError", "FailureKind", "ForkedHandlerError", "ForkedProcessError",
    "InMemoryJobStorage", "InvalidDurationError", "InvalidScheduleError", "InvalidStorageUrlError",
    "Job", "JobAlreadyRegisteredError", "JobContext", "JobDefinition", "JobDefinitionNotFoundError",
    "JobExpiredError", "JobLog", "JobNotFoundError", "JobRun", "JobScheduler", "JobStatus",
    "JobStorage", "JobTimeoutError", "JobValidationError", "LeaseExpiredError", "ManualClock",
    "Metrics", "NonRetryableError", "PostgresJobStorage", "RunStatus", "SQLiteJobStorage",
    "Retry", "Snooze", "JobType",  # DESIGN §4
    "QueueMetrics",  # flow control: Metrics.queues
    "RateLimit",  # flow control: the parsed `rate_limit`
    "ScheduledJob", "StorageError", "SystemClock", "TimeCrisisError", "TypeMetrics", "WorkerInfo",
    "__version__", "preview_schedule", "storage_from_url",
}  # fmt: skip


def test_all_is_pinned_exactly() -> None:
    assert set(timecrisis.__all__) == EXPORTED
    assert len(timecrisis.__all__) == len(EXPORTED)  # no name listed twice
