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

**Batches** (`complete_jobs`, `release_jobs`, `renew_claims`) read the current claims of the
whole batch with one `IN` query, then write with `executemany`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from timecrisis.models import BackoffStrategy, FailureKind, Job
from timecrisis.storage._common import decide_failure, dump_json, lease_expired_error
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    RenewResult,
)
from timecrisis.storage.sqlite._rows import (
    JOB_COLUMN_COUNT,
    JOB_COLUMNS,
    chunks,
    in_list,
    job_from_row,
    opt_dt,
    to_us,
)

# ---- claim -----------------------------------------------------------------------------------

_PRIORITY = JOB_COLUMNS.split(", ").index("priority")
_SEQ = JOB_COLUMN_COUNT  # RETURNING {JOB_COLUMNS}, seq, lock_token, run_id
_TOKEN = JOB_COLUMN_COUNT + 1
_RUN_ID = JOB_COLUMN_COUNT + 2

# SQLite allows 500 terms in a compound SELECT; past this many claimable types, candidates are
# gathered in slices first (see `_candidates`).
MAX_ARMS = 200

_CLAIM_HEAD = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, worker = ?, "
    "lock_token = timecrisis_new_id(), lock_expires_at = ?, run_id = timecrisis_new_id(), "
    "cancel_requested = 0, cancel_terminate = 0 "
)
_CLAIM_RETURNING = f" RETURNING {JOB_COLUMNS}, seq, lock_token, run_id"
# One type's claimable queue head. `status = 'pending'` is a literal so the partial index
# applies; the expiry test keeps jobs past `expires_at` for `expire_jobs` to dead-letter.
# `{queues}` is the flow-control predicate of a claim of every queue (see `_Scope`).
_ARM = (
    "SELECT * FROM (SELECT seq, priority FROM jobs INDEXED BY jobs_pending_queue "
    "WHERE status = 'pending' AND type = ? "
    "AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?){queues} "
    "ORDER BY priority DESC, seq LIMIT ?)"
)
# Flow control: one (type, queue) head, for a claim of named queues. Its own index, so the jobs
# of the queues this worker does not serve are never read, however many wait.
_QUEUE_ARM = (
    "SELECT * FROM (SELECT seq, priority FROM jobs INDEXED BY jobs_pending_by_queue "
    "WHERE status = 'pending' AND type = ? AND queue = ? "
    "AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?) "
    "ORDER BY priority DESC, seq LIMIT ?)"
)
_INSERT_RUN = (
    "INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at) "
    "VALUES (?, ?, ?, ?, 'running', ?, ?)"
)


