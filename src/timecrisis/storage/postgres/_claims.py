"""The claim lifecycle: claim, renew, complete, fail, release, progress, and the reaper's
recovery and expiry. Every write is fenced: `WHERE id = ... AND lock_token = ... AND
status = 'running'`, so a worker whose lease was taken over changes nothing.

Round trips (the claim + complete loop is the hot path): a claim of unlimited types is one
statement; with per-type limits it is one pipelined transaction (the per-type lock statement,
the claim statement, COMMIT: one round trip); a batch of completions, renewals or releases is
one statement; `complete_and_claim` puts a worker's completions and its next claim in one
statement (unlimited types) or one pipelined transaction (limited ones): one commit for both.
Failures need Python in the middle (`_common.decide_failure` owns the retry rule), so they take
two. A claim that finds delayed jobs come due claims nothing, and two more follow: `promote_due`
and the claim again (`claim_until_settled`; migration 0011).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from timecrisis.models import FailureKind, Job
from timecrisis.rate_limits import RateLimit
from timecrisis.storage._common import (
    FailureDecision,
    decide_failure,
    dump_json,
    expired_reason,
    lease_expired_error,
)
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    RenewResult,
)
from timecrisis.storage.postgres._db import Conn, Context, fetch_all, fetch_one, start
from timecrisis.storage.postgres._keys import advisory_key
from timecrisis.storage.postgres._rows import Row, job_from_row, opt_utc, utc

# Claimed rows come back in binary: the server sends a timestamp as 8 bytes instead of
# formatting it, and psycopg reads it without parsing text (six timestamps a job). The values
# are the same Python objects either way; it saves about 1 us of the worker's CPU and 0.5 us of
# the server's per claimed row (docs/performance.md).
_CLAIMED_ROWS_BINARY = True


async def send_claim(
    conn: Conn, ctx: Context, params: ClaimParams, now: datetime | None
) -> AsyncCursor[DictRow]:
    """Queue the claim's statements; read the returned cursor with `read_claims` once the
    transaction has committed. In a pipelined transaction the per-type locks, the claim and the
    COMMIT then cost one round trip (see queries.sql `claim_jobs` for why the lock must be a
    statement of its own)."""
    types = list(params.type_limits)
    limited = sorted(
        {
            advisory_key("type", ctx.schema, job_type)
            for job_type, cap in params.type_limits.items()
            if (cap is not None and cap > 0)  # a limit of 0 claims nothing: no lock needed
            or _flow_limited(params, job_type)
        }
    )
    if limited:
        await start(conn, ctx.queries["lock_job_types"], {"keys": limited})
    rate_types = [t for t in params.rate_limits if t in params.type_limits]
    return await start(
        conn,
        ctx.queries[_scoped("claim_jobs", params)],
        {
            "now": now,
            "limit": params.limit,
            "types": types,
            "caps": [params.type_limits[t] for t in types],
            "worker": params.worker,
            "ttl": params.lease_ttl,
            # Flow control (docs/flow-control.md).
            "key_caps": [params.key_limits.get(t) for t in types],
            **_rate_args(params.rate_limits, rate_types),
            **_queue_args(params),
        },
        binary=_CLAIMED_ROWS_BINARY,
    )


def _flow_limited(params: ClaimParams, job_type: str) -> bool:
    """Flow control: a rate-limited or keyed type serializes its claims on its type lock, as
    a type with a concurrency limit does (queries.sql `claim_jobs`)."""
    return job_type in params.rate_limits or job_type in params.key_limits


def _rate_args(
    rate_limits: Mapping[str, RateLimit], rate_types: Sequence[str]
) -> dict[str, object]:
    return {
        "rate_types": list(rate_types),
        "rate_caps": [rate_limits[t].limit for t in rate_types],
        "rate_windows": [rate_limits[t].window for t in rate_types],
    }


async def rate_limit_free_at(
    conn: Conn, ctx: Context, rate_limits: Mapping[str, RateLimit], now: datetime | None
) -> datetime | None:
    row = await fetch_one(
        conn,
        ctx.queries["rate_limit_free_at"],
        {"now": now, **_rate_args(rate_limits, list(rate_limits))},
    )
    return None if row is None else opt_utc(row["free_at"])


# Flow control (docs/flow-control.md): each claim statement of queries.sql has a second form
# for a worker that serves named queues, written out in full: (every queue, named queues).
_FORMS = {
    "claim_jobs": ("claim_jobs", "claim_jobs_in_queues"),
    "claim_jobs_unlimited": ("claim_jobs_unlimited", "claim_jobs_unlimited_in_queues"),
    "complete_and_claim": ("complete_and_claim", "complete_and_claim_in_queues"),
}


def _scoped(statement: str, params: ClaimParams) -> str:
    """The form of claim `statement` for the queues `params` serves."""
    every_queue, named_queues = _FORMS[statement]
    return every_queue if params.queues is None else named_queues


def _queue_args(params: ClaimParams) -> dict[str, object]:
    return {} if params.queues is None else {"queues": sorted(params.queues)}


@dataclass(frozen=True, slots=True)
class Claims:
    """What one claim statement returned: the jobs it claimed, or, when delayed jobs had come
    due, none and `due` (promote them, then claim again: `claim_until_settled`)."""

    jobs: list[ClaimedJob]
    due: bool


# A claim that found delayed jobs come due claimed nothing (queries.sql `claim_jobs`, `due`);
# once they are promoted the next one finds them in claim order, and finds more due only if
# some came due in between (usually none). Past this many rounds, jobs that keep coming due
# wait for the next claim.
MAX_CLAIM_ROUNDS = 4


async def claim_until_settled(
    claim: Callable[[], Awaitable[Claims]], promote: Callable[[], Awaitable[object]]
) -> list[ClaimedJob]:
    """Run `claim`; while it found delayed jobs come due, `promote` them and claim again (at
    most `MAX_CLAIM_ROUNDS` claims)."""
    claims = await claim()
    for _ in range(MAX_CLAIM_ROUNDS - 1):
        if not claims.due:
            break
        await promote()
        claims = await claim()
    return claims.jobs


async def promote_due(conn: Conn, ctx: Context, now: datetime | None) -> None:
    """The waiting jobs that are due join the queue indexes (queries.sql `promote_due`)."""
    await conn.execute(ctx.queries["promote_due"], {"now": now})


def _claimed(rows: list[DictRow]) -> Claims:
    """The rows of a claim statement: one per claimed job, or one of NULLs when none was, each
    with the statement's `due`."""
    return Claims(
        [
            ClaimedJob(
                job_from_row(row), row["lock_token"], row["run_id"], utc(row["lock_expires_at"])
            )
            for row in rows
            if row["id"] is not None
        ],
        bool(rows and rows[0]["due"]),
    )


