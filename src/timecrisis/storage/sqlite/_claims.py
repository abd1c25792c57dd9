"""The claim lifecycle: claim, renew, complete, fail, release, progress, and the reaper's
recovery of expired leases. Each function is the body of one `BEGIN IMMEDIATE` transaction.

**Fencing.** Everything a claim allows first reads the job's current claim (`lock_token`,
status `running`) and acts only when the caller's token matches; a stale token changes nothing
and is reported as such. SQLite has one writer at a time and we hold the write lock from the
first statement, so nothing can change between that read and the write that follows.

**The claim is one UPDATE.** Per-type limits are cluster-wide, so the transaction first counts
the running jobs of each limited type, giving each claimable type a quota (its free slots,
capped by the claim's limit). Then one statement claims:

    UPDATE jobs SET status = 'running', ... WHERE seq IN (
        SELECT seq FROM (<head of type A's queue, LIMIT quota A>
                         UNION ALL <head of type B's queue, LIMIT quota B> ...)
        ORDER BY priority DESC, seq LIMIT <limit>)
    RETURNING ...

Each arm reads its type's queue head from the partial index (type, priority DESC, seq) and stops
at its quota, so a type can never exceed its limit, a type at its limit has no arm at all (it is
never scanned, so a full type with a huge backlog costs nothing and never blocks the others),
and the merge keeps global priority-then-enqueue order. This reaches what a "claim, find a type
full part-way, exclude it and select again" loop reaches, without the loop. Fresh tokens and
run ids come from `timecrisis_new_id()` (our `new_id`, registered on the connection) inside the
UPDATE, and the runs are inserted with one `executemany`: three statements whatever the batch.

**Flow control** (docs/flow-control.md, `_Scope`) picks the arm, each a named query: a claim of
every queue reads `claim_queue_head`; a worker of named queues reads one `claim_named_queue_head`
per (type, queue), merged per type within its quota (`claim_named_queues_head`), and so does a
claim of every queue while anything is paused, over the queues that hold pending jobs of its
types (`_pending_queues`), unless they are more than `MAX_OPEN_QUEUES`: then it reads
`claim_queue_head_skipping_paused`. A paused type gets no arm at all. A
type that limits its concurrency keys reads the `_keyed` form of its scope's arm, which passes
over a job whose key is full (running, or taken ahead of it by this claim). Rate limits cap a
type's quota before the statement is built (`_rate_rooms`).

**Delayed jobs** (migration 11) wait outside the queue indexes, flagged `waiting`, until a claim
finds them due: its first statement (`promote_due`) clears the flag of every due one, so each
arm reads due jobs only, in exact claim order, however many delayed jobs wait ahead of them.

**Batches** (`complete_jobs`, `release_jobs`, `renew_claims`) read the current claims of the
whole batch with one `IN` query, then write with `executemany`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from timecrisis.models import BackoffStrategy, FailureKind, Job
from timecrisis.rate_limits import RateLimit
from timecrisis.storage._common import decide_failure, dump_json, lease_expired_error
from timecrisis.storage._queries import load_queries
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    RenewResult,
)
from timecrisis.storage.sqlite import _counts as counts
from timecrisis.storage.sqlite._rows import (
    JOB_COLUMN_COUNT,
    JOB_COLUMNS,
    from_us,
    job_from_row,
    json_array,
    opt_dt,
    to_us,
)

Q = load_queries("timecrisis.storage.sqlite")

# ---- claim -----------------------------------------------------------------------------------

_PRIORITY = JOB_COLUMNS.split(", ").index("priority")
_SEQ = JOB_COLUMN_COUNT  # RETURNING {JOB_COLUMNS}, seq, lock_token, run_id
_TOKEN = JOB_COLUMN_COUNT + 1
_RUN_ID = JOB_COLUMN_COUNT + 2

# SQLite allows 500 terms in a compound SELECT; past this many claimable types, candidates are
# gathered in slices first (see `_candidates`).
MAX_ARMS = 200


@dataclass(frozen=True, slots=True)
class _Scope:
    """Flow control (docs/flow-control.md): which queues a claim reads, decided inside its
    write transaction (nobody can pause or resume between this read and the claim).

    `queues`: the served queues that are not paused, one head each per type; None for a claim
    of every queue, which reads each type's head and steps over the `paused` queues' jobs.
    While anything is paused, a claim of every queue reads the heads of the queues that hold
    pending jobs of its types instead (`open_queues`): stepping over a paused queue's jobs one
    by one cost every claim 20,000 rows with 20,000 of them at the head of their type. Past
    `MAX_OPEN_QUEUES` such queues (a queue per tenant, say) it steps over them again: a head
    per queue would then cost more than the paused backlog it saves."""

    queues: tuple[str, ...] | None
    paused: tuple[str, ...]

    @classmethod
    def read(cls, conn: sqlite3.Connection, served: frozenset[str] | None) -> _Scope:
        paused = tuple(name for (name,) in conn.execute(Q["list_paused"]))
        if served is None:
            return cls(None, paused)
        return cls(tuple(sorted(served.difference(paused))), paused)

    def open_queues(self, conn: sqlite3.Connection, types: Sequence[str]) -> _Scope:
        """This scope for a claim of `types`, as named queues while anything is paused."""
        if self.queues is not None or not self.paused:
            return self
        found: set[str] = set()
        for job_type in types:
            found.update(_pending_queues(conn, job_type, MAX_OPEN_QUEUES + 1 - len(found)))
            if len(found) > MAX_OPEN_QUEUES:
                return self
        return _Scope(tuple(sorted(found.difference(self.paused))), self.paused)

    @property
    def max_arms(self) -> int:
        """Types per statement: `MAX_ARMS` heads in all, however many queues each type has."""
        return max(1, MAX_ARMS // len(self.queues)) if self.queues else MAX_ARMS

    def arm(self, keyed: bool) -> tuple[str, int]:
        """The named query of one type's head in this scope (its `_keyed` form for a type that
        limits its concurrency keys), and the number of queues it merges (`_type_head`)."""
        if self.queues is not None:
            named = "claim_named_queue_head_keyed" if keyed else "claim_named_queue_head"
            return (named, len(self.queues))
        if self.paused:
            if keyed:
                return ("claim_queue_head_keyed_skipping_paused", 1)
            return ("claim_queue_head_skipping_paused", 1)
        return ("claim_queue_head_keyed" if keyed else "claim_queue_head", 1)

    def arm_args(
        self, job_type: str, quota: int, now_us: int, key_cap: int | None = None
    ) -> list[Any]:
        """The args of `arm(key_cap is not None)` for one type, in the order queries.sql
        gives them."""
        keys: list[Any]
        if self.queues is None:
            paused = [json_array(self.paused)] if self.paused else []
            keys = [] if key_cap is None else [now_us, now_us, *paused, key_cap, key_cap]
            return [job_type, now_us, now_us, *paused, *keys, quota]
        read = json_array(self.queues)
        keys = [] if key_cap is None else [now_us, now_us, read, key_cap, key_cap]
        heads = [a for q in self.queues for a in (job_type, q, now_us, now_us, *keys, quota)]
        return heads if len(self.queues) == 1 else [*heads, quota]


# A claim of every queue reads at most this many queue heads while anything is paused (see
# `_Scope`); past it, it steps over the paused queues' jobs in each type's head.
MAX_OPEN_QUEUES = 16


def _pending_queues(conn: sqlite3.Connection, job_type: str, most: int) -> list[str]:
    """Up to `most` of the queues that hold pending jobs of `job_type`, skipping through
    jobs_pending_by_queue one queue at a time (a loose index scan: one probe per queue,
    however many jobs each holds)."""
    queues: list[str] = []
    row = conn.execute(Q["first_pending_queue"], (job_type,)).fetchone()
    while row is not None and len(queues) < most:
        queues.append(row[0])
        row = conn.execute(Q["next_pending_queue"], (job_type, row[0])).fetchone()
    return queues


def _arms(
    scope: _Scope, params: ClaimParams, quotas: Sequence[tuple[str, int]], now_us: int
) -> tuple[tuple[tuple[str, int], ...], list[Any]]:
    """Each type's arm in this scope (keyed when it limits its keys), and all their args."""
    arms: list[tuple[str, int]] = []
    args: list[Any] = []
    for job_type, quota in quotas:
        key_cap = params.key_limits.get(job_type)
        arms.append(scope.arm(key_cap is not None))
        args += scope.arm_args(job_type, quota, now_us, key_cap)
    return tuple(arms), args


