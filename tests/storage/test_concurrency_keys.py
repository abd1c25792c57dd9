"""Flow control, concurrency keys (docs/flow-control.md): at most `ClaimParams.key_limits[type]`
running jobs of a type share one `concurrency_key`, across all claimers; other keys, and jobs
without a key, are not held back; a key at its limit at the head of the queue does not delay
the jobs behind it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping

from tests.storage.factories import EMAIL, LEASE, REPORT, complete, get, insert, new_job
from tests.storage.harness import StoreHarness
from timecrisis.storage.base import ClaimedJob, ClaimParams, JobStorage


def _params(
    keys: Mapping[str, int], *, limit: int = 10, worker: str = "w", email_cap: int | None = None
) -> ClaimParams:
    return ClaimParams(
        worker=worker,
        limit=limit,
        lease_ttl=LEASE,
        type_limits={EMAIL: email_cap, REPORT: None},
        key_limits=keys,
    )


def _keys(batch: list[ClaimedJob]) -> list[str | None]:
    return [c.job.concurrency_key for c in batch]


async def test_the_key_is_stored_with_the_job(storage: JobStorage) -> None:
    [job_id] = await insert(storage, new_job(EMAIL, concurrency_key="user:1"))
    assert (await get(storage, job_id)).concurrency_key == "user:1"
    [claimed] = await storage.claim_jobs(_params({EMAIL: 1}))
    assert claimed.job.concurrency_key == "user:1"


async def test_at_most_key_concurrency_jobs_of_one_key_run(storage: JobStorage) -> None:
    await insert(storage, *[new_job(EMAIL, concurrency_key=k) for k in "aaaaabbbbb"])

    first = await storage.claim_jobs(_params({EMAIL: 2}))
    assert _keys(first) == ["a", "a", "b", "b"]
    assert await storage.claim_jobs(_params({EMAIL: 2})) == []

    await complete(storage, first[0])  # one "a" finished: room for one more "a"
    assert _keys(await storage.claim_jobs(_params({EMAIL: 2}))) == ["a"]


async def test_jobs_without_a_key_and_other_types_are_not_held_back(storage: JobStorage) -> None:
    await insert(storage, *[new_job(EMAIL, concurrency_key="a") for _ in range(3)])
    await insert(storage, *[new_job(EMAIL) for _ in range(3)])
    await insert(storage, *[new_job(REPORT, concurrency_key="a") for _ in range(3)])

    batch = await storage.claim_jobs(_params({EMAIL: 1}))

    assert Counter((c.job.type, c.job.concurrency_key) for c in batch) == {
        (EMAIL, "a"): 1,
        (EMAIL, None): 3,
        (REPORT, "a"): 3,  # the same key on a type that does not limit keys
    }


async def test_a_key_at_its_limit_at_the_head_does_not_delay_the_others(
    storage: JobStorage,
) -> None:
    await insert(storage, *[new_job(EMAIL, priority=9, concurrency_key="hot") for _ in range(100)])
    await insert(storage, *[new_job(EMAIL, concurrency_key=f"user:{n}") for n in range(30)])

    first = await storage.claim_jobs(_params({EMAIL: 1}))
    second = await storage.claim_jobs(_params({EMAIL: 1}))

    assert _keys(first) == ["hot"] + [f"user:{n}" for n in range(9)]
    assert _keys(second) == [f"user:{n}" for n in range(9, 19)]


async def test_a_key_takes_its_jobs_in_claim_order_within_the_type_limit(
    storage: JobStorage,
) -> None:
    low = await insert(storage, new_job(EMAIL, priority=1, concurrency_key="k"))
    high = await insert(
        storage, *[new_job(EMAIL, priority=5, concurrency_key="k") for _ in range(2)]
    )
    await insert(storage, *[new_job(EMAIL, priority=3) for _ in range(5)])

    batch = await storage.claim_jobs(_params({EMAIL: 2}, email_cap=4))

    ids = [c.job.id for c in batch]
    assert ids[:2] == high and low[0] not in ids  # the key's two best, then the type's cap
    assert len(batch) == 4


async def test_concurrent_claimers_never_exceed_a_keys_limit(harness: StoreHarness) -> None:
    handles = [await harness.open() for _ in range(3)]
    keys = ["a", "b", "c"] * 12
    await insert(handles[0], *[new_job(EMAIL, concurrency_key=k) for k in keys])
    await insert(handles[0], *[new_job(EMAIL) for _ in range(12)])
    running: Counter[str | None] = Counter()  # a subset of the store's running jobs
    peaks: Counter[str | None] = Counter()
    done = 0

    async def claimer(storage: JobStorage, worker: str) -> None:
        nonlocal done
        while batch := await storage.claim_jobs(_params({EMAIL: 2}, limit=3, worker=worker)):
            running.update(_keys(batch))
            for key, count in running.items():
                peaks[key] = max(peaks[key], count)
            await asyncio.sleep(0)
            for claimed in batch:
                running[claimed.job.concurrency_key] -= 1
                await complete(storage, claimed)
                done += 1
                await asyncio.sleep(0)

    await asyncio.gather(*(claimer(s, f"node-{i}") for i, s in enumerate(handles)))

    assert done == 48
    assert max(peaks["a"], peaks["b"], peaks["c"]) <= 2
