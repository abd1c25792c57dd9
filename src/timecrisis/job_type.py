"""`JobType[Model]`: what `@scheduler.job(...)` returns. A handle on one registered job type,
typed by its payload model, so `send_email.enqueue(WrongModel(...))` is a type error; calling it
runs the handler itself (for tests)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic

from timecrisis.definitions import JobDefinition, ModelT

if TYPE_CHECKING:
    from timecrisis.context import JobContext
    from timecrisis.scheduler import JobScheduler


class JobType(Generic[ModelT]):
    """A registered job type: `await send_email.enqueue(Email(...), priority=5)`,
    `send_email.enqueue_sync(...)` (from sync code, see docs/sync.md),
    `await send_email.enqueue_many([...])`; `.type` and `.definition`.
    `await send_email(data, ctx)` (or `send_email(data, ctx)` for a plain `def`) runs the
    handler directly, e.g. with a `timecrisis.testing.TestContext`."""

    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        scheduler: JobScheduler,
        definition: JobDefinition[ModelT],
        handler: Callable[..., Any],
    ) -> None:
        self._scheduler = scheduler
        self._definition = definition
        self._handler = handler
        # The handler's name, docstring and module (and `__wrapped__`), so tools that introspect
        # the module attribute (pytest, documentation, a fork-mode child) see the function.
        functools.update_wrapper(self, handler)

    @property
    def type(self) -> str:
        return self._definition.type

    @property
    def definition(self) -> JobDefinition[ModelT]:
        return self._definition

    @property
    def scheduler(self) -> JobScheduler:
        return self._scheduler

    def __call__(self, data: ModelT, ctx: JobContext) -> Any:
        """Run the handler itself: a coroutine to await for an `async def` handler, the result
        for a plain `def`."""
        return self._handler(data, ctx)

    async def enqueue(self, data: ModelT | Mapping[str, Any], **options: Any) -> str:
        """`scheduler.enqueue(self.type, data, **options)`."""
        return await self._scheduler.enqueue(self.type, data, **options)

    async def enqueue_many(
        self, data: Iterable[ModelT | Mapping[str, Any]], **options: Any
    ) -> list[str]:
        """`scheduler.enqueue_many(self.type, data, **options)`."""
        return await self._scheduler.enqueue_many(self.type, data, **options)

    def enqueue_sync(self, data: ModelT | Mapping[str, Any], **options: Any) -> str:
        """`scheduler.enqueue_sync(self.type, data, **options)`; `connection=` included."""
        return self._scheduler.enqueue_sync(self.type, data, **options)

    def enqueue_many_sync(
        self, data: Iterable[ModelT | Mapping[str, Any]], **options: Any
    ) -> list[str]:
        """`scheduler.enqueue_many_sync(self.type, data, **options)`."""
        return self._scheduler.enqueue_many_sync(self.type, data, **options)

    def __repr__(self) -> str:
        return f"JobType({self.type!r}, schema={self._definition.schema.__name__})"
