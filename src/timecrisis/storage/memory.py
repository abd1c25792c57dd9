"""`InMemoryJobStorage`: the reference implementation of the `JobStorage` contract.

It is what the conformance suite measures the other backends against, and the store users put
under their own tests. Nothing survives the process.

Atomicity: every method does all its work synchronously while holding one `threading.Lock`,
never awaiting in between. On one event loop that alone makes each call atomic; the lock makes
it hold too when several loops in several threads share one store (several schedulers in one
test process). The lock is never held across an `await`, so it cannot deadlock a loop.

Indexes keep the hot paths off a scan of every job (see `_memory/`): pending jobs sit in
per-type heaps in claim order, running counts are kept per type, unique keys and schedule
ticks in maps, finished jobs in heaps by finish time, and metrics in running totals.

Every record returned is a fresh, frozen pydantic model whose JSON values were decoded from
the stored JSON text, so no caller ever holds a reference into the store's state.

Choices where the contract is silent (the conformance suite pins them for every backend):
- a job for a schedule tick that already has a job is refused like a held unique key:
  `created=False` with the existing job's id (`advance_schedule` then reports no `job_id`);
- a job id that already exists makes the whole batch fail with `StorageError`;
- `retry_job` refuses (False) to revive a job whose unique key another live job now holds;
- log lines for a job that no longer exists are dropped;
- `close()` only drops the wake-up listeners: the data stays usable.
"""

from __future__ import annotations

from timecrisis.clock import Clock, SystemClock
from timecrisis.storage._facade import Store
from timecrisis.storage._memory.backend import MemoryBackend
from timecrisis.storage.base import StoreCapabilities

__all__ = ["InMemoryJobStorage"]


class InMemoryJobStorage(Store[MemoryBackend]):
    """A `JobStorage` that keeps everything in this process's memory.

    `clock` is the store's one clock (the system clock by default); tests pass a
    `ManualClock` to expire leases and locks without sleeping.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        # One process, one store: nothing to hear from elsewhere, no transactions to join.
        super().__init__(MemoryBackend(clock or SystemClock()), capabilities=StoreCapabilities())
