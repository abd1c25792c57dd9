"""`SQLiteJobStorage`: the embedded default. Several processes, and several schedulers in each,
share one file safely.

How it holds together (each module's docstring has the details):

- `_connection.py`: every handle owns one connection and one daemon thread. Each protocol
  method is ONE transaction function run in that thread (one thread hop per call, however many
  statements), writes under `BEGIN IMMEDIATE`, with the store's clock read once inside the
  transaction. SQLite's single writer then makes every decision atomic across processes: the
  claim and its per-type limits, fencing tokens, the leader lock, the schedule
  compare-and-set. WAL with `synchronous=NORMAL`: a commit survives the crash of any process.
- `_migrate.py`: versioned migrations, applied once per handle before its first call (so
  every method initialises the store lazily, `init()` included), safe when processes start
  together, refusing a schema newer than the code.
- `_claims.py`: the claim is one UPDATE over per-type queue heads; batches are set-based.
- `_backend.py`: the engine behind the shared facade (`storage/_facade.py`, which owns the
  wake-up rules and the trivial inputs): one method per call, one transaction each.
- `_watcher.py`: SQLite cannot push, so while someone listens for wake-ups a thread polls
  `PRAGMA data_version` every 20 ms. A job enqueued in another process is claimed here within
  about 20 to 50 ms; this handle's own inserts, releases and retries wake listeners at once.

A call whose caller is cancelled before its turn in the thread never runs; once it runs it
commits whatever happens to the caller (a transaction is never cut in half). A claim whose
caller went away that way leaves its jobs running until their lease expires and the reaper
retries them, the same path as a worker that died.
"""

from __future__ import annotations

import os
from pathlib import Path

from timecrisis.clock import Clock, SystemClock
from timecrisis.storage._facade import Store
from timecrisis.storage._wakeups import WakeupHub
from timecrisis.storage.base import StoreCapabilities
from timecrisis.storage.sqlite._backend import SQLiteBackend
from timecrisis.storage.sqlite._watcher import DataVersionWatcher

DEFAULT_WAKEUP_POLL_INTERVAL = 0.02
"""Seconds between two looks at `PRAGMA data_version` while someone listens for wake-ups."""

CAPABILITIES = StoreCapabilities(complete_and_claim=True, cross_process_wakeups=True)


class SQLiteJobStorage(Store[SQLiteBackend]):
    """A `JobStorage` on one SQLite file, created with its schema on first use.

    `busy_timeout` (seconds) bounds how long a call waits for another process's write lock
    before raising `StorageError`. `clock` is for tests (the system clock by default);
    `wakeup_poll_interval` sets how often other processes' writes are looked for.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        wakeup_poll_interval: float = DEFAULT_WAKEUP_POLL_INTERVAL,
    ) -> None:
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must not be negative, got {busy_timeout}")
        if wakeup_poll_interval <= 0:
            raise ValueError(f"wakeup_poll_interval must be positive, got {wakeup_poll_interval}")
        self.path = Path(path)
        if str(self.path) == ":memory:":
            raise ValueError(
                "SQLiteJobStorage needs a file that processes can share; use "
                "InMemoryJobStorage for a store in memory"
            )
        # Absolute now, so a later chdir cannot point the connections at another file.
        file = self.path.absolute()
        hub = WakeupHub()
        watcher = DataVersionWatcher(file, wakeup_poll_interval, hub.notify)
        backend = SQLiteBackend(file, clock or SystemClock(), busy_timeout, watcher)
        super().__init__(
            backend,
            capabilities=CAPABILITIES,
            combined=backend,
            remote=backend.watching,
            hub=hub,
        )

    def __repr__(self) -> str:
        return f"SQLiteJobStorage({str(self.path)!r})"
