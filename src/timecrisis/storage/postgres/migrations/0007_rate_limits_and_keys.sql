-- timecrisis PostgreSQL schema, version 7: flow control, rate limits and concurrency keys
-- (docs/flow-control.md). `{schema}` is replaced by the quoted schema name. Depends on
-- version 5 only.
--
-- `concurrency_key`: the enqueue's key; at most the type's `key_concurrency` jobs with one key
-- run at once. Two partial indexes serve the claim, which asks of each candidate "how many of
-- its key run" (jobs_running_keys) and "how many of its key wait ahead of it"
-- (jobs_pending_keys, in claim order), so 100,000 distinct keys cost an index probe each, not
-- a scan. Jobs without a key are in neither. Nullable without a default: no table rewrite.
--
-- `rate_limit_starts`: one row per claim of a rate-limited type, `starts` jobs at
-- `started_at`; `first_start` numbers the type's starts (the row's first is start number
-- `first_start`, the next row's is `first_start + starts`). The claim reads two rows per type
-- (the newest, the oldest still inside the window) whatever the rate, and prunes the rows that
-- left the window (queries.sql `claim_jobs`).

ALTER TABLE {schema}.jobs ADD COLUMN concurrency_key text;

CREATE INDEX jobs_running_keys ON {schema}.jobs (type, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_pending_keys ON {schema}.jobs (type, concurrency_key, priority DESC, seq)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;

CREATE TABLE {schema}.rate_limit_starts (
    type text NOT NULL,
    first_start bigint NOT NULL,
    starts int NOT NULL,
    started_at timestamptz NOT NULL,
    PRIMARY KEY (type, first_start)
);
CREATE INDEX rate_limit_starts_time ON {schema}.rate_limit_starts (type, started_at);
