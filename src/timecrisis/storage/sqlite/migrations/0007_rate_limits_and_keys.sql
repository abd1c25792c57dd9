-- timecrisis SQLite schema, version 7: flow control, rate limits and concurrency keys
-- (docs/flow-control.md). Depends on version 5 only.
--
-- `concurrency_key`: the enqueue's key; at most the type's `key_concurrency` jobs with one key
-- run at once. Two partial indexes serve the claim, which asks of each candidate "how many of
-- its key run" (jobs_running_keys) and "how many of its key wait ahead of it"
-- (jobs_pending_keys, in claim order), so 100,000 distinct keys cost an index probe each, not
-- a scan. Jobs without a key are in neither.
--
-- `rate_limit_starts`: one row per claim of a rate-limited type, `starts` jobs at
-- `started_at`; `first_start` numbers the type's starts (the row's first is start number
-- `first_start`, the next row's is `first_start + starts`). The claim reads two rows per type
-- (the newest, the oldest still inside the window) whatever the rate, and prunes the rows that
-- left the window (sqlite/_claims.py, `_rate_rooms`).

ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

CREATE INDEX jobs_running_keys ON jobs (type, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_pending_keys ON jobs (type, concurrency_key, priority DESC, seq)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;

CREATE TABLE rate_limit_starts (
    type TEXT NOT NULL,
    first_start INTEGER NOT NULL,
    starts INTEGER NOT NULL,
    started_at INTEGER NOT NULL,  -- microseconds since the epoch, as every time here
    PRIMARY KEY (type, first_start)
) WITHOUT ROWID;
CREATE INDEX rate_limit_starts_time ON rate_limit_starts (type, started_at);