def _splice(statement: str, block: str, copies: Sequence[str]) -> str:
    """`statement` with its one `block` replaced by `copies`, UNION ALL."""
    if statement.count(block) != 1:  # pragma: no cover - a queries.sql edit out of step
        raise AssertionError("queries.sql: a claim statement must hold its arm exactly once")
    return statement.replace(block, "\nUNION ALL\n".join(copies))


# The named query that merges several named-queue heads of one type, by the head it repeats.
_MERGED_QUEUE_HEADS = {
    "claim_named_queue_head": "claim_named_queues_head",
    "claim_named_queue_head_keyed": "claim_named_queues_head_keyed",
}


@functools.lru_cache(maxsize=64)
def _type_head(arm: str, queues: int) -> str:
    """One type's claimable head: the named query `arm`, or, over several named queues, one
    `arm` per queue merged within the type's quota (`_MERGED_QUEUE_HEADS`)."""
    if queues == 1:
        return Q[arm]
    head = Q[arm]
    return _splice(Q[_MERGED_QUEUE_HEADS[arm]], head, [head] * queues)


@functools.lru_cache(maxsize=128)
def _merge_heads(name: str, arms: tuple[tuple[str, int], ...]) -> str:
    """Statement `name` of queries.sql with its one queue-head arm (`claim_queue_head`) replaced
    by one arm per type, UNION ALL (`_Scope.arm` of each; args: per arm `_Scope.arm_args`).
    The only SQL assembled at run time in the claim: SQLite has no LATERAL join, so one index
    range per type of a list needs one arm per type; a statement text per arm pattern keeps
    the statement cache warm. Every piece is a named query."""
    return _splice(Q[name], Q["claim_queue_head"], [_type_head(*arm) for arm in arms])


