"""Model-based test: every store produces exactly the records of the naive reference store.

A hypothesis state machine drives the reference store (`tests/reference_store.py`, the oracle)
and one real store (memory, SQLite or PostgreSQL: one test case each) through the same random
operations: inserts with priorities, unique keys, delays, expiries and both backoffs; claims
under per-type limits; completions, failures of every kind, releases, renewals, progress,
logs, cancels (with terminate), retries, expiry, lease recovery and purges, stale tokens
included; schedules upserted, enabled, deleted and advanced (ticks, duplicates, overlap); worker
heartbeats and pruning; locks; and moves of the shared `ManualClock`. Every answer must be
equal, and after EVERY step the whole records are compared: every known job, its runs and
logs, `list_jobs` pages (with filters and cursors), schedules, due schedules, workers, the
leader lock, metrics, run stats and finished counts.

Only what each store generates itself is normalised: run ids and fencing tokens (mapped from
the real store's to the reference's as each claim hands them out) and lock tokens. Job and
schedule ids are the caller's. Exponential backoff's jitter is pinned to one value for the
test, so both stores compute the same retry time through `decide_failure`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pydantic import BaseModel

from tests.reference_store import ReferenceJobStorage
from tests.storage.conftest import selected_backends
from tests.storage.factories import START
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.models import FailureKind, JobLog, JobRun, JobStatus
from timecrisis.storage._common import new_id
from timecrisis.storage.base import (
    LEADER_LOCK,
    AdvanceResult,
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    Failure,
    JobQuery,
    JobStorage,
    NewJob,
    NewLogEntry,
    PurgeParams,
    ScheduleAdvance,
    ScheduleSpec,
)

T = TypeVar("T")
TYPES = ("a", "b")
WORKERS = ("w1", "w2")
SCHEDULES = ("s1", "s2")
KEYS = (None, "k1", "k2")
CONCURRENCY_KEYS = (None, "c1", "c2")  # flow control: some claims limit type a's keys to 1
QUEUES = ("default", "q1")  # flow control: claims serve some of them; a type or queue pauses
SERVED = (None, frozenset({"q1"}), frozenset(QUEUES))
PAUSABLE = ("a", "q1")
TTLS = (timedelta(seconds=30), timedelta(seconds=90))  # leases and locks
WORKER_TTLS = (timedelta(seconds=5), timedelta(seconds=30))  # shorter: pruned with jobs held
# Sub-second steps (every store must keep microseconds exactly), steps that land exactly on a
# lease, TTL, delay or backoff boundary (5, 10, 30), and long ones.
CLOCK_STEPS = (0.000001, 0.25, 1, 5, 10, 30, 31, 45, 95, 3600)
RARELY = st.sampled_from([False, False, False, True])
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


class _FixedJitter:
    """Stands in for `random` in `timecrisis.retry`: every exponential retry gets the same
    jitter on every store, so retry times compare exactly."""

    def random(self) -> float:
        return 0.5


Answer = Any  # what a store call returned, or the type of the exception it raised


class StoresAgree(RuleBasedStateMachine):
    backend: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.mkdtemp(prefix="tc-model-")
        self.clock = ManualClock(START)
        self.jitter = mock.patch("timecrisis.retry.random", _FixedJitter())
        self.jitter.start()
        module = importlib.import_module(f"tests.storage.backend_{self.backend}")
        self.harness: StoreHarness = module.make_harness(Path(self.directory), self.clock)
        self.reference = ReferenceJobStorage(clock=self.clock)
        self.real: JobStorage = self._run(self.harness.open())
        self.job_ids: list[str] = []
        # Every claim ever made, as (reference ref, real ref): stale ones stay, to be retried.
        self.claims: list[tuple[ClaimRef, ClaimRef]] = []
        self.lock_tokens: list[tuple[str | None, str | None]] = []
        # What the real store generated -> what the reference generated in its place.
        self.same_id: dict[str, str] = {}

    def teardown(self) -> None:
        try:
            self._run(self.harness.aclose())
            self._run(self.reference.close())
        finally:
            self.jitter.stop()
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def _answer(self, call: Awaitable[Any]) -> Answer:
        async def attempt() -> Answer:
            try:
                return await call
            except Exception as error:  # both stores must raise the same type
                return type(error)

        return self._run(attempt())

    def _agree(self, call: Callable[[JobStorage], Awaitable[Any]]) -> Answer:
        """`call` on both stores; the answers must be equal (after mapping generated ids)."""
        expected = self._answer(call(self.reference))
        actual = self._answer(call(self.real))
        _assert_same(self._as_reference(actual), expected)
        return expected

    def _agree_on_reads(self, reads: list[Callable[[JobStorage], Awaitable[Any]]]) -> None:
        """Read-only calls, all at once on each store (a pool serves them side by side)."""

        async def read_all(store: JobStorage) -> list[Answer]:
            async def attempt(read: Callable[[JobStorage], Awaitable[Any]]) -> Answer:
                try:
                    return await read(store)
                except Exception as error:
                    return type(error)

            return list(await asyncio.gather(*(attempt(read) for read in reads)))

        expected = self._run(read_all(self.reference))
        actual = self._run(read_all(self.real))
        for mine, theirs in zip(expected, actual, strict=True):
            _assert_same(self._as_reference(theirs), mine)

    def _agree_on_claim(self, pair: tuple[ClaimRef, ClaimRef], call: Any) -> Answer:
        expected = self._answer(call(self.reference, pair[0]))
        actual = self._answer(call(self.real, pair[1]))
        _assert_same(self._as_reference(actual), expected)
        return expected

    def _as_reference(self, value: Any) -> Any:
        """`value` from the real store with the ids it generated replaced by the reference's."""
        if isinstance(value, list):
            return [self._as_reference(item) for item in value]
        if isinstance(value, JobRun):
            return value.model_copy(update={"id": self.same_id.get(value.id, value.id)})
        if isinstance(value, JobLog) and value.run_id is not None:
            return value.model_copy(update={"run_id": self.same_id.get(value.run_id)})
        if isinstance(value, ClaimedJob):
            return dataclasses.replace(
                value,
                token=self.same_id.get(value.token, value.token),
                run_id=self.same_id.get(value.run_id, value.run_id),
            )
        return value

    # ---- jobs --------------------------------------------------------------------------------

    @initialize()
    def some_jobs_are_running(self) -> None:
        """Every run starts with jobs of both types, some claimed, so the first steps that
        hypothesis draws already act on claims."""
        self.insert(
            [
                ("a", 1, 1, None, None, None, "linear", "default", "c1"),
                ("b", 0, 0, "k1", None, 90, "linear", "q1", None),
            ]
        )
        self.insert(
            [
                ("a", 2, 2, None, None, None, "exponential", "q1", "c1"),
                ("b", 1, 2, None, 0, None, "linear", "default", None),
            ]
        )
        self.claim("w1", 3, 1, 0, None, True)
        self.heartbeat("w1", 1, True, 0)
        self.upsert_schedule("s1", "1h", 0, None, True, 1, 0)
        self.upsert_schedule("s2", "30m", 1, None, False, 2, 60)

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.integers(-2, 2),  # priority
                st.integers(0, 2),  # max_retries
                st.sampled_from(KEYS),
                st.sampled_from([None, 0, 20]),  # delay
                st.sampled_from([None, 10, 90]),  # expires_in
                st.sampled_from(["linear", "exponential"]),
                st.sampled_from(QUEUES),
                st.sampled_from(CONCURRENCY_KEYS),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def insert(
        self,
        batch: list[tuple[str, int, int, str | None, int | None, int | None, Any, str, str | None]],
    ) -> None:
        jobs = [
            NewJob(
                id=new_id(),
                type=job_type,
                data={"n": len(self.job_ids) + index, "tags": ["x", None, 1.5]},
                priority=priority,
                max_retries=retries,
                backoff_strategy=backoff,
                retry_delay=5,
                max_retry_delay=60,
                entity_id=f"e{index % 2}",
                unique_key=key,
                delay=None if delay is None else timedelta(seconds=delay),
                expires_in=None if expires is None else timedelta(seconds=expires),
                queue=queue,
                concurrency_key=concurrency_key,
            )
            for index, (
                job_type, priority, retries, key, delay, expires, backoff, queue, concurrency_key
            ) in enumerate(batch)
        ]  # fmt: skip
        self._agree(lambda store: store.insert_jobs(jobs))
        self.job_ids += [job.id for job in jobs]

    @rule(
        worker=st.sampled_from(WORKERS),
        limit=st.integers(1, 4),
        a_limit=st.sampled_from([None, 1, 2]),
        ttl=st.integers(0, 1),
        queues=st.sampled_from(SERVED),
        keyed=st.booleans(),
    )
    def claim(
        self,
        worker: str,
        limit: int,
        a_limit: int | None,
        ttl: int,
        queues: frozenset[str] | None,
        keyed: bool,
    ) -> None:
        # Flow control composed: queues served, pauses, and type a's concurrency keys.
        params = ClaimParams(
            worker,
            limit,
            TTLS[ttl],
            {"a": a_limit, "b": None},
            key_limits={"a": 1} if keyed else {},
            queues=queues,
        )
        expected = self._answer(self.reference.claim_jobs(params))
        actual = self._answer(self.real.claim_jobs(params))
        assert [c.job for c in actual] == [c.job for c in expected]
        for mine, theirs in zip(expected, actual, strict=True):
            self.same_id[theirs.token] = mine.token
            self.same_id[theirs.run_id] = mine.run_id
            self.claims.append((mine.ref, theirs.ref))
        _assert_same(self._as_reference(actual), expected)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), canceled=st.booleans())
    def complete(self, data: st.DataObject, canceled: bool) -> None:
        pair = data.draw(st.sampled_from(self.claims))
        self._agree_on_claim(
            pair, lambda store, ref: store.complete_jobs([Completion(ref, {"ok": [1]}, canceled)])
        )

    @precondition(lambda self: self.claims)
    @rule(
        data=st.data(),
        retryable=st.booleans(),
        kind=st.sampled_from(
            [
                FailureKind.ERROR,
                FailureKind.TIMEOUT,
                FailureKind.CRASHED,
                FailureKind.NON_RETRYABLE,
                FailureKind.CANCELED,
            ]
        ),
        traceback=st.sampled_from([None, "Traceback (most recent call last):\n  boom\n"]),
    )
    def fail(
        self, data: st.DataObject, retryable: bool, kind: FailureKind, traceback: str | None
    ) -> None:
        pair = data.draw(st.sampled_from(self.claims))
        self._agree_on_claim(
            pair,
            lambda store, ref: store.fail_job(Failure(ref, "E: x", retryable, kind, traceback)),
        )

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pair = data.draw(st.sampled_from(self.claims))
        self._agree_on_claim(pair, lambda store, ref: store.release_jobs([ref]))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), percent=st.sampled_from([0.0, 42.5, 100.0]))
    def progress(self, data: st.DataObject, percent: float) -> None:
        pair = data.draw(st.sampled_from(self.claims))
        self._agree_on_claim(pair, lambda store, ref: store.update_progress(ref, percent))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), ttl=st.integers(0, 1))
    def renew(self, data: st.DataObject, ttl: int) -> None:
        pair = data.draw(st.sampled_from(self.claims))
        self._agree_on_claim(pair, lambda store, ref: store.renew_claims([ref], TTLS[ttl]))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), with_run=st.booleans())
    def log(self, data: st.DataObject, with_run: bool) -> None:
        pair = data.draw(st.sampled_from(self.claims))

        def entries(ref: ClaimRef) -> list[NewLogEntry]:
            run_id = ref.run_id if with_run else None
            return [
                NewLogEntry(ref.job_id, run_id, "info", "step", {"i": [1, "2"]}),
                NewLogEntry(ref.job_id, run_id, "warn", "again"),
            ]

        self._agree_on_claim(pair, lambda store, ref: store.append_logs(entries(ref)))

    def _some_job(self, data: st.DataObject) -> str:
        """Any known job, or, as often, one that was claimed (the interesting ones)."""
        claimed = [ref.job_id for ref, _ in self.claims]
        return data.draw(st.sampled_from(self.job_ids) | st.sampled_from(claimed or self.job_ids))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), terminate=st.booleans())
    def cancel(self, data: st.DataObject, terminate: bool) -> None:
        job_id = self._some_job(data)
        self._agree(lambda store: store.cancel_job(job_id, terminate=terminate))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = self._some_job(data)
        self._agree(lambda store: store.retry_job(job_id))

    @rule(name=st.sampled_from(PAUSABLE), paused=st.booleans())
    def pause_or_resume(self, name: str, paused: bool) -> None:
        self._agree(lambda store: store.pause(name) if paused else store.resume(name))
        self._agree(lambda store: store.list_paused())

    @rule(seconds=st.sampled_from(CLOCK_STEPS))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(limit=st.sampled_from([1, 100]))
    def expire(self, limit: int) -> None:
        self._agree(lambda store: store.expire_jobs(limit))

    @rule(limit=st.sampled_from([1, 100]))
    def recover(self, limit: int) -> None:
        self._agree(lambda store: store.recover_expired_leases(limit))

    @rule(
        statuses=st.sets(st.sampled_from(FINISHED), min_size=1),
        older_than=st.sampled_from([0, 30]),
        limit=st.sampled_from([None, 1]),
    )
    def purge(self, statuses: set[JobStatus], older_than: int, limit: int | None) -> None:
        params = PurgeParams(frozenset(statuses), timedelta(seconds=older_than), limit)
        self._agree(lambda store: store.purge_jobs(params))

    # ---- schedules ---------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(SCHEDULES),
        value=st.sampled_from(["1h", "60m", "30m"]),
        n=st.integers(0, 1),
        enabled=st.sampled_from([None, True, False]),
        allow_overlap=st.booleans(),
        priority=st.integers(0, 3),
        starts_in=st.sampled_from([None, 0, 60]),
    )
    def upsert_schedule(
        self,
        name: str,
        value: str,
        n: int,
        enabled: bool | None,
        allow_overlap: bool,
        priority: int,
        starts_in: int | None,
    ) -> None:
        spec = ScheduleSpec(
            name=name,
            type="a",
            data={"n": n},
            schedule_type="interval",
            schedule_value=value,
            time_zone=None,
            next_run_at=None
            if starts_in is None
            else self.clock.now() + timedelta(seconds=starts_in),
            enabled=enabled,
            allow_overlap=allow_overlap,
            id=f"id-{name}",  # the caller's id: both stores name the schedule alike
            priority=priority,
            max_retries=1,
            backoff_strategy="linear",
            retry_delay=3,
        )
        self._agree(lambda store: store.upsert_schedule(spec))

    @rule(name=st.sampled_from(SCHEDULES), enabled=st.booleans())
    def enable_schedule(self, name: str, enabled: bool) -> None:
        self._agree(lambda store: store.set_schedule_enabled(name, enabled))

    @rule(name=st.sampled_from(SCHEDULES))
    def delete_schedule(self, name: str) -> None:
        self._agree(lambda store: store.delete_schedule(name))

    @rule(
        name=st.sampled_from(SCHEDULES),
        stale=RARELY,
        fire=st.sampled_from([True, True, True, False]),
        same_tick=RARELY,
        finished=RARELY,
    )
    def advance_schedule(
        self, name: str, stale: bool, fire: bool, same_tick: bool, finished: bool
    ) -> None:
        schedule = self._run(self.reference.get_schedule(name))
        if schedule is None or schedule.next_run_at is None:
            event("advance_schedule: nothing to advance")
            return
        due = schedule.next_run_at
        expected = due + timedelta(seconds=1) if stale else due
        # `same_tick`: name the previous tick again, which a store must refuse as a duplicate.
        fire_at = schedule.last_scheduled_at if same_tick and schedule.last_scheduled_at else due
        job = NewJob(
            id=new_id(), type=schedule.type, data=schedule.data, priority=schedule.priority,
            max_retries=schedule.max_retries, backoff_strategy=schedule.backoff_strategy,
            scheduled_job_id=schedule.id, schedule_fire_at=fire_at,
        )  # fmt: skip
        advance = ScheduleAdvance(
            schedule_id=schedule.id,
            expected_next_run_at=expected,
            next_run_at=None if finished else due + timedelta(hours=1),
            disable=finished,
            job=job if fire else None,
            allow_overlap=schedule.allow_overlap,
        )
        result = self._agree(lambda store: store.advance_schedule(advance))
        if isinstance(result, AdvanceResult):
            fired = "skipped (overlap)" if result.skipped_overlap else f"job={bool(result.job_id)}"
            event(f"advance_schedule: advanced={result.advanced} {fired}")
        self.job_ids.append(job.id)

    # ---- workers and locks -------------------------------------------------------------------

    @rule(
        worker=st.sampled_from(WORKERS),
        running=st.integers(0, 3),
        leader=st.booleans(),
        ttl=st.integers(0, 1),
    )
    def heartbeat(self, worker: str, running: int, leader: bool, ttl: int) -> None:
        self._agree(
            lambda store: store.heartbeat_worker(
                worker, running=running, is_leader=leader, ttl=WORKER_TTLS[ttl]
            )
        )

    @rule()
    def prune_workers(self) -> None:
        self._agree(lambda store: store.prune_workers())

    @rule(worker=st.sampled_from(WORKERS))
    def remove_worker(self, worker: str) -> None:
        self._agree(lambda store: store.remove_worker(worker))

    @rule(owner=st.sampled_from(WORKERS), ttl=st.integers(0, 1))
    def acquire_lock(self, owner: str, ttl: int) -> None:
        mine = self._answer(self.reference.acquire_lock(LEADER_LOCK, owner, TTLS[ttl]))
        theirs = self._answer(self.real.acquire_lock(LEADER_LOCK, owner, TTLS[ttl]))
        assert (mine is None) == (theirs is None), (mine, theirs)
        self.lock_tokens.append((mine, theirs))

    @precondition(lambda self: self.lock_tokens)
    @rule(data=st.data(), renew=st.booleans(), ttl=st.integers(0, 1))
    def use_lock(self, data: st.DataObject, renew: bool, ttl: int) -> None:
        mine, theirs = data.draw(st.sampled_from(self.lock_tokens))
        calls = [
            store.renew_lock(LEADER_LOCK, token or "none", TTLS[ttl])
            if renew
            else store.release_lock(LEADER_LOCK, token or "none")
            for store, token in ((self.reference, mine), (self.real, theirs))
        ]
        expected, actual = (self._answer(call) for call in calls)
        assert actual == expected

    # ---- after every step: the whole state ---------------------------------------------------

    @invariant()
    def every_record_is_the_same(self) -> None:
        reads: list[Callable[[JobStorage], Awaitable[Any]]] = [
            lambda store: store.list_schedules(),
            lambda store: store.get_due_schedules(100),
            lambda store: store.list_workers(),
            lambda store: store.get_metrics(),
            lambda store: store.get_run_stats(),
            lambda store: store.count_finished_jobs(START, timedelta(seconds=60)),
            lambda store: store.get_lock(LEADER_LOCK),
        ]
        for job_id in self.job_ids:
            reads += _reads_of_job(job_id)
        self._agree_on_reads(reads)

    @invariant()
    def every_page_is_the_same(self) -> None:
        for query in (
            JobQuery(limit=1000),
            JobQuery(status=JobStatus.PENDING, limit=1000),
            JobQuery(type="b", entity_id="e1", limit=1000),
            JobQuery(dead_lettered=True, limit=1000),
        ):
            self._agree(_listing(query))
        # Pages of three, each after the last id of the previous one, to the end.
        cursor: str | None = None
        while True:
            page = self._agree(_listing(JobQuery(limit=3, cursor=cursor)))
            if len(page) < 3:
                break
            cursor = page[-1].id


