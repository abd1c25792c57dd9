"""Code that the multi-process tests run in child processes (started with `spawn`, so it must
be importable at module level). Each child reports through a queue: `(name, value)`, or
`(name, "error: ...")` when it failed."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Coroutine
from datetime import timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, Completion, NewJob
from timecrisis.storage.sqlite import SQLiteJobStorage

RACE_TYPE = "race"
GUARD_SECONDS = 60


def _report(name: str, results: Queue[tuple[str, Any]], work: Coroutine[Any, Any, object]) -> None:
    try:
        results.put((name, asyncio.run(work)))
    except BaseException:
        results.put((name, f"error: {traceback.format_exc()}"))


def claim_until_empty(
    db: str, name: str, batch: int, start: Barrier, results: Queue[tuple[str, Any]]
) -> None:
    """Claim (and complete) `race` jobs in batches until none is left; report the ids."""
    start.wait(GUARD_SECONDS)  # every process starts claiming at once
    _report(name, results, _claim_until_empty(db, name, batch))


async def _claim_until_empty(db: str, name: str, batch: int) -> list[str]:
    store = SQLiteJobStorage(db)
    params = ClaimParams(
        worker=name, limit=batch, lease_ttl=timedelta(minutes=5), type_limits={RACE_TYPE: None}
    )
    claimed: list[str] = []
    try:
        while claims := await store.claim_jobs(params):
            claimed.extend(claim.job.id for claim in claims)
            await store.complete_jobs([Completion(claim.ref) for claim in claims])
    finally:
        await store.close()
    return claimed


def init_and_insert(db: str, name: str, start: Barrier, results: Queue[tuple[str, Any]]) -> None:
    """Open a (possibly fresh) file at the same moment as the others, then insert one job."""
    start.wait(GUARD_SECONDS)
    _report(name, results, _init_and_insert(db, name))


async def _init_and_insert(db: str, name: str) -> str:
    store = SQLiteJobStorage(db)
    try:
        await store.init()
        [result] = await store.insert_jobs([NewJob(id=new_id(), type="init", data=name)])
    finally:
        await store.close()
    return result.id


def insert_one(db: str, name: str, results: Queue[tuple[str, Any]]) -> None:
    _report(name, results, _insert_one(db))


async def _insert_one(db: str) -> str:
    store = SQLiteJobStorage(db)
    try:
        [result] = await store.insert_jobs([NewJob(id=new_id(), type="remote", data={})])
    finally:
        await store.close()
    return result.id
