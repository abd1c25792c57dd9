-- timecrisis SQLite schema, version 1.
-- Times are INTEGER microseconds since the Unix epoch (UTC): exact round trips, cheap
-- comparisons and index-friendly ordering, with no text-format parsing on the hot path.

CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- enqueue order: claim tie-break and keyset paging
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,                      -- JSON
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    priority INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    backoff_strategy TEXT NOT NULL CHECK (backoff_strategy IN ('exponential', 'linear')),
    retry_delay REAL NOT NULL,
    max_retry_delay REAL NOT NULL,
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
    lock_token TEXT,
    lock_expires_at INTEGER,
    run_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0
);

-- The pending queue in claim order; partial, so finished jobs never slow the claim scan.
CREATE INDEX jobs_pending_queue ON jobs (priority DESC, seq) WHERE status = 'pending';
CREATE INDEX jobs_pending_expiry ON jobs (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX jobs_running_type ON jobs (type) WHERE status = 'running';
CREATE INDEX jobs_running_lease ON jobs (lock_expires_at) WHERE status = 'running';
CREATE INDEX jobs_running_worker ON jobs (worker) WHERE status = 'running';
-- unique_key: one live (pending or running) job per (type, key).
CREATE UNIQUE INDEX jobs_unique_key ON jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
-- Exactly one job per schedule tick, whoever fires it.
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (scheduled_job_id, schedule_fire_at)
    WHERE scheduled_job_id IS NOT NULL AND schedule_fire_at IS NOT NULL;
CREATE INDEX jobs_schedule_live ON jobs (scheduled_job_id)
    WHERE scheduled_job_id IS NOT NULL AND status IN ('pending', 'running');
-- Listing filters (newest first) and metrics.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_type_seq ON jobs (type, seq);
CREATE INDEX jobs_entity_seq ON jobs (entity_id, seq) WHERE entity_id IS NOT NULL;
CREATE INDEX jobs_dead_seq ON jobs (seq) WHERE dead_lettered = 1;
CREATE INDEX jobs_type_status ON jobs (type, status, dead_lettered);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,                  -- kept here so metrics need no join
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'released')),
    worker TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    duration REAL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX job_runs_job ON job_runs (job_id, seq);
CREATE INDEX job_runs_completed ON job_runs (job_type, duration) WHERE status = 'completed';

CREATE TABLE job_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