Read = Callable[[JobStorage], Awaitable[Any]]


def _reads_of_job(job_id: str) -> list[Read]:
    async def job(store: JobStorage) -> Any:
        return await store.get_job(job_id)

    async def runs(store: JobStorage) -> Any:
        return await store.get_job_runs(job_id)

    async def logs(store: JobStorage) -> Any:
        return await store.get_job_logs(job_id)

    return [job, runs, logs]


def _listing(query: JobQuery) -> Read:
    async def page(store: JobStorage) -> Any:
        return await store.list_jobs(query)

    return page


def _differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where two answers differ, field by field, so a failure names the field."""
    if type(actual) is not type(expected):
        return [f"{path or 'answer'}: {actual!r} (store) != {expected!r} (reference)"]
    if isinstance(actual, list) and len(actual) == len(expected):
        return [
            d
            for i, pair in enumerate(zip(actual, expected, strict=True))
            for d in _differences(*pair, f"{path}[{i}]")
        ]
    fields: dict[str, Any] | None = None
    if isinstance(actual, BaseModel):
        fields = dict(actual)
    elif dataclasses.is_dataclass(actual) and not isinstance(actual, type):
        fields = {f.name: getattr(actual, f.name) for f in dataclasses.fields(actual)}
    if fields is not None:
        return [
            d
            for name in fields
            for d in _differences(fields[name], getattr(expected, name), f"{path}.{name}")
        ]
    if actual != expected:
        return [f"{path or 'answer'}: {actual!r} (store) != {expected!r} (reference)"]
    return []


def _assert_same(actual: Any, expected: Any) -> None:
    assert actual == expected, "\n".join(_differences(actual, expected)) or (actual, expected)


def _test_case(backend: str) -> Any:
    machine: Any = type(
        f"{backend.title()}AgreesWithTheReference", (StoresAgree,), {"backend": backend}
    )
    case = machine.TestCase
    case.settings = settings(
        max_examples=EXAMPLES[backend],
        stateful_step_count=STEPS,
        deadline=None,  # SQL stores on a shared machine: time varies, behaviour must not
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    marks = [pytest.mark.slow] + ([pytest.mark.postgres] if backend == "postgres" else [])
    for mark in marks:
        case = mark(case)
    return case


STEPS = 40
# PostgreSQL once averaged float seconds in SQL and differed in the last digit
# (22.500002000000002 vs 22.500002); every store now sums whole microseconds
# (`_common.average_seconds`). Fewer PostgreSQL examples only because each step costs more there.
EXAMPLES = {"memory": 100, "sqlite": 50, "postgres": 30}
_REAL = [name for name in selected_backends() if name != "reference"]
TestMemoryAgrees = _test_case("memory") if "memory" in _REAL else None
TestSQLiteAgrees = _test_case("sqlite") if "sqlite" in _REAL else None
TestPostgresAgrees = _test_case("postgres") if "postgres" in _REAL else None
