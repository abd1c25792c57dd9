"""Flow control, rate limits (docs/flow-control.md): a type of `ClaimParams.rate_limits` is
claimed at most `limit` times in any sliding window of its length, by all claimers together;
a type whose window is full never blocks the others; `rate_limit_free_at` says when the first
full window frees. Time is the harness's ManualClock, so windows move only when a test says."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import pytest

from tests.storage.factories import EMAIL, LEASE, REPORT, START, complete, insert, new_job
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.rate_limits import RateLimit
from timecrisis.storage.base import ClaimedJob, ClaimParams, JobStorage

FIVE_PER_SECOND = RateLimit(5, timedelta(seconds=1))


def _params(rates: Mapping[str, RateLimit], *, limit: int = 10, worker: str = "w") -> ClaimParams:
    return ClaimParams(
        worker=worker,
        limit=limit,
        lease_ttl=LEASE,
        type_limits={EMAIL: None, REPORT: None},
        rate_limits=rates,
    )


async def _claim(
    storage: JobStorage, rates: Mapping[str, RateLimit], *, limit: int = 10, worker: str = "w"
) -> list[str]:
    return [
        c.job.type for c in await storage.claim_jobs(_params(rates, limit=limit, worker=worker))
    ]


async def test_a_rate_limited_type_is_claimed_at_most_limit_times_per_window(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert(storage, *[new_job(EMAIL) for _ in range(20)])
    rates = {EMAIL: FIVE_PER_SECOND}

    assert len(await _claim(storage, rates, limit=3)) == 3
    assert len(await _claim(storage, rates)) == 2  # the window holds 5 starts now
    assert await _claim(storage, rates) == []
    clock.advance(0.999)
    assert await _claim(storage, rates) == []
    clock.advance(0.001)  # the first 5 starts are exactly one second old: out of the window
    assert len(await _claim(storage, rates)) == 5


async def test_the_window_slides_start_by_start(storage: JobStorage, clock: ManualClock) -> None:
    await insert(storage, *[new_job(EMAIL) for _ in range(20)])
    rates = {EMAIL: FIVE_PER_SECOND}
    assert len(await _claim(storage, rates, limit=3)) == 3  # at 0.0
    clock.advance(0.5)
    assert len(await _claim(storage, rates)) == 2  # at 0.5: full
    clock.advance(0.5)
    assert len(await _claim(storage, rates)) == 3  # at 1.0: the three of 0.0 left
    clock.advance(0.25)
    assert await _claim(storage, rates) == []  # at 1.25: the two of 0.5 are still in
    clock.advance(0.25)
    assert len(await _claim(storage, rates)) == 2  # at 1.5


async def test_a_full_window_does_not_block_other_types(storage: JobStorage) -> None:
    # The limited type's jobs come first (higher priority) and outnumber the claim.
    await insert(storage, *[new_job(EMAIL, priority=9) for _ in range(20)])
    await insert(storage, *[new_job(REPORT) for _ in range(20)])
    rates = {EMAIL: RateLimit(2, timedelta(minutes=1))}

    first = await _claim(storage, rates)
    second = await _claim(storage, rates)

    assert first == [EMAIL, EMAIL] + [REPORT] * 8
    assert second == [REPORT] * 10


async def test_a_type_without_a_rate_limit_is_not_counted(storage: JobStorage) -> None:
    await insert(storage, *[new_job(REPORT) for _ in range(30)])
    rates = {EMAIL: RateLimit(1, timedelta(hours=1))}
    assert len(await _claim(storage, rates, limit=30)) == 30


async def test_free_at_is_when_the_oldest_start_of_a_full_window_leaves(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert(storage, *[new_job(EMAIL) for _ in range(10)], new_job(REPORT))
    two_per_second = {EMAIL: RateLimit(2, timedelta(seconds=1))}
    assert await storage.rate_limit_free_at(two_per_second) is None  # never claimed

    await _claim(storage, two_per_second, limit=1)
    assert await storage.rate_limit_free_at(two_per_second) is None  # room left
    clock.advance(0.3)
    await _claim(storage, two_per_second, limit=1)  # full now: the start at 0.0 frees it

    assert await storage.rate_limit_free_at(two_per_second) == START + timedelta(seconds=1)
    clock.advance(0.7)
    assert await storage.rate_limit_free_at(two_per_second) is None
    # Several types: the earliest one that is full.
    both = {**two_per_second, REPORT: RateLimit(1, timedelta(minutes=1))}
    assert len(await _claim(storage, both)) == 2  # one email (0.3 still in) and the report
    assert await storage.rate_limit_free_at(both) == START + timedelta(seconds=1.3)


async def test_the_starts_of_every_claimer_count_and_a_changed_limit_applies_at_once(
    storage: JobStorage,
) -> None:
    await insert(storage, *[new_job(EMAIL) for _ in range(10)])
    assert len(await _claim(storage, {EMAIL: FIVE_PER_SECOND}, worker="a", limit=2)) == 2
    assert len(await _claim(storage, {EMAIL: FIVE_PER_SECOND}, worker="b")) == 3
    # A higher limit over the same window: the five starts made still count.
    assert len(await _claim(storage, {EMAIL: RateLimit(7, timedelta(seconds=1))})) == 2


@pytest.mark.parametrize("window", [timedelta(seconds=1), timedelta(minutes=1)])
async def test_concurrent_claimers_never_exceed_the_rate(
    harness: StoreHarness, clock: ManualClock, window: timedelta
) -> None:
    handles = [await harness.open() for _ in range(3)]
    await insert(handles[0], *[new_job(EMAIL) for _ in range(40)])
    await insert(handles[0], *[new_job(REPORT) for _ in range(30)])
    rates = {EMAIL: RateLimit(4, window)}
    started: list[str] = []

    async def claimer(storage: JobStorage, worker: str) -> None:
        while batch := await storage.claim_jobs(_params(rates, limit=3, worker=worker)):
            started.extend(c.job.type for c in batch)
            await asyncio.sleep(0)
            await _complete_all(storage, batch)

    for window_number in range(3):
        await asyncio.gather(*(claimer(s, f"node-{i}") for i, s in enumerate(handles)))
        # Every other job went; of the limited type exactly `limit` per window, never more.
        assert started.count(EMAIL) == 4 * (window_number + 1)
        clock.advance(window.total_seconds())
    assert started.count(REPORT) == 30


async def _complete_all(storage: JobStorage, batch: list[ClaimedJob]) -> None:
    for claimed in batch:
        await complete(storage, claimed)
