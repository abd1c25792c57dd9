"""The time a stop may take, shared by every step of it.

A stop has two phases: the *wait* (up to `shutdown_timeout` for running handlers; none when
forced) and the *writes* (completions, releases, unregistering). With the store unreachable a
single write may hang for as long as its driver likes (psycopg's pool waits 30 s for a
connection, and the worker retried completions without end), so no call on the stop path is
unbounded: each runs under `bounded()`, whose deadline is the end of the wait plus `GRACE`.
A forced stop (`stop(force=True)`, a second signal) moves both ends to now, and the deadline of
every call in flight with them, so it returns within `GRACE` (plus `FLOOR` per remaining call).
What could not be written is logged at ERROR by the caller; the leases then expire and the
leader's reaper gives the jobs back (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# Time for the last writes after the wait: enough for a live store (a few round trips), short
# enough that a dead one costs little on top of `shutdown_timeout`.
GRACE = 1.0
# A call whose budget is used up still gets this long: on a live store it is plenty, and one
# slow call must not make every later write fail without being tried.
FLOOR = 0.1


class StopBudget:
    """Deadlines of one stop, on the event loop's clock (the one `asyncio.timeout` uses)."""

    def __init__(self, wait: float, *, force: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.began = now
        self.wait_until = now if force else now + max(wait, 0.0)
        self.deadline = self.wait_until + GRACE
        self.forced = asyncio.Event()
        if force:
            self.forced.set()
        self._scopes: set[asyncio.Timeout] = set()

    def elapsed(self) -> float:
        return self._loop.time() - self.began

    def wait_left(self) -> float:
        """Seconds left of the wait for running handlers."""
        return max(self.wait_until - self._loop.time(), 0.0)

    def end_wait(self) -> None:
        """The handlers are done (or out of time): the writes get `GRACE` from now, whatever
        was left of the wait; a dead store then costs `GRACE`, not the whole timeout."""
        now = self._loop.time()
        self.wait_until = min(self.wait_until, now)
        self.deadline = min(self.deadline, now + GRACE)

    def force(self) -> None:
        """Stop waiting now; give the writes in flight and to come `GRACE` at most."""
        now = self._loop.time()
        self.wait_until = min(self.wait_until, now)
        self.deadline = min(self.deadline, now + GRACE)
        self.forced.set()
        for scope in self._scopes:
            when = scope.when()
            if when is None or when > self.deadline:
                scope.reschedule(self.deadline)

    @contextlib.asynccontextmanager
    async def bounded(self, cap: float | None = None) -> AsyncIterator[None]:
        """Run the block until the deadline (`cap` seconds at most, `FLOOR` at least); raises
        `TimeoutError` when it overruns."""
        now = self._loop.time()
        when = max(self.deadline, now + FLOOR)
        if cap is not None:
            when = min(when, now + max(cap, FLOOR))
        async with asyncio.timeout_at(when) as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)

    async def wait_for_handlers(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait until the tasks end, the wait is over, or the stop is forced."""
        if not tasks or self.forced.is_set():
            return
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        forced = asyncio.ensure_future(self.forced.wait())
        try:
            await asyncio.wait(
                [all_done, forced], timeout=self.wait_left(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            all_done.cancel()  # cancels the wait only, never the handlers
            forced.cancel()
