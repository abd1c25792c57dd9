"""Leader election: one lease row, taken and renewed through the store.

Rules (after River's `internal/leadership` and Oban's `peers/database.ex`):

- Every node tries to take the lock `timecrisis:leader` every `leader_lock_ttl / 3`. The store
  grants it only when it is free or expired, and hands out a fresh token each time.
- The leader renews at the same pace, presenting its token. The renewal is the only proof of
  leadership: if it returns False, raises, or does not answer within a third of the TTL, the node
  steps down at once ("can't know whether the lease is still held") and tries again later as a
  follower. It never crashes the process.
- Trust window: a leader whose last successful renewal *started* more than `ttl - margin` ago
  steps down locally even before the store says so, so two nodes never both act as leader for
  longer than a clock's drift.
- Leader-only work that must never happen twice (firing a schedule tick) is fenced in the store
  as well (compare-and-set plus a unique key), so even a paused, deposed leader cannot double-fire.
- `stop()` resigns at once: it releases the lock so a follower takes over at its next attempt,
  and calls `on_leadership_lost`.
- An acquire that does not answer within its round is not cancelled: it may commit after the
  round gave up, and its token would be lost with it, leaving the lock held by nobody who knows
  it until the lease expires (a whole TTL without a leader). It keeps running, and a later
  round takes its answer; only one older than the TTL, whose lock has expired by then, is
  dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from timecrisis._logging import child
from timecrisis.hooks import call_hook
from timecrisis.loops.runtime import Runtime
from timecrisis.storage.base import LEADER_LOCK


class LeaderElector:
    def __init__(self, runtime: Runtime, on_change: Callable[[bool], None]) -> None:
        self._runtime = runtime
        self._on_change = on_change
        self._logger = child(runtime.logger, "leader")
        self._token: str | None = None
        self._last_renewal_started = 0.0
        self._acquiring: asyncio.Task[str | None] | None = None
        self._acquire_started = 0.0

    @property
    def interval(self) -> float:
        return self._runtime.settings.leader_lock_ttl.total_seconds() / 3

    @property
    def is_leader(self) -> bool:
        return self._token is not None

    async def step(self) -> float | None:
        storage = self._runtime.storage
        ttl = self._runtime.settings.leader_lock_ttl
        started = time.monotonic()
        if self._token is not None:
            margin = ttl.total_seconds() / 6
            if started - self._last_renewal_started > ttl.total_seconds() - margin:
                await self._step_down("the lease could not be renewed within its TTL")
                return self.interval
            try:
                async with asyncio.timeout(self.interval):  # not wait_for: see wait_for_event
                    renewed = await storage.renew_lock(LEADER_LOCK, self._token, ttl)
            except Exception as exc:  # noqa: BLE001 - unknown lease state: step down, stay up
                await self._step_down(f"renewal failed ({type(exc).__name__}: {exc})")
                return self.interval
            if not renewed:
                await self._step_down("another node holds the lease")
            else:
                self._last_renewal_started = started
            return self.interval

        token = await self._acquire()
        if token is not None:
            self._token = token
            # The lease runs from when the store granted it, at the earliest when we asked.
            self._last_renewal_started = self._acquire_started
            self._runtime.is_leader = True
            self._logger.info("%s is now the leader", self._runtime.worker)
            self._on_change(True)
            await call_hook(
                self._logger,
                "on_leadership_acquired",
                self._runtime.hooks.on_leadership_acquired,
            )
        return self.interval

    async def _acquire(self) -> str | None:
        """The answer of the acquire in flight (a new one if none is): a token, None if
        another node leads, or the store's error. TimeoutError if it does not answer within
        this round; it then keeps running for the next round (see the module docstring)."""
        ttl = self._runtime.settings.leader_lock_ttl
        task = self._acquiring
        if task is None:
            storage, worker = self._runtime.storage, self._runtime.worker
            task = asyncio.get_running_loop().create_task(
                storage.acquire_lock(LEADER_LOCK, worker, ttl), name="timecrisis-leader-acquire"
            )
            self._acquiring = task
            self._acquire_started = time.monotonic()
        # asyncio.wait, not a timeout around the call: the call must survive the round.
        await asyncio.wait({task}, timeout=self.interval)
        if not task.done():
            if time.monotonic() - self._acquire_started > ttl.total_seconds():
                task.cancel()  # whatever it may still take has expired by now
                self._acquiring = None
            raise TimeoutError("acquiring the leader lock did not answer within a round")
        self._acquiring = None
        return task.result()

    async def resign(self, timeout: float | None = None) -> None:
        """Give leadership up at stop. `timeout` bounds each store call: a stop must end even
        when the store does not answer (the lease then simply expires)."""
        await self._drop_acquire(self.interval if timeout is None else min(timeout, self.interval))
        token = self._token
        if token is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._runtime.storage.release_lock(LEADER_LOCK, token)
        except Exception as exc:  # noqa: BLE001 - the lease will simply expire
            self._logger.warning(
                "could not release leadership (%s); it expires in %s",
                f"{type(exc).__name__}: {exc}" if str(exc) else "no answer in time",
                self._runtime.settings.leader_lock_ttl,
            )
        await self._step_down("the scheduler is stopping", level=logging.INFO)

    async def _drop_acquire(self, wait: float) -> None:
        """At stop: an acquire still in flight gets one more round to answer; a lock it took
        is released, so a follower need not wait for it to expire."""
        task, self._acquiring = self._acquiring, None
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=wait)
        if not task.done():
            task.cancel()
            return
        if task.cancelled() or task.exception() is not None:
            return
        token = task.result()
        if token is not None:
            with contextlib.suppress(Exception):  # the lease will simply expire
                async with asyncio.timeout(wait):
                    await self._runtime.storage.release_lock(LEADER_LOCK, token)

    async def _step_down(self, reason: str, *, level: int = logging.WARNING) -> None:
        """Give leadership up. A lost lease or a failing store is a WARNING (an operator may
        want to know why leadership moved); a resignation at stop() is routine: INFO."""
        if self._token is None:
            return
        self._token = None
        self._runtime.is_leader = False
        self._logger.log(level, "%s stepped down as leader: %s", self._runtime.worker, reason)
        self._on_change(False)
        await call_hook(self._logger, "on_leadership_lost", self._runtime.hooks.on_leadership_lost)