@dataclass(frozen=True, slots=True)
class _Scope:
    """Flow control (docs/flow-control.md): which queues a claim reads, decided inside its
    write transaction (nobody can pause or resume between this read and the claim).

    `queues`: the served queues that are not paused, one head each per type; None for a claim
    of every queue, which reads each type's head and steps over the `paused` queues' jobs."""

    queues: tuple[str, ...] | None
    paused: tuple[str, ...]

    @classmethod
    def read(cls, conn: sqlite3.Connection, served: frozenset[str] | None) -> _Scope:
        paused = {name for (name,) in conn.execute("SELECT name FROM paused")}
        if served is None:
            return cls(None, tuple(sorted(paused)))
        return cls(tuple(sorted(served - paused)), tuple(sorted(paused)))

    @property
    def max_arms(self) -> int:
        """Types per statement: `MAX_ARMS` heads in all, however many queues each type has."""
        return max(1, MAX_ARMS // len(self.queues)) if self.queues else MAX_ARMS

    @property
    def shape(self) -> tuple[int, int]:
        """What the arm's text depends on: the number of queues, or of paused queues."""
        return (-1, len(self.paused)) if self.queues is None else (len(self.queues), 0)

    def arm_args(self, job_type: str, quota: int, now_us: int) -> list[Any]:
        if self.queues is None:
            return [job_type, now_us, now_us, *self.paused, quota]
        heads = [a for q in self.queues for a in (job_type, q, now_us, now_us, quota)]
        return heads if len(self.queues) == 1 else [*heads, quota]


@functools.lru_cache(maxsize=64)
def _arm(shape: tuple[int, int]) -> str:
    """One type's claimable head within the scope of that `shape` (see `_Scope.shape`)."""
    queues, paused = shape
    if queues < 0:  # every queue: skip the paused ones, if any
        marks = ", ".join("?" * paused)
        return _ARM.format(queues=f" AND queue NOT IN ({marks})" if paused else "")
    if queues == 1:
        return _QUEUE_ARM
    # Several queues: their heads merged, still at most the type's quota in all.
    return (
        f"SELECT * FROM (SELECT seq, priority FROM ({' UNION ALL '.join([_QUEUE_ARM] * queues)}) "
        "ORDER BY priority DESC, seq LIMIT ?)"
    )


@functools.lru_cache(maxsize=64)
def _heads(arms: int, shape: tuple[int, int]) -> str:
    """The merged queue heads of `arms` types, best first (args: per arm `_Scope.arm_args`;
    then the overall limit)."""
    return (
        f"SELECT seq FROM ({' UNION ALL '.join([_arm(shape)] * arms)}) "
        "ORDER BY priority DESC, seq LIMIT ?"
    )


def claim_jobs(conn: sqlite3.Connection, params: ClaimParams, now: datetime) -> list[ClaimedJob]:
    if params.limit <= 0:
        return []
    scope = _Scope.read(conn, params.queues)
    if scope.queues == ():  # flow control: every served queue is paused
        return []
    # Flow control: a paused type gets no arm, so its backlog is never read.
    quotas = [quota for quota in _quotas(conn, params) if quota[0] not in scope.paused]
    if not quotas:
        return []
    now_us = to_us(now)
    lease_expires_at = now + params.lease_ttl
    head = [now_us, params.worker, to_us(lease_expires_at)]
    if len(quotas) <= scope.max_arms:
        arms = [
            arg for job_type, quota in quotas for arg in scope.arm_args(job_type, quota, now_us)
        ]
        sql = f"{_CLAIM_HEAD} WHERE seq IN ({_heads(len(quotas), scope.shape)}){_CLAIM_RETURNING}"
        rows = conn.execute(sql, [*head, *arms, params.limit]).fetchall()
    else:
        seqs = _candidates(conn, quotas, params.limit, now_us, scope)
        if not seqs:
            return []
        marks, padded = in_list(seqs)
        rows = conn.execute(
            f"{_CLAIM_HEAD} WHERE seq IN {marks}{_CLAIM_RETURNING}", [*head, *padded]
        ).fetchall()
    # RETURNING comes in no promised order; callers get the claim order.
    rows.sort(key=lambda row: (-row[_PRIORITY], row[_SEQ]))
    claimed = [
        ClaimedJob(job_from_row(row), row[_TOKEN], row[_RUN_ID], lease_expires_at) for row in rows
    ]
    conn.executemany(
        _INSERT_RUN,
        [(c.run_id, c.job.id, c.job.type, c.job.attempts, params.worker, now_us) for c in claimed],
    )
    return claimed


def _quotas(conn: sqlite3.Connection, params: ClaimParams) -> list[tuple[str, int]]:
    """(type, how many jobs of it this claim may take), for every type with a free slot."""
    limited = [job_type for job_type, cap in params.type_limits.items() if cap is not None]
    running: dict[str, int] = {}
    for chunk in chunks(limited):
        marks, args = in_list(chunk)
        running.update(
            conn.execute(
                "SELECT type, count(*) FROM jobs INDEXED BY jobs_type_status "
                f"WHERE status = 'running' AND type IN {marks} GROUP BY type",
                args,
            ).fetchall()
        )
    quotas = []
    for job_type, cap in params.type_limits.items():
        free = params.limit if cap is None else min(params.limit, cap - running.get(job_type, 0))
        if free > 0:
            quotas.append((job_type, free))
    return quotas


def _candidates(
    conn: sqlite3.Connection,
    quotas: Sequence[tuple[str, int]],
    limit: int,
    now_us: int,
    scope: _Scope,
) -> list[int]:
    """The `limit` best queue heads over more types than one statement can merge: each slice's
    best `limit` (within quotas), then the best `limit` of those."""
    found: list[tuple[int, int]] = []
    for start in range(0, len(quotas), scope.max_arms):
        part = quotas[start : start + scope.max_arms]
        arms = [arg for job_type, quota in part for arg in scope.arm_args(job_type, quota, now_us)]
        sql = (
            f"SELECT seq, priority FROM ({' UNION ALL '.join([_arm(scope.shape)] * len(part))}) "
            "ORDER BY priority DESC, seq LIMIT ?"
        )
        found.extend(conn.execute(sql, [*arms, limit]).fetchall())
    found.sort(key=lambda seq_priority: (-seq_priority[1], seq_priority[0]))
    return [seq for seq, _ in found[:limit]]


# ---- what a claim allows ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    token: str
    run_id: str
    cancel_requested: bool
    cancel_terminate: bool  # meaningful only with cancel_requested


def _current_claims(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, _Claim]:
    """The claims held right now on the running jobs among `job_ids`."""
    claims: dict[str, _Claim] = {}
    for chunk in chunks(list(dict.fromkeys(job_ids))):
        marks, args = in_list(chunk)
        for job_id, token, run_id, cancel, terminate in conn.execute(
            "SELECT id, lock_token, run_id, cancel_requested, cancel_terminate FROM jobs "
            f"WHERE id IN {marks} AND status = 'running'",
            args,
        ):
            claims[job_id] = _Claim(token, run_id, bool(cancel), bool(cancel and terminate))
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
        "UPDATE jobs SET lock_expires_at = ? WHERE id = ?",
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
    for completion, result in zip(completions, results, strict=True):
        claim = _take(claims, completion.ref)
        if claim is None:
            finished.append(None)
            continue
        status = "canceled" if completion.canceled else "completed"
        # `worker` stays: it tells operators who ran the job.
        jobs.append((status, now_us, result, completion.canceled, completion.ref.job_id))
        runs.append((now_us, now_us, claim.run_id))
        finished.append(now)
    conn.executemany(
        "UPDATE jobs SET status = ?, finished_at = ?, result = ?, "
        "progress = CASE WHEN ? THEN progress ELSE 100 END, "
        "lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0 "
        "WHERE id = ?",
        jobs,
    )
    conn.executemany(
        "UPDATE job_runs SET status = 'completed', finished_at = ?, "
        "duration = (? - started_at) / 1e6, progress = 100 WHERE id = ?",
        runs,
    )
    return finished


def release_jobs(conn: sqlite3.Connection, refs: Sequence[ClaimRef], now: datetime) -> list[bool]:
    claims = _current_claims(conn, [ref.job_id for ref in refs])
    now_us = to_us(now)
    released: list[bool] = []
    jobs: list[tuple[str]] = []
    canceled: list[tuple[int, str]] = []
    runs: list[tuple[int, int, str]] = []
    for ref in refs:
        claim = _take(claims, ref)
        released.append(claim is not None)
        if claim is not None:
            if claim.cancel_requested:
                canceled.append((now_us, ref.job_id))
            else:
                jobs.append((ref.job_id,))
            runs.append((now_us, now_us, claim.run_id))
    # Graceful stop: the attempt is given back and `run_at` is left as it was.
    conn.executemany(
        "UPDATE jobs SET status = 'pending', attempts = attempts - 1, worker = NULL, "
        "lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0 "
        "WHERE id = ?",
        jobs,
    )
    # Cancel is final: a job asked to stop is not given back, it ends here (the attempt ran).
    conn.executemany(
        "UPDATE jobs SET status = 'canceled', finished_at = ?, lock_token = NULL, "
        "lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0 "
        "WHERE id = ?",
        canceled,
    )
    conn.executemany(
        "UPDATE job_runs SET status = 'released', finished_at = ?, "
        "duration = (? - started_at) / 1e6 WHERE id = ?",
        runs,
    )
    return released


def snooze_job(
    conn: sqlite3.Connection, ref: ClaimRef, delay: timedelta, now: datetime
) -> Job | None:
    """`release_jobs` for one job with `run_at = now + delay` (the handler raised `Snooze`)."""
    claim = _take(_current_claims(conn, [ref.job_id]), ref)
    if claim is None:
        return None
    now_us = to_us(now)
    conn.execute(
        "UPDATE job_runs SET status = 'released', finished_at = ?, "
        "duration = (? - started_at) / 1e6 WHERE id = ?",
        (now_us, now_us, claim.run_id),
    )
    if claim.cancel_requested:  # cancel is final: it ran, and it ends here
        row = conn.execute(
            "UPDATE jobs SET status = 'canceled', finished_at = ?, lock_token = NULL, "
            "lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0 "
            f"WHERE id = ? RETURNING {JOB_COLUMNS}",
            (now_us, ref.job_id),
        ).fetchone()
    else:  # a snooze is not charged
        row = conn.execute(
            "UPDATE jobs SET status = 'pending', attempts = attempts - 1, run_at = ?, "
            "worker = NULL, lock_token = NULL, lock_expires_at = NULL, run_id = NULL, "
            f"cancel_requested = 0 WHERE id = ? RETURNING {JOB_COLUMNS}",
            (to_us(now + delay), ref.job_id),
        ).fetchone()
    job: Job = job_from_row(row)
    return job


def update_progress(conn: sqlite3.Connection, ref: ClaimRef, percent: float) -> bool:
    row = conn.execute(
        "UPDATE jobs SET progress = ? WHERE id = ? AND lock_token = ? AND status = 'running' "
        "RETURNING run_id",
        (percent, ref.job_id, ref.token),
    ).fetchone()
    if row is None:
        return False
    conn.execute("UPDATE job_runs SET progress = ? WHERE id = ?", (percent, row[0]))
    return True


# ---- failures --------------------------------------------------------------------------------

# What `_common.decide_failure` needs, plus the claim it ends.
_FAILURE_COLUMNS = (
    "seq, run_id, worker, lock_expires_at, attempts, max_retries, backoff_strategy, "
    "retry_delay, max_retry_delay, expires_at, cancel_requested"
)


def fail_job(conn: sqlite3.Connection, failure: Failure, now: datetime) -> FailOutcome | None:
    row = conn.execute(
        f"SELECT {_FAILURE_COLUMNS} FROM jobs WHERE id = ? AND lock_token = ? "
        "AND status = 'running'",
        (failure.ref.job_id, failure.ref.token),
    ).fetchone()
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
    rows = conn.execute(
        f"SELECT {_FAILURE_COLUMNS} FROM jobs INDEXED BY jobs_running_lease "
        "WHERE status = 'running' AND lock_expires_at <= ? ORDER BY lock_expires_at, seq LIMIT ?",
        (to_us(now), limit),
    ).fetchall()
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
        "UPDATE job_runs SET status = 'failed', finished_at = ?, "
        "duration = (? - started_at) / 1e6, error = ?, traceback = ?, failure_kind = ? "
        "WHERE id = ?",
        (now_us, now_us, error, traceback, kind.value, run_id),
    )
    if decision.will_retry:
        assert decision.run_at is not None
        updated = conn.execute(
            "UPDATE jobs SET status = 'pending', run_at = ?, fail_reason = ?, failure_kind = ?, "
            "worker = NULL, lock_token = NULL, lock_expires_at = NULL, run_id = NULL, "
            f"cancel_requested = 0 WHERE seq = ? RETURNING {JOB_COLUMNS}",
            (to_us(decision.run_at), decision.fail_reason, kind.value, seq),
        ).fetchone()
    else:
        updated = conn.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, fail_reason = ?, failure_kind = ?, "
            "dead_lettered = ?, lock_token = NULL, lock_expires_at = NULL, run_id = NULL, "
            f"cancel_requested = 0, cancel_terminate = 0 WHERE seq = ? RETURNING {JOB_COLUMNS}",
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
    return FailOutcome(job, decision.will_retry, error, kind)
