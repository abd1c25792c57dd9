"""A store call cancelled part-way leaves no connection behind that would swallow later writes.

Tasks around store calls are cancelled in ordinary operation: a stop cancels the claim loop, a
leader that steps down cancels its maintenance, a caller's `asyncio.timeout` cancels its
enqueue. psycopg (3.3.9) cannot leave pipeline mode when that happens while a pipelined
transaction ends, and then forgets that libpq is still in it. The pool took the connection back
(its transaction status looked idle), and every later statement on it joined one transaction
that nothing ended: an enqueue or a completion was acknowledged, visible on that connection
alone, and rolled back when the connection closed. Seen as a job still "running" right after a
graceful stop (tests/defaults/test_stopping.py), 2 runs in 200.

Each test cancels a pipelined call after 0 to `_TURNS` loop turns, so that some cancellations
land while its pipeline ends (about one in five did, in a loop of this shape), then checks
from outside the store that the next write was committed."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from tests.storage.factories import claim
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.postgres._jobs import COPY_MIN_BATCH

pytestmark = pytest.mark.postgres

_TURNS = 24
_ROUNDS = 3  # each number of turns, so a cancellation that missed the window once can hit it


async def _status(admin: Admin, schema: str, job_id: str) -> str | None:
    cur = await admin.execute(f'SELECT status FROM "{schema}".jobs WHERE id = %s', (job_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def _cancel_after(turns: int, call: Callable[[], Awaitable[Any]]) -> None:
    task = asyncio.ensure_future(call())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    # Cancelled, or done before the cancel arrived: either is a possible outcome of a timeout.
    await asyncio.gather(task, return_exceptions=True)


def _keyed() -> list[NewJob]:
    # A unique key makes the insert a pipelined transaction (it may have to name the job
    # holding the key).
    return [NewJob(id=new_id(), type="t", data={}, unique_key=new_id())]


def _large() -> list[NewJob]:
    # A large batch goes in with COPY, in a transaction outside pipeline mode.
    return [NewJob(id=new_id(), type="t", data={}) for _ in range(COPY_MIN_BATCH)]


@pytest.mark.parametrize("batch", [_keyed, _large], ids=["pipelined", "copy"])
async def test_an_enqueue_after_a_cancelled_transaction_is_committed(
    make_store: StoreFactory, admin: Admin, schema: str, batch: Callable[[], list[NewJob]]
) -> None:
    # One connection, so the write after the cancellation uses the connection it hit.
    store = make_store(min_pool_size=1, max_pool_size=1)
    await store.init()
    unseen = []
    for turns in list(range(_TURNS)) * _ROUNDS:
        await _cancel_after(turns, functools.partial(store.insert_jobs, batch()))

        plain = NewJob(id=new_id(), type="t", data={})
        [result] = await store.insert_jobs([plain])
        assert result.id == plain.id
        if await _status(admin, schema, plain.id) != "pending":
            unseen.append(turns)
    assert not unseen, f"acknowledged enqueues that another connection did not see: {unseen}"


async def test_a_claim_after_a_cancelled_claim_is_committed(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    jobs = [NewJob(id=new_id(), type="t", data={}) for _ in range(_TURNS * _ROUNDS * 2)]
    await store.insert_jobs(jobs)
    uncommitted = []
    for turns in list(range(_TURNS)) * _ROUNDS:
        # A per-type limit makes the claim a pipelined transaction (its type lock first).
        await _cancel_after(turns, lambda: claim(store, limit=1, types={"t": 1_000}))

        # Without one it is a single statement, as at a worker's default settings (a
        # pipelined one would end the stranded transaction, since its Sync commits it).
        claimed = await claim(store, limit=1, types={"t": None})
        assert len(claimed) == 1
        if await _status(admin, schema, claimed[0].job.id) != "running":
            uncommitted.append(turns)
    assert not uncommitted, f"claims that another connection did not see: {uncommitted}"