def claim_jobs(conn: sqlite3.Connection, params: ClaimParams, now: datetime) -> list[ClaimedJob]:
    if params.limit <= 0:
        return []
    now_us = to_us(now)
    # Delayed jobs wait outside the queue indexes until due (migration 11); the due ones join
    # them here, at their place in claim order, before anything is read.
    conn.execute(Q["promote_due"], (now_us,))
    scope = _Scope.read(conn, params.queues)
    if scope.queues == ():  # flow control: every served queue is paused
        return []
    # Flow control: a paused type gets no arm, so its backlog is never read.
    quotas = [quota for quota in _quotas(conn, params) if quota[0] not in scope.paused]
    rates = _rate_rooms(conn, params, now_us) if params.rate_limits else {}
    if rates:  # flow control: a full rate-limit window caps its type like a full limit
        quotas = [(t, min(q, rates[t][0]) if t in rates else q) for t, q in quotas]
        quotas = [(t, q) for t, q in quotas if q > 0]
    if not quotas:
        return []
    scope = scope.open_queues(conn, [job_type for job_type, _ in quotas])
    if scope.queues == ():  # flow control: only paused queues hold jobs of these types
        return []
    lease_expires_at = now + params.lease_ttl
    head = [now_us, params.worker, to_us(lease_expires_at)]
    if len(quotas) <= scope.max_arms:
        arms, args = _arms(scope, params, quotas, now_us)
        sql = _merge_heads("claim_jobs", arms)
        rows = conn.execute(sql, [*head, *args, params.limit]).fetchall()
    else:
        seqs = _candidates(conn, params, quotas, now_us, scope)
        if not seqs:
            return []
        rows = conn.execute(Q["claim_jobs_by_seq"], [*head, json_array(seqs)]).fetchall()
    # RETURNING comes in no promised order; callers get the claim order.
    rows.sort(key=lambda row: (-row[_PRIORITY], row[_SEQ]))
    claimed = [
        ClaimedJob(job_from_row(row), row[_TOKEN], row[_RUN_ID], lease_expires_at) for row in rows
    ]
    conn.executemany(
        Q["insert_run"],
        [(c.run_id, c.job.id, c.job.type, c.job.attempts, params.worker, now_us) for c in claimed],
    )
    deltas = counts.Deltas()
    for c in claimed:
        deltas.job_moved(c.job.type, c.job.queue, "pending", "running")
        deltas.run_started(c.job.type, c.job.attempts)
    deltas.write(conn)
    if rates:
        _record_starts(conn, params, rates, claimed, now_us)
    return claimed


