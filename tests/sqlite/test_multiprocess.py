"""Several OS processes on one SQLite file: claims never overlap, a fresh file is migrated once,
and a job inserted by another process wakes this one's listeners.

Children are started with `spawn` (a clean interpreter, as a real worker process would be) and
report through a queue. The waits are guards against a hang, not timing assertions.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pathlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

import pytest

from tests.sqlite import processes
from tests.sqlite.conftest import StoreFactory
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.sqlite._migrate import available_migrations

GUARD_SECONDS = 120


class Children:
    """Child processes that report one value each; killed at teardown if still running."""

    def __init__(self) -> None:
        self.context: SpawnContext = multiprocessing.get_context("spawn")
        self.results = self.context.Queue()
        self._procs: list[SpawnProcess] = []

    def start(self, target: Callable[..., None], *args: Any) -> None:
        proc = self.context.Process(target=target, args=(*args, self.results), daemon=True)
        proc.start()
        self._procs.append(proc)

    def collect(self) -> dict[str, Any]:
        """Every child's report (read before joining: a child cannot exit while its report
        sits unread in a full pipe)."""
        reports = dict(self.results.get(timeout=GUARD_SECONDS) for _ in self._procs)
        for proc in self._procs:
            proc.join(GUARD_SECONDS)
            assert proc.exitcode == 0
        failures = {k: v for k, v in reports.items() if isinstance(v, str) and "error" in v}
        assert not failures, failures
        return reports

    def kill_all(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.results.close()
        self.results.join_thread()


@pytest.fixture
def children() -> Iterator[Children]:
    group = Children()
    try:
        yield group
    finally:
        group.kill_all()


async def test_four_processes_claim_400_jobs_and_each_job_exactly_once(
    make_store: StoreFactory, db_path: pathlib.Path, children: Children
) -> None:
    producer = make_store(clock=None)
    inserted = {
        result.id
        for result in await producer.insert_jobs(
            [NewJob(id=new_id(), type=processes.RACE_TYPE, data={"n": n}) for n in range(400)]
        )
    }
    start = children.context.Barrier(4)
    for index, batch in enumerate((1, 3, 5, 8)):  # different batch sizes interleave more
        children.start(processes.claim_until_empty, str(db_path), f"p{index}", batch, start)

    reports = await asyncio.to_thread(children.collect)

    claims = Counter(job_id for ids in reports.values() for job_id in ids)
    assert [job_id for job_id, times in claims.items() if times > 1] == []
    assert set(claims) == inserted
    runs = sqlite3.connect(db_path)
    try:
        attempts = runs.execute("SELECT count(*), max(attempt) FROM job_runs").fetchone()
    finally:
        runs.close()
    assert attempts == (400, 1)


async def test_processes_opening_a_fresh_file_at_once_migrate_it_once(
    db_path: pathlib.Path, children: Children
) -> None:
    start = children.context.Barrier(4)
    for index in range(4):
        children.start(processes.init_and_insert, str(db_path), f"p{index}", start)

    reports = await asyncio.to_thread(children.collect)

    conn = sqlite3.connect(db_path)
    try:
        migrations = conn.execute("SELECT version, name FROM timecrisis_migrations").fetchall()
        jobs = {row[0] for row in conn.execute("SELECT id FROM jobs WHERE type = 'init'")}
    finally:
        conn.close()
    assert sorted(migrations) == [(m.version, m.name) for m in available_migrations()]
    assert jobs == set(reports.values())


async def test_a_job_inserted_by_another_process_wakes_a_listener_here(
    make_store: StoreFactory, db_path: pathlib.Path, children: Children
) -> None:
    listener_store, other_handle = make_store(), make_store()
    await listener_store.init()
    woken = asyncio.Event()
    unsubscribe = listener_store.add_wakeup_listener(woken.set)
    try:
        # First prove the watcher has its baseline: a write from another connection wakes us.
        # Without this, the child's commit could land before the watcher's first look.
        await other_handle.heartbeat_worker("primer", running=0, is_leader=False)
        await asyncio.wait_for(woken.wait(), GUARD_SECONDS)
        woken.clear()

        children.start(processes.insert_one, str(db_path), "inserter")
        await asyncio.wait_for(woken.wait(), GUARD_SECONDS)
        reports = await asyncio.to_thread(children.collect)
    finally:
        unsubscribe()

    assert await listener_store.get_job(reports["inserter"]) is not None
