"""How many claimed jobs a worker may hold beyond its free slots (prefetch).

Why prefetch at all: with short jobs a worker's rate is bounded by its claim round trip. At
concurrency 10 it claims 10 jobs, runs them in about a millisecond, then waits several
milliseconds for the next claim while its slots stand empty (docs/performance.md, W2). Holding
claimed jobs in a local buffer lets a claim of many jobs run in the database while the worker
works off the previous one, and a larger claim costs the database less per job.

Why it must stay small and adaptive: a prefetched job is claimed (leased, counted as running by
the store) but waits for a slot. Behind long handlers it would wait a long time while another
worker sits idle: Celery's prefetch multiplier is the field's best-known example of that
complaint. So the budget is sized from how long handlers take: a worker prefetches no more jobs
than it expects to start within `HORIZON`, judged by its recent handler durations and by the
age of the oldest handler still running. With no-op jobs it prefetches its whole ceiling; once
handlers take longer than `concurrency x HORIZON` (half a second at concurrency 10) it
prefetches nothing, exactly as without prefetch. A job
that waits for a slot longer than `MAX_WAIT` anyway (the handlers suddenly got slow) is handed
back to the queue, without charging an attempt (`JobProcessor`).
"""

from __future__ import annotations

# A prefetched job should start within about this long of being claimed.
HORIZON = 0.05
# A prefetched job still waiting for a slot after this long is handed back to the queue.
MAX_WAIT = 1.0
# Weight of the newest handler duration in the moving average: it follows a change of workload
# within a few dozen jobs, and one outlier moves it little.
_SMOOTHING = 0.1


class PrefetchBudget:
    """The number of jobs to hold beyond `concurrency`, at most `ceiling`."""

    def __init__(self, *, concurrency: int, ceiling: int) -> None:
        self.concurrency = concurrency
        self.ceiling = ceiling
        self._average: float | None = None  # seconds; None until a handler has returned

    def record(self, duration: float) -> None:
        """A handler took `duration` seconds (success or failure alike)."""
        duration = max(duration, 0.0)
        if self._average is None:
            self._average = duration
        else:
            self._average += _SMOOTHING * (duration - self._average)

    def allowance(self, oldest_running_age: float) -> int:
        """How many jobs may wait locally now. Nothing before the first handler returned (a
        worker does not know yet whether its jobs are short); then as many as `concurrency`
        slots get through in `HORIZON`, with the average duration raised to the age of the
        oldest handler still running (a handler that is still busy is at least that long)."""
        if self.ceiling <= 0 or self._average is None:
            return 0
        duration = max(self._average, oldest_running_age)
        if duration <= 0:
            return self.ceiling
        return max(0, min(self.ceiling, int(self.concurrency * HORIZON / duration)))