# ---- flow control: rate limits ----------------------------------------------------------------
# One row of `rate_limit_starts` per claim of a rate-limited type; queries.sql (its "flow
# control" section) explains the numbering that makes a window's count two index probes. The
# read of a window and the write of the claim's starts are safe apart: the whole claim holds
# SQLite's write lock, so no other claim can start in between.


def _span_us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _rate_window(conn: sqlite3.Connection, job_type: str, window_start_us: int) -> tuple[int, int]:
    """(the number of the type's next start, the number of its oldest start still inside the
    window that began at `window_start_us`; the next start's when none is)."""
    next_start, oldest = conn.execute(
        Q["rate_window"], (job_type, job_type, window_start_us)
    ).fetchone()
    next_start = next_start or 0
    return next_start, next_start if oldest is None else oldest


def _rate_rooms(
    conn: sqlite3.Connection, params: ClaimParams, now_us: int
) -> dict[str, tuple[int, int]]:
    """type -> (how many claims its window allows now, the number of its next start)."""
    rooms: dict[str, tuple[int, int]] = {}
    for job_type, rate in params.rate_limits.items():
        if job_type in params.type_limits:
            next_start, oldest = _rate_window(conn, job_type, now_us - _span_us(rate.window))
            rooms[job_type] = (max(0, rate.limit - (next_start - oldest)), next_start)
    return rooms


def _record_starts(
    conn: sqlite3.Connection,
    params: ClaimParams,
    rates: dict[str, tuple[int, int]],
    claimed: Sequence[ClaimedJob],
    now_us: int,
) -> None:
    starts = Counter(c.job.type for c in claimed if c.job.type in rates)
    conn.executemany(
        Q["record_rate_starts"],
        [(t, rates[t][1], count, now_us) for t, count in starts.items()],
    )
    conn.executemany(
        Q["prune_rate_starts"],
        [(t, now_us - _span_us(params.rate_limits[t].window)) for t in starts],
    )


def rate_limit_free_at(
    conn: sqlite3.Connection, rate_limits: Mapping[str, RateLimit], now: datetime
) -> datetime | None:
    """When the first of these types whose window is full at `now` has room again: the time
    its start `limit` places before the next one leaves the window."""
    now_us = to_us(now)
    frees: list[int] = []
    for job_type, rate in rate_limits.items():
        window_us = _span_us(rate.window)
        next_start, oldest = _rate_window(conn, job_type, now_us - window_us)
        if next_start - oldest < rate.limit:
            continue
        (started_at,) = conn.execute(
            Q["rate_limit_free_at"], (job_type, next_start - rate.limit)
        ).fetchone()
        frees.append(started_at + window_us)
    return from_us(min(frees)) if frees else None


def _quotas(conn: sqlite3.Connection, params: ClaimParams) -> list[tuple[str, int]]:
    """(type, how many jobs of it this claim may take), for every type with a free slot."""
    limited = [job_type for job_type, cap in params.type_limits.items() if cap is not None]
    running: dict[str, int] = dict(
        conn.execute(Q["quotas_running"], (json_array(limited),)).fetchall()
    )
    quotas = []
    for job_type, cap in params.type_limits.items():
        free = params.limit if cap is None else min(params.limit, cap - running.get(job_type, 0))
        if free > 0:
            quotas.append((job_type, free))
    return quotas


def _candidates(
    conn: sqlite3.Connection,
    params: ClaimParams,
    quotas: Sequence[tuple[str, int]],
    now_us: int,
    scope: _Scope,
) -> list[int]:
    """The `limit` best queue heads over more types than one statement can merge: each slice's
    best `limit` (within quotas), then the best `limit` of those."""
    limit = params.limit
    found: list[tuple[int, int]] = []
    for start in range(0, len(quotas), scope.max_arms):
        part = quotas[start : start + scope.max_arms]
        arms, args = _arms(scope, params, part, now_us)
        sql = _merge_heads("claim_candidates", arms)
        found.extend(conn.execute(sql, [*args, limit]).fetchall())
    found.sort(key=lambda seq_priority: (-seq_priority[1], seq_priority[0]))
    return [seq for seq, _ in found[:limit]]


