"""Flow control, the rules together (docs/flow-control.md): queues, pauses, rate limits and
concurrency keys compose in one claim on every store. A key's room counts its running jobs and
its jobs ahead in the queues this claim reads, so a job of the key in a paused queue or in a
queue the worker does not serve takes no place from the others; a rate limit counts the claims
of named-queue workers and every-queue workers alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from tests.storage.factories import EMAIL, LEASE, REPORT, insert, new_job
from timecrisis.rate_limits import RateLimit
from timecrisis.storage.base import ClaimedJob, ClaimParams, JobStorage


def _params(
    *,
    queues: set[str] | None,
    keys: Mapping[str, int] | None = None,
    rates: Mapping[str, RateLimit] | None = None,
    limit: int = 10,
) -> ClaimParams:
    return ClaimParams(
        worker="w",
        limit=limit,
        lease_ttl=LEASE,
        type_limits={EMAIL: None, REPORT: None},
        rate_limits=rates or {},
        key_limits={EMAIL: 1} if keys is None else keys,
        queues=None if queues is None else frozenset(queues),
    )


def _taken(batch: list[ClaimedJob]) -> list[tuple[str, str, str | None]]:
    return [(c.job.type, c.job.queue, c.job.concurrency_key) for c in batch]


async def _keyed_backlog(storage: JobStorage) -> None:
    """Type `email` limits its keys to 1. `user:1` already runs; the rest wait, best first:
    a paused queue and an unserved one hold the best job of `user:3` and `user:4`."""
    await insert(storage, new_job(EMAIL, queue="mail", priority=9, concurrency_key="user:1"))
    [running] = await storage.claim_jobs(_params(queues={"mail"}, limit=1))
    assert running.job.concurrency_key == "user:1"
    await insert(
        storage,
        new_job(EMAIL, queue="held", priority=8, concurrency_key="user:3"),  # paused queue
        new_job(EMAIL, queue="other", priority=8, concurrency_key="user:4"),  # not served
        new_job(EMAIL, queue="mail", priority=7, concurrency_key="user:1"),  # key at its limit
        new_job(EMAIL, queue="mail", priority=6, concurrency_key="user:2"),
        new_job(EMAIL, queue="bulk", priority=5, concurrency_key="user:2"),  # behind user:2
        new_job(EMAIL, queue="bulk", priority=4, concurrency_key="user:3"),
        new_job(EMAIL, queue="mail", priority=3, concurrency_key="user:4"),
        new_job(EMAIL, queue="bulk", priority=2),  # no key: only the type's limits apply
        new_job(REPORT, queue="mail", priority=1, concurrency_key="user:2"),  # keys not limited
    )
    await storage.pause("held")


async def test_a_keyed_type_in_named_queues_takes_exactly_the_jobs_every_rule_allows(
    storage: JobStorage,
) -> None:
    await _keyed_backlog(storage)

    batch = await storage.claim_jobs(_params(queues={"mail", "bulk", "held"}))

    assert _taken(batch) == [
        (EMAIL, "mail", "user:2"),
        (EMAIL, "bulk", "user:3"),  # the paused queue's user:3 holds no place
        (EMAIL, "mail", "user:4"),  # nor does the unserved queue's user:4
        (EMAIL, "bulk", None),
        (REPORT, "mail", "user:2"),
    ]
    assert await storage.claim_jobs(_params(queues={"mail", "bulk", "held"})) == []


async def test_a_keyed_type_claimed_from_every_queue_steps_over_the_paused_one(
    storage: JobStorage,
) -> None:
    await _keyed_backlog(storage)

    batch = await storage.claim_jobs(_params(queues=None))

    assert _taken(batch) == [
        (EMAIL, "other", "user:4"),  # served now: it goes first, and its key is then full
        (EMAIL, "mail", "user:2"),
        (EMAIL, "bulk", "user:3"),
        (EMAIL, "bulk", None),
        (REPORT, "mail", "user:2"),
    ]
    await storage.resume("held")
    assert await storage.claim_jobs(_params(queues=None)) == []  # user:3 now runs already


async def test_a_paused_type_stays_paused_whatever_its_keys(storage: JobStorage) -> None:
    await _keyed_backlog(storage)
    await storage.pause(EMAIL)

    batch = await storage.claim_jobs(_params(queues={"mail", "bulk"}))

    assert _taken(batch) == [(REPORT, "mail", "user:2")]


async def test_a_rate_limit_counts_the_claims_of_every_queue_scope(storage: JobStorage) -> None:
    rates = {EMAIL: RateLimit(3, timedelta(hours=1))}
    await insert(storage, *[new_job(EMAIL, queue=q) for q in ("mail", "bulk") * 3])
    await storage.pause("bulk")

    named = await storage.claim_jobs(_params(queues={"mail", "bulk"}, rates=rates, limit=2))
    await storage.resume("bulk")
    every = await storage.claim_jobs(_params(queues=None, rates=rates))

    assert [c.job.queue for c in named] == ["mail", "mail"]
    assert len(every) == 1  # the window's third start, whichever scope claims it
    assert await storage.claim_jobs(_params(queues={"bulk"}, rates=rates)) == []
