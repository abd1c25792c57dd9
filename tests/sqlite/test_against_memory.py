"""Model-based test: the SQLite store behaves exactly like the in-memory reference store.

A hypothesis state machine drives both stores with the same random operations (inserts with
priorities, unique keys, delays and expiries; claims under per-type limits; completions,
failures, releases, cancels and retries, including with stale tokens; clock moves; expiry and
lease recovery) and compares every answer, then every job, run and metric after each step. Both
stores share one `ManualClock`, and backoff is linear, so nothing random separates them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.storage.factories import START
from timecrisis.clock import ManualClock
from timecrisis.models import JobRun
from timecrisis.storage._common import new_id
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    Failure,
    JobQuery,
    JobStorage,
    NewJob,
)
from timecrisis.storage.memory import InMemoryJobStorage
from timecrisis.storage.sqlite import SQLiteJobStorage

T = TypeVar("T")
LEASE = timedelta(seconds=30)
TYPES = ("a", "b")


def _run_shape(run: JobRun) -> tuple[object, ...]:
    """A run without its id (each store makes its own)."""
    return (run.job_id, run.attempt, run.status, run.worker, run.started_at, run.finished_at,
            run.duration, run.progress, run.error)  # fmt: skip


class SQLiteMatchesMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.mkdtemp(prefix="tc-model-")
        self.clock = ManualClock(START)
        self.memory = InMemoryJobStorage(clock=self.clock)
        self.sqlite = SQLiteJobStorage(Path(self.directory) / "model.db", clock=self.clock)
        self.job_ids: list[str] = []
        # Every claim ever made, per store (tokens differ between stores): stale ones included.
        self.claims: list[tuple[ClaimRef, ClaimRef]] = []

    def teardown(self) -> None:
        self._run(self.sqlite.close())
        self._run(self.memory.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def _both(self, call: Any) -> tuple[Any, Any]:
        """`call(store)` on each store; the answers (or the error types) must be equal."""
        answers = []
        for store in (self.memory, self.sqlite):
            try:
                answers.append(self._run(call(store)))
            except Exception as error:
                answers.append(type(error))
        assert answers[0] == answers[1], answers
        return answers[0], answers[1]

    # ---- operations --------------------------------------------------------------------------

    @initialize()
    def some_jobs_are_running(self) -> None:
        """Every run starts with jobs of both types, some of them claimed, so the steps that
        hypothesis draws act on claims from the first one."""
        self.insert([("a", 1, 1, None, None, None), ("b", 0, 0, "k1", None, 90)])
        self.insert([("a", 2, 0, None, None, None), ("b", 1, 2, None, 0, None)])
        self.claim(3, 1)

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.integers(-2, 2),
                st.integers(0, 2),
                st.sampled_from([None, "k1", "k2"]),
                st.sampled_from([None, 0, 20]),
                st.sampled_from([None, 10, 90]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def insert(self, batch: list[tuple[str, int, int, str | None, int | None, int | None]]) -> None:
        jobs = [
            NewJob(
                id=new_id(),
                type=job_type,
                data={"n": len(self.job_ids) + index},
                priority=priority,
                max_retries=retries,
                backoff_strategy="linear",
                retry_delay=5,
                unique_key=key,
                delay=None if delay is None else timedelta(seconds=delay),
                expires_in=None if expires is None else timedelta(seconds=expires),
            )
            for index, (job_type, priority, retries, key, delay, expires) in enumerate(batch)
        ]
        results, _ = self._both(lambda store: store.insert_jobs(jobs))
        self.job_ids += [result.id for result in results if result.created]

    @rule(limit=st.integers(1, 4), a_limit=st.sampled_from([None, 1, 2]))
    def claim(self, limit: int, a_limit: int | None) -> None:
        params = ClaimParams("worker", limit, LEASE, {"a": a_limit, "b": None})
        claimed: list[list[ClaimedJob]] = [
            self._run(store.claim_jobs(params)) for store in (self.memory, self.sqlite)
        ]
        assert [c.job for c in claimed[0]] == [c.job for c in claimed[1]]
        self.claims += [(m.ref, s.ref) for m, s in zip(*claimed, strict=True)]

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), canceled=st.booleans())
    def complete(self, data: st.DataObject, canceled: bool) -> None:
        refs = data.draw(st.sampled_from(self.claims))
        self._pair(
            refs, lambda store, ref: store.complete_jobs([Completion(ref, {"ok": 1}, canceled)])
        )

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        refs = data.draw(st.sampled_from(self.claims))
        self._pair(refs, lambda store, ref: store.fail_job(Failure(ref, "E: x", retryable)))

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        refs = data.draw(st.sampled_from(self.claims))
        self._pair(refs, lambda store, ref: store.release_jobs([ref]))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), percent=st.sampled_from([0.0, 42.5, 100.0]))
    def progress(self, data: st.DataObject, percent: float) -> None:
        refs = data.draw(st.sampled_from(self.claims))
        self._pair(refs, lambda store, ref: store.update_progress(ref, percent))

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        refs = data.draw(st.sampled_from(self.claims))
        self._pair(refs, lambda store, ref: store.renew_claims([ref], LEASE))

    def _pair(self, refs: tuple[ClaimRef, ClaimRef], call: Any) -> None:
        answers = [
            self._run(call(store, ref))
            for store, ref in zip((self.memory, self.sqlite), refs, strict=True)
        ]
        assert answers[0] == answers[1], answers

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        self._both(lambda store: store.cancel_job(job_id))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        self._both(lambda store: store.retry_job(job_id))

    @rule(seconds=st.sampled_from([1, 12, 45]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        self._both(lambda store: store.expire_jobs(100))

    @rule()
    def recover(self) -> None:
        self._both(lambda store: store.recover_expired_leases(100))

    # ---- the states must match -----------------------------------------------------------------

    @invariant()
    def same_jobs_runs_and_metrics(self) -> None:
        self._both(lambda store: store.list_jobs(JobQuery(limit=1000)))
        self._both(lambda store: store.get_metrics())
        for job_id in self.job_ids:
            self._both(lambda store, job_id=job_id: _run_shapes(store, job_id))


async def _run_shapes(store: JobStorage, job_id: str) -> list[tuple[object, ...]]:
    return [_run_shape(run) for run in await store.get_job_runs(job_id)]


SQLiteMatchesMemory.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,  # SQLite commits on a shared machine: time varies, behaviour must not
    suppress_health_check=[HealthCheck.too_slow],
)
# About five seconds: deselect with `-m 'not slow'` for a quick run.
TestSQLiteMatchesMemory = pytest.mark.slow(SQLiteMatchesMemory.TestCase)
