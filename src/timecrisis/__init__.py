"""timecrisis: a distributed job scheduler for Python.

Everything public is importable from here; see DESIGN §1 (and the README) for the API.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from timecrisis.clock import Clock, ManualClock, SystemClock
from timecrisis.context import JobContext
from timecrisis.definitions import JobDefinition
from timecrisis.errors import (
    DistributedLockError,
    InvalidDurationError,
    InvalidScheduleError,
    JobAlreadyRegisteredError,
    JobDefinitionNotFoundError,
    JobExpiredError,
    JobNotFoundError,
    JobTimeoutError,
    JobValidationError,
    LeaseExpiredError,
    NonRetryableError,
    Retry,
    Snooze,
    StorageError,
    TimeCrisisError,
)
from timecrisis.execution.fork_errors import ForkedHandlerError, ForkedProcessError
from timecrisis.job_type import JobType
from timecrisis.models import (
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    Metrics,
    QueueMetrics,
    RunStatus,
    ScheduledJob,
    TypeMetrics,
    WorkerInfo,
)
from timecrisis.rate_limits import RateLimit
from timecrisis.scheduler import JobScheduler
from timecrisis.schedules import preview_schedule
from timecrisis.storage.base import JobStorage
from timecrisis.storage.memory import InMemoryJobStorage
from timecrisis.storage.urls import InvalidStorageUrlError, storage_from_url

if TYPE_CHECKING:
    from timecrisis.storage.postgres import PostgresJobStorage
    from timecrisis.storage.sqlite import SQLiteJobStorage

try:
    __version__ = version("timecrisis")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"


def __getattr__(name: str) -> Any:
    # The SQL backends are imported on first use: a producer on SQLite never loads psycopg.
    if name == "SQLiteJobStorage":
        from timecrisis.storage.sqlite import SQLiteJobStorage

        return SQLiteJobStorage
    if name == "PostgresJobStorage":
        from timecrisis.storage.postgres import PostgresJobStorage

        return PostgresJobStorage
    raise AttributeError(f"module 'timecrisis' has no attribute {name!r}")


__all__ = [
    "Clock",
    "DistributedLockError",
    "FailureKind",
    "ForkedHandlerError",
    "ForkedProcessError",
    "InMemoryJobStorage",
    "InvalidDurationError",
    "InvalidScheduleError",
    "InvalidStorageUrlError",
    "Job",
    "JobAlreadyRegisteredError",
    "JobContext",
    "JobDefinition",
    "JobDefinitionNotFoundError",
    "JobExpiredError",
    "JobLog",
    "JobNotFoundError",
    "JobRun",
    "JobScheduler",
    "JobStatus",
    "JobStorage",
    "JobTimeoutError",
    "JobType",
    "JobValidationError",
    "LeaseExpiredError",
    "ManualClock",
    "Metrics",
    "NonRetryableError",
    "PostgresJobStorage",
    "QueueMetrics",
    "RateLimit",
    "Retry",
    "RunStatus",
    "SQLiteJobStorage",
    "ScheduledJob",
    "Snooze",
    "StorageError",
    "SystemClock",
    "TimeCrisisError",
    "TypeMetrics",
    "WorkerInfo",
    "__version__",
    "preview_schedule",
    "storage_from_url",
]
