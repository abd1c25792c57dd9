"""One in-flight read shared by every viewer, reused for a short while.

The overview's counts come from `get_metrics`, one aggregate over every job: about 0.4 s on
SQLite and 0.5 s on PostgreSQL with a million jobs (benchmarks/dashboard_jobs_page.py). Every
open overview tab refreshes it; with this, ten tabs cost the store what one does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], max_age: float) -> None:
        self._read = read
        self._max_age = max_age
        self._value: tuple[float, T] | None = None
        self._pending: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._value[0] < self._max_age:
            return self._value[1]
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
        # shield: a viewer who leaves must not cancel the read the others wait for
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> T:
        try:
            value = await self._read()
            self._value = (time.monotonic(), value)
            return value
        finally:
            self._pending = None
