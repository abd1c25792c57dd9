"""Registration refuses, with a clear reason, what a child process could not import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.fork import handlers
from timecrisis import (
    InMemoryJobStorage,
    JobContext,
    JobDefinition,
    JobScheduler,
    JobValidationError,
)


class _Methods:
    def handle(self, data: handlers.Work, ctx: JobContext) -> None:
        return None


class _CallableObject:
    def __call__(self, data: handlers.Work, ctx: JobContext) -> None:
        return None


def _local_handler() -> Any:
    def handle(data: handlers.Work, ctx: JobContext) -> None:
        return None

    return handle


def _local_schema() -> type[BaseModel]:
    class Local(BaseModel):
        n: int

    return Local


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"handle": lambda data, ctx: None}, "it is a lambda or is defined inside a function"),
        ({"handle": _local_handler()}, "it is a lambda or is defined inside a function"),
        ({"handle": _Methods().handle}, "must be a plain function"),
        ({"handle": _CallableObject()}, "must be a plain function"),
        ({"schema": _local_schema()}, "is not reachable as tests.fork.test_registration"),
        ({"fork_helper_path": "/nonexistent/helper.py"}, "is not a file"),
    ],
    ids=["lambda", "nested-function", "bound-method", "callable-object", "local-schema", "no-file"],
)
def test_what_a_child_cannot_import_is_refused_at_registration(
    fields: dict[str, Any], reason: str
) -> None:
    scheduler = JobScheduler(InMemoryJobStorage())
    definition: dict[str, Any] = {
        "type": "refused",
        "schema": handlers.Work,
        "handle": handlers.crash,
        "concurrency": None,
        "fork_mode": True,
        **fields,
    }
    with pytest.raises(JobValidationError, match=reason):
        scheduler.register_job(JobDefinition(**definition))
    assert "refused" not in scheduler.job_definitions
    assert "refused" not in scheduler._runtime.registry  # nothing recorded on a refusal


def test_a_helper_file_must_define_handle_and_parse(tmp_path: Path) -> None:
    scheduler = JobScheduler(InMemoryJobStorage())
    no_handle = tmp_path / "no_handle.py"
    no_handle.write_text("def handler(data, ctx):\n    return 1\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def handle(data, ctx)\n")
    imported = tmp_path / "imported.py"
    imported.write_text("if True:\n    from tests.fork.handlers import crash as handle\n")

    def definition(job_type: str, path: Path) -> JobDefinition[handlers.Work]:
        return JobDefinition(
            type=job_type,
            schema=handlers.Work,
            handle=handlers.crash,
            concurrency=None,
            fork_mode=True,
            fork_helper_path=str(path),
        )

    with pytest.raises(JobValidationError, match="defines no top-level `handle"):
        scheduler.register_job(definition("a", no_handle))
    with pytest.raises(JobValidationError, match="cannot be parsed"):
        scheduler.register_job(definition("b", broken))
    scheduler.register_job(definition("c", imported))  # a name bound by an import counts
    assert list(scheduler.job_definitions) == ["c"]
