"""Waiting on outcomes in tests: a condition polled until it holds, with a deadline that is a
safety net, never the thing being measured."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 15.0, every: float = 0.02
) -> None:
    """Wait until `condition()` is true; raise `TimeoutError` after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(every)
