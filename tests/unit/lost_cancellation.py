"""A stand-in for a library call that swallows its task's cancellation (as psycopg's pool was
seen to at a stop): the loops must end anyway."""

from __future__ import annotations

import asyncio


async def sleep_losing_cancellation(seconds: float) -> None:
    """Sleep; if cancelled meanwhile, return normally as if nothing had happened."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()  # lost, as the library lost it