# ---- what a claim allows ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    token: str
    run_id: str
    cancel_requested: bool
    cancel_terminate: bool  # meaningful only with cancel_requested
    # The job's counter key, and its run's attempt and start (`_counts.Deltas`).
    job_type: str
    queue: str
    attempt: int
    started_us: int

    def closed(self, deltas: counts.Deltas, status: str, run_status: str, now_us: int) -> None:
        """Count this claim's job as now `status` and its run as ended `run_status` at `now_us`
        (the duration the run statements store: `(now - started_at) / 1e6`)."""
        deltas.job_moved(self.job_type, self.queue, "running", status)
        deltas.run_closed(self.job_type, self.attempt, run_status, (now_us - self.started_us) / 1e6)


def _current_claims(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, _Claim]:
    """The claims held right now on the running jobs among `job_ids`."""
    claims: dict[str, _Claim] = {}
    for job_id, token, run_id, cancel, terminate, job_type, queue, attempt, started in conn.execute(
        Q["current_claims"], (json_array(dict.fromkeys(job_ids)),)
    ):
        claims[job_id] = _Claim(
            token,
            run_id,
            bool(cancel),
            bool(cancel and terminate),
            job_type,
            queue,
            attempt,
            started,
        )
    return claims


def _take(claims: dict[str, _Claim], ref: ClaimRef) -> _Claim | None:
    """The claim `ref` holds, removed from `claims` so a second use in the same batch is
    stale, as it would be one call later."""
    claim = claims.get(ref.job_id)
    if claim is None or claim.token != ref.token:
        return None
    del claims[ref.job_id]
    return claim


def renew_claims(
    conn: sqlite3.Connection, refs: Sequence[ClaimRef], lease_ttl: timedelta, now: datetime
) -> RenewResult:
    claims = _current_claims(conn, [ref.job_id for ref in refs])
    valid = {ref.job_id: claim for ref in refs if (claim := _take(claims, ref)) is not None}
    lease_us = to_us(now + lease_ttl)
    conn.executemany(
        Q["renew_claims"],
        [(lease_us, job_id) for job_id in valid],
    )
    return RenewResult(
        frozenset(valid),
        frozenset(job_id for job_id, claim in valid.items() if claim.cancel_requested),
        frozenset(job_id for job_id, claim in valid.items() if claim.cancel_terminate),
    )


def complete_jobs(
    conn: sqlite3.Connection, completions: Sequence[Completion], now: datetime
) -> list[datetime | None]:
    # Results are encoded first: one that is not JSON fails the call before anything changes.
    results = [None if c.result is None else dump_json(c.result) for c in completions]
    claims = _current_claims(conn, [c.ref.job_id for c in completions])
    now_us = to_us(now)
    finished: list[datetime | None] = []
    jobs: list[tuple[Any, ...]] = []
    runs: list[tuple[Any, ...]] = []
    deltas = counts.Deltas()
    for completion, result in zip(completions, results, strict=True):
        claim = _take(claims, completion.ref)
        if claim is None:
            finished.append(None)
            continue
        status = "canceled" if completion.canceled else "completed"
        claim.closed(deltas, status, "completed", now_us)
        # `worker` stays: it tells operators who ran the job.
        jobs.append((status, now_us, result, completion.canceled, completion.ref.job_id))
        runs.append((now_us, now_us, claim.run_id))
        finished.append(now)
    conn.executemany(
        Q["complete_jobs"],
        jobs,
    )
    conn.executemany(
        Q["complete_job_runs"],
        runs,
    )
    deltas.write(conn)
    return finished


def release_jobs(conn: sqlite3.Connection, refs: Sequence[ClaimRef], now: datetime) -> list[bool]:
    claims = _current_claims(conn, [ref.job_id for ref in refs])
    now_us = to_us(now)
    released: list[bool] = []
    jobs: list[tuple[str]] = []
    canceled: list[tuple[int, str]] = []
    runs: list[tuple[int, int, str]] = []
    deltas = counts.Deltas()
    for ref in refs:
        claim = _take(claims, ref)
        released.append(claim is not None)
        if claim is not None:
            claim.closed(
                deltas, "canceled" if claim.cancel_requested else "pending", "released", now_us
            )
            if claim.cancel_requested:
                canceled.append((now_us, ref.job_id))
            else:
                jobs.append((ref.job_id,))
            runs.append((now_us, now_us, claim.run_id))
    # Graceful stop: the attempt is given back and `run_at` is left as it was.
    conn.executemany(
        Q["release_jobs"],
        jobs,
    )
    # Cancel is final: a job asked to stop is not given back, it ends here (the attempt ran).
    conn.executemany(
        Q["release_canceled_jobs"],
        canceled,
    )
    conn.executemany(
        Q["release_job_runs"],
        runs,
    )
    deltas.write(conn)
    return released


