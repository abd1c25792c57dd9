"""The job types a scheduler knows, each with the `Executor` that runs its attempts.

The executor is chosen once, when the type is registered (`JobScheduler.register_job`): fork
mode, `async def` or plain `def`. A fork-mode definition is checked then (can a child import
what it runs?) and refused with `JobValidationError` before anything is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from timecrisis._logging import DEFAULT_LOGGER_NAME
from timecrisis.definitions import JobDefinition
from timecrisis.execution.executors import AsyncExecutor, Executor, ThreadExecutor
from timecrisis.rate_limits import RateLimit

if TYPE_CHECKING:
    from timecrisis.execution.forked import ForkExecutor


class Registry:
    """type -> (definition, executor). `definitions` is the plain mapping the rest of the
    scheduler reads; `threads` is the executor of every sync type (the scheduler opens and
    closes its threads with `start()` and `stop()`)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger(DEFAULT_LOGGER_NAME)
        self.definitions: dict[str, JobDefinition[Any]] = {}
        self._executors: dict[str, Executor] = {}
        self.threads = ThreadExecutor()
        self._async = AsyncExecutor()
        self._fork: ForkExecutor | None = None  # created by the first fork-mode type

    @classmethod
    def of(cls, definitions: Mapping[str, JobDefinition[Any]]) -> Registry:
        registry = cls()
        for definition in definitions.values():
            registry.add(definition)
        return registry

    def add(self, definition: JobDefinition[Any]) -> None:
        """Record `definition` with its executor; a fork-mode one that a child could not load
        raises `JobValidationError` and records nothing. Duplicates are the caller's check."""
        self._executors[definition.type] = self._choose(definition)
        self.definitions[definition.type] = definition

    def _choose(self, definition: JobDefinition[Any]) -> Executor:
        if definition.fork_mode:
            # Imported here: sockets and the fork server cost nothing to a scheduler without
            # a fork-mode type.
            from timecrisis.execution.forked import ForkExecutor, check_fork_mode_supported

            check_fork_mode_supported(definition)
            fork = self._fork if self._fork is not None else ForkExecutor(self._logger)
            fork.add(definition)  # raises before anything is recorded
            self._fork = fork
            return fork
        return self._async if definition.is_async else self.threads

    def executor(self, job_type: str) -> Executor:
        return self._executors[job_type]

    def type_limits(self) -> dict[str, int | None]:
        return {name: d.concurrency for name, d in self.definitions.items()}

    def rate_limits(self) -> dict[str, RateLimit]:
        """The rate-limited types (docs/flow-control.md), for `ClaimParams.rate_limits`."""
        return {
            name: d.rate_limit_parsed
            for name, d in self.definitions.items()
            if d.rate_limit_parsed is not None
        }

    def key_limits(self) -> dict[str, int]:
        """The types that limit their concurrency keys, for `ClaimParams.key_limits`."""
        return {
            name: d.key_concurrency
            for name, d in self.definitions.items()
            if d.key_concurrency is not None
        }

    def __contains__(self, job_type: object) -> bool:
        return job_type in self.definitions

    def __getitem__(self, job_type: str) -> JobDefinition[Any]:
        return self.definitions[job_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.definitions)

    def __len__(self) -> int:
        return len(self.definitions)