async def read_claims(cur: AsyncCursor[DictRow]) -> Claims:
    return _claimed(await cur.fetchall())


def needs_type_locks(params: ClaimParams) -> bool:
    """Whether the claim has a per-type limit to enforce: it then needs `lock_job_types` as a
    statement of its own before it, inside one transaction. A claim of unlimited types only is
    one statement, atomic on its own: no transaction, no pipeline (cheaper by about a
    millisecond of client CPU and a round trip's worth of protocol messages)."""
    return any(cap is not None for cap in params.type_limits.values()) or any(
        _flow_limited(params, job_type) for job_type in params.type_limits
    )


def _claim_args(params: ClaimParams, now: datetime | None) -> dict[str, object]:
    return {
        "now": now,
        "limit": params.limit,
        "types": list(params.type_limits),
        "worker": params.worker,
        "ttl": params.lease_ttl,
        **_queue_args(params),
    }


def _complete_args(completions: Sequence[Completion], now: datetime | None) -> dict[str, object]:
    return {
        "now": now,
        "ids": [c.ref.job_id for c in completions],
        "tokens": [c.ref.token for c in completions],
        "runs": [c.ref.run_id for c in completions],
        "results": [None if c.result is None else dump_json(c.result) for c in completions],
        "canceled": [c.canceled for c in completions],
    }


