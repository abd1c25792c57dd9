"""LeaseKeeper.stop() ends the renewal loop even when a renewal swallowed the cancellation."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import cast

from tests.unit.lost_cancellation import sleep_losing_cancellation
from timecrisis.loops._held import Held, RunningJob
from timecrisis.loops._leases import LeaseKeeper
from timecrisis.loops.runtime import Runtime


async def test_stop_ends_the_loop_when_a_renewal_lost_the_cancellation() -> None:
    # The loop renewed `while True`: a renewal whose library call swallowed the cancellation
    # (seen with psycopg at a stop) returned normally, and stop() waited forever.
    runtime = SimpleNamespace(
        settings=SimpleNamespace(lease_renewal_interval=0.01, job_lock_ttl=timedelta(seconds=60))
    )
    held = SimpleNamespace(jobs={"job": object()})
    keeper = LeaseKeeper(cast(Runtime, runtime), cast(Held, held), logging.getLogger("t"))
    renewing = asyncio.Event()

    async def renewal_that_loses_the_cancellation(jobs: list[RunningJob]) -> None:
        renewing.set()
        await sleep_losing_cancellation(10)

    keeper.renew = renewal_that_loses_the_cancellation  # type: ignore[method-assign]
    keeper.start()
    await renewing.wait()
    stopping = asyncio.ensure_future(keeper.stop())
    # A safety net, not a timing assertion: without the fix stop() never returns.
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "stop() waited for a renewal loop that never ends"