def snooze_job(
    conn: sqlite3.Connection, ref: ClaimRef, delay: timedelta, now: datetime
) -> Job | None:
    """`release_jobs` for one job with `run_at = now + delay` (the handler raised `Snooze`)."""
    claim = _take(_current_claims(conn, [ref.job_id]), ref)
    if claim is None:
        return None
    now_us = to_us(now)
    conn.execute(Q["release_job_runs"], (now_us, now_us, claim.run_id))
    if claim.cancel_requested:  # cancel is final: it ran, and it ends here
        row = conn.execute(Q["snooze_canceled_job"], (now_us, ref.job_id)).fetchone()
    else:  # a snooze is not charged
        row = conn.execute(Q["snooze_job"], (to_us(now + delay), ref.job_id)).fetchone()
    job: Job = job_from_row(row)
    deltas = counts.Deltas()
    claim.closed(deltas, job.status.value, "released", now_us)
    deltas.write(conn)
    return job


def update_progress(conn: sqlite3.Connection, ref: ClaimRef, percent: float) -> bool:
    row = conn.execute(Q["update_progress"], (percent, ref.job_id, ref.token)).fetchone()
    if row is None:
        return False
    conn.execute(Q["update_run_progress"], (percent, row[0]))
    return True


# ---- failures --------------------------------------------------------------------------------


def fail_job(conn: sqlite3.Connection, failure: Failure, now: datetime) -> FailOutcome | None:
    row = conn.execute(Q["fail_job"], (failure.ref.job_id, failure.ref.token)).fetchone()
    if row is None:
        return None
    return _fail_attempt(
        conn,
        row,
        failure.error,
        failure.retryable,
        now,
        failure.kind,
        failure.traceback,
        retry_in=failure.retry_in,
    )


def recover_expired_leases(
    conn: sqlite3.Connection, limit: int, now: datetime
) -> list[FailOutcome]:
    """Fail the attempts whose lease ran out, oldest lease first, exactly as `fail_job` would;
    clearing the token in the same write kills the old claim."""
    if limit <= 0:
        return []
    rows = conn.execute(Q["recover_expired_leases"], (to_us(now), limit)).fetchall()
    return [
        _fail_attempt(
            conn,
            row,
            lease_expired_error(row[2], opt_dt(row[3])),
            True,
            now,
            FailureKind.LEASE_EXPIRED,
            None,
        )
        for row in rows
    ]


def _fail_attempt(
    conn: sqlite3.Connection,
    row: Sequence[Any],
    error: str,
    retryable: bool,
    now: datetime,
    kind: FailureKind,
    traceback: str | None,
    *,
    retry_in: timedelta | None = None,
) -> FailOutcome:
    (seq, run_id, _worker, _lease, attempts, max_retries, strategy, delay, max_delay, expires,
     cancel_requested) = row  # fmt: skip
    backoff: BackoffStrategy = strategy
    decision = decide_failure(
        now=now,
        error=error,
        retryable=retryable,
        attempts=attempts,
        max_retries=max_retries,
        backoff_strategy=backoff,
        retry_delay=delay,
        max_retry_delay=max_delay,
        expires_at=opt_dt(expires),
        cancel_requested=bool(cancel_requested),
        retry_in=retry_in,
    )
    now_us = to_us(now)
    conn.execute(
        Q["fail_attempt_run"],
        (now_us, now_us, error, traceback, kind.value, run_id),
    )
    if decision.will_retry:
        assert decision.run_at is not None
        updated = conn.execute(
            Q["fail_attempt_retry"],
            (to_us(decision.run_at), decision.fail_reason, kind.value, seq),
        ).fetchone()
    else:
        updated = conn.execute(
            Q["fail_attempt_final"],
            (
                "canceled" if decision.canceled else "failed",
                now_us,
                decision.fail_reason,
                kind.value,
                decision.dead_lettered,
                seq,
            ),
        ).fetchone()
    job: Job = job_from_row(updated)
    counts.jobs_moved(conn, [job.id], "running")
    counts.runs_closed(conn, [run_id])
    return FailOutcome(job, decision.will_retry, error, kind)