async def claim_unlimited(
    conn: Conn, ctx: Context, params: ClaimParams, now: datetime | None
) -> Claims:
    """A claim without per-type limits, rate limits or keys, in one autocommitted statement
    (queries.sql `claim_jobs_unlimited`): what an idle worker sends when woken."""
    return await read_claims(
        await start(
            conn,
            ctx.queries[_scoped("claim_jobs_unlimited", params)],
            _claim_args(params, now),
            binary=_CLAIMED_ROWS_BINARY,
        )
    )


async def complete_and_claim_unlimited(
    conn: Conn,
    ctx: Context,
    completions: Sequence[Completion],
    params: ClaimParams,
    now: datetime | None,
) -> tuple[list[datetime | None], Claims]:
    """Completions and a claim without per-type limits, in one statement (queries.sql
    `complete_and_claim`)."""
    rows = await fetch_all(
        conn,
        ctx.queries[_scoped("complete_and_claim", params)],
        {**_complete_args(completions, now), **_claim_args(params, now)},
        binary=_CLAIMED_ROWS_BINARY,
    )
    done = set(rows[0]["completed_ids"] or ())
    at = rows[0]["completed_at"]
    finished: list[datetime | None] = []
    for completion in completions:  # a ref listed twice completes once: its first occurrence
        job_id = completion.ref.job_id
        finished.append(utc(at) if job_id in done else None)
        done.discard(job_id)
    return finished, _claimed(rows)


async def renew_claims(
    conn: Conn, ctx: Context, refs: Sequence[ClaimRef], ttl: timedelta, now: datetime | None
) -> RenewResult:
    rows = await fetch_all(
        conn,
        ctx.queries["renew_claims"],
        {
            "now": now,
            "ttl": ttl,
            "ids": [r.job_id for r in refs],
            "tokens": [r.token for r in refs],
        },
    )
    return RenewResult(
        frozenset(row["id"] for row in rows),
        frozenset(row["id"] for row in rows if row["cancel_requested"]),
        frozenset(row["id"] for row in rows if row["terminate"]),
    )


async def send_complete(
    conn: Conn, ctx: Context, completions: Sequence[Completion], now: datetime | None
) -> AsyncCursor[DictRow]:
    """Queue the completion statement; read its cursor with `read_complete`."""
    return await start(conn, ctx.queries["complete_jobs"], _complete_args(completions, now))


async def read_complete(
    cur: AsyncCursor[DictRow], completions: Sequence[Completion]
) -> list[datetime | None]:
    finished = {row["id"]: utc(row["finished_at"]) for row in await cur.fetchall()}
    # A ref listed twice completes once: its first occurrence reports it.
    return [finished.pop(c.ref.job_id, None) for c in completions]


async def complete_jobs(
    conn: Conn, ctx: Context, completions: Sequence[Completion], now: datetime | None
) -> list[datetime | None]:
    return await read_complete(await send_complete(conn, ctx, completions, now), completions)


async def release_jobs(
    conn: Conn, ctx: Context, refs: Sequence[ClaimRef], now: datetime | None
) -> list[bool]:
    rows = await fetch_all(
        conn,
        ctx.queries["release_jobs"],
        {
            "now": now,
            "channel": ctx.channel,
            "ids": [r.job_id for r in refs],
            "tokens": [r.token for r in refs],
            "runs": [r.run_id for r in refs],
        },
    )
    released = {row["id"] for row in rows}
    results = []
    for ref in refs:
        results.append(ref.job_id in released)
        released.discard(ref.job_id)
    return results


async def snooze_job(
    conn: Conn, ctx: Context, ref: ClaimRef, delay: timedelta, now: datetime | None
) -> Job | None:
    row = await fetch_one(
        conn,
        ctx.queries["snooze_job"],
        {
            "now": now,
            "channel": ctx.channel,
            "delay": delay,
            "id": ref.job_id,
            "token": ref.token,
            "run": ref.run_id,
        },
    )
    return None if row is None else job_from_row(row)


