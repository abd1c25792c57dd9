-- timecrisis SQLite schema, version 1.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC. Integers compare and sort exactly
-- (an ISO text column sorts correctly only while every value has the same format and offset),
-- round-trip a Python datetime to the microsecond with no float rounding, index compactly, and
-- convert with one integer addition instead of text parsing on the claim/complete hot path.
--
-- Every `status = '...'` in a partial index below is repeated literally in the queries that
-- should use it: SQLite only picks a partial index when the query's WHERE implies the index's.
-- The hot and the maintenance queries name their index (INDEXED BY): without statistics the
-- planner prefers any equality index, and `status = 'pending'` on jobs_status_seq would read
-- and sort the whole pending queue (tests/sqlite/test_queries.py checks every plan).

CREATE TABLE jobs (
    -- The rowid: enqueue order. Claims break priority ties with it and `list_jobs` pages by
    -- it (keyset), because timestamps repeat and a UUID says nothing about order.
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,                      -- JSON
    -- Kept in step with `timecrisis.models.JobStatus` (tests/sqlite/test_migrations.py checks).
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    priority INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    backoff_strategy TEXT NOT NULL CHECK (backoff_strategy IN ('exponential', 'linear')),
    retry_delay REAL NOT NULL,               -- seconds
    max_retry_delay REAL NOT NULL,           -- seconds
    entity_id TEXT,
    scheduled_job_id TEXT,
    schedule_fire_at INTEGER,
    unique_key TEXT,
    run_at INTEGER NOT NULL,
    expires_at INTEGER,
    progress REAL NOT NULL DEFAULT 0,
    fail_reason TEXT,
    result TEXT,                             -- JSON
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    worker TEXT,
    -- The claim: a fencing token, the lease, and the run the claim opened.
    lock_token TEXT,
    lock_expires_at INTEGER,
    run_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0
);

-- The pending queue, per type, in claim order. Partial, so finished jobs never slow a claim;
-- led by `type` so a claim reads each claimable type's queue head directly: a type at its
-- concurrency limit, or a type no worker here can run, is never even scanned, however large
-- its backlog (a single (priority, seq) index would have to walk past that backlog).
CREATE INDEX jobs_pending_queue ON jobs (type, priority DESC, seq) WHERE status = 'pending';
CREATE INDEX jobs_pending_expiry ON jobs (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;
-- Running jobs by lease expiry, for the reaper. (Running jobs by type, for the cluster-wide
-- limits, are counted from jobs_type_status below, which covers that count: a second,
-- partial index on (type) would only add a write to every claim and completion.)
CREATE INDEX jobs_running_lease ON jobs (lock_expires_at) WHERE status = 'running';
-- unique_key: one live (pending or running) job per (type, key).
CREATE UNIQUE INDEX jobs_unique_key ON jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
-- Exactly one job per schedule tick, whoever fires it, for as long as that job exists.
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (scheduled_job_id, schedule_fire_at)
    WHERE scheduled_job_id IS NOT NULL;
-- allow_overlap=False: does this schedule still have a live job?
CREATE INDEX jobs_schedule_live ON jobs (scheduled_job_id)
    WHERE scheduled_job_id IS NOT NULL AND status IN ('pending', 'running');
-- list_jobs filters, newest first, keyset-paged by seq.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_type_seq ON jobs (type, seq);
CREATE INDEX jobs_entity_seq ON jobs (entity_id, seq) WHERE entity_id IS NOT NULL;
CREATE INDEX jobs_dead_letters ON jobs (seq) WHERE dead_lettered = 1;
-- get_metrics counts from this index alone (it covers type, status and dead_lettered), and so
-- does the claim's count of running jobs per limited type.
CREATE INDEX jobs_type_status ON jobs (type, status, dead_lettered);
-- purge_jobs, oldest finished first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_runs (
    seq INTEGER PRIMARY KEY,                 -- creation order = attempt order
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,                  -- copied here so metrics need no join
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'released')),
    worker TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    duration REAL,                           -- seconds
    progress REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX job_runs_job ON job_runs (job_id, seq);
-- Average duration per type, from this index alone (`status` is a column too: SQLite reads
-- the table to check a partial index's WHERE unless the index itself holds the column).
CREATE INDEX job_runs_completed ON job_runs (job_type, duration, status)
    WHERE status = 'completed';

CREATE TABLE job_logs (
    seq INTEGER PRIMARY KEY,                 -- insertion order among equal timestamps
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    run_id TEXT,
    timestamp INTEGER NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message TEXT NOT NULL,
    metadata TEXT                            -- JSON
);
CREATE INDEX job_logs_job ON job_logs (job_id, seq);

CREATE TABLE scheduled_jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,                      -- JSON
    schedule_type TEXT NOT NULL CHECK (schedule_type IN ('cron', 'interval', 'exact')),
    schedule_value TEXT NOT NULL,
    time_zone TEXT,
    enabled INTEGER NOT NULL,
    allow_overlap INTEGER NOT NULL,
    next_run_at INTEGER,
    last_scheduled_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (next_run_at)
    WHERE enabled = 1 AND next_run_at IS NOT NULL;

CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    is_leader INTEGER NOT NULL,
    running INTEGER NOT NULL
);

CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
