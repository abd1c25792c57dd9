"""Every store: a call cancelled part-way (a stop, a leader stepping down, a caller's timeout)
leaves nothing behind that swallows the next writes. Each test cancels a call after 0 to 23
loop turns, then checks through a second handle on the same store (as another process would
hold) that the next write is there. PostgreSQL's own failure of this kind, and its fix, are in
tests/postgres/test_cancelled_calls.py."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from tests.storage.factories import claim
from timecrisis.models import JobStatus
from timecrisis.storage._common import new_id
from timecrisis.storage.base import JobStorage, NewJob

_TURNS = 24


async def _cancel_after(turns: int, call: Callable[[], Awaitable[Any]]) -> None:
    task = asyncio.ensure_future(call())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # cancelled, or done before the cancel


async def test_an_enqueue_after_a_cancelled_one_is_stored(
    harness_handles: tuple[JobStorage, JobStorage],
) -> None:
    writer, reader = harness_handles
    unseen = []
    for turns in range(_TURNS):
        keyed = [NewJob(id=new_id(), type="t", data={}, unique_key=new_id())]
        await _cancel_after(turns, functools.partial(writer.insert_jobs, keyed))

        plain = NewJob(id=new_id(), type="t", data={})
        await writer.insert_jobs([plain])
        job = await reader.get_job(plain.id)
        if job is None or job.status is not JobStatus.PENDING:
            unseen.append(turns)
    assert not unseen, f"enqueues the other handle did not see: {unseen}"


async def test_a_claim_after_a_cancelled_one_is_stored(
    harness_handles: tuple[JobStorage, JobStorage],
) -> None:
    writer, reader = harness_handles
    await writer.insert_jobs([NewJob(id=new_id(), type="t", data={}) for _ in range(2 * _TURNS)])
    unseen = []
    for turns in range(_TURNS):
        await _cancel_after(turns, lambda: claim(writer, limit=1, types={"t": 1_000}))

        [claimed] = await claim(writer, limit=1, types={"t": None})
        job = await reader.get_job(claimed.job.id)
        if job is None or job.status is not JobStatus.RUNNING:
            unseen.append(turns)
    assert not unseen, f"claims the other handle did not see: {unseen}"