async def update_progress(conn: Conn, ctx: Context, ref: ClaimRef, percent: float) -> bool:
    row = await fetch_one(
        conn,
        ctx.queries["update_progress"],
        {"percent": percent, "id": ref.job_id, "token": ref.token, "run": ref.run_id},
    )
    return row is not None and row["count"] == 1


# ---- failures ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decided:
    job_id: str
    run_id: str | None
    error: str
    decision: FailureDecision
    kind: FailureKind
    traceback: str | None


def _decide(
    row: Row,
    error: str,
    retryable: bool,
    kind: FailureKind,
    traceback: str | None,
    retry_in: timedelta | None = None,
) -> _Decided:
    decision = decide_failure(
        now=utc(row["now"]),
        error=error,
        retryable=retryable,
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        backoff_strategy=row["backoff_strategy"],
        retry_delay=row["retry_delay"],
        max_retry_delay=row["max_retry_delay"],
        expires_at=opt_utc(row["expires_at"]),
        cancel_requested=row["cancel_requested"],
        retry_in=retry_in,
    )
    return _Decided(row["id"], row["run_id"], error, decision, kind, traceback)


async def _apply(
    conn: Conn, ctx: Context, decided: Sequence[_Decided], now: datetime | None
) -> list[FailOutcome]:
    rows = await fetch_all(
        conn,
        ctx.queries["apply_failures"],
        {
            "now": now,
            "ids": [d.job_id for d in decided],
            "runs": [d.run_id for d in decided],
            "errors": [d.error for d in decided],
            "reasons": [d.decision.fail_reason for d in decided],
            "retry_ats": [d.decision.run_at for d in decided],
            "finished_ats": [d.decision.finished_at for d in decided],
            "dead": [d.decision.dead_lettered for d in decided],
            "kinds": [d.kind.value for d in decided],
            "tracebacks": [d.traceback for d in decided],
            "canceled": [d.decision.canceled for d in decided],
        },
    )
    jobs = {row["id"]: job_from_row(row) for row in rows}
    return [FailOutcome(jobs[d.job_id], d.decision.will_retry, d.error, d.kind) for d in decided]


async def fail_job(
    conn: Conn, ctx: Context, failure: Failure, now: datetime | None
) -> FailOutcome | None:
    """Inside a transaction: lock the job (if the token is current), decide, write."""
    row = await fetch_one(
        conn,
        ctx.queries["lock_claimed_job"],
        {"now": now, "id": failure.ref.job_id, "token": failure.ref.token},
    )
    if row is None:
        return None
    decided = _decide(
        row, failure.error, failure.retryable, failure.kind, failure.traceback, failure.retry_in
    )
    [outcome] = await _apply(conn, ctx, [decided], now)
    return outcome


async def recover_expired_leases(
    conn: Conn, ctx: Context, limit: int, now: datetime | None
) -> list[FailOutcome]:
    """Inside a transaction: each expired lease fails its attempt as `fail_job` would."""
    rows = await fetch_all(conn, ctx.queries["lock_expired_leases"], {"now": now, "limit": limit})
    if not rows:
        return []
    decided = [
        _decide(
            row,
            lease_expired_error(row["worker"], opt_utc(row["lock_expires_at"])),
            True,
            FailureKind.LEASE_EXPIRED,
            None,
        )
        for row in rows
    ]
    return await _apply(conn, ctx, decided, now)


async def expire_jobs(conn: Conn, ctx: Context, limit: int, now: datetime | None) -> list[Job]:
    """Inside a transaction: pending jobs past `expires_at` are dead-lettered."""
    rows = await fetch_all(conn, ctx.queries["lock_expired_jobs"], {"now": now, "limit": limit})
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    updated = await fetch_all(
        conn,
        ctx.queries["apply_expiry"],
        {
            "now": now,
            "ids": ids,
            "reasons": [expired_reason(utc(row["expires_at"])) for row in rows],
        },
    )
    jobs = {row["id"]: job_from_row(row) for row in updated}
    return [jobs[job_id] for job_id in ids if job_id in jobs]
