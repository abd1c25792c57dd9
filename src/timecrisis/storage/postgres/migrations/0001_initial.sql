-- timecrisis PostgreSQL schema, version 1. `{schema}` is replaced by the quoted schema name
-- (psycopg.sql.Identifier); every object lives in that schema.
--
-- Payloads, results and log metadata are `json`, not `jsonb`: `json` keeps the text exactly as
-- written, so values round-trip exactly (jsonb would turn 1e20 into an integer and drop
-- duplicate keys). Nothing queries inside them.
--
-- Index policy: a status change is never a HOT update (status is indexed), so every index of
-- `jobs` costs an entry on insert, claim and completion. Hence few full indexes; the rest are
-- partial and only hold the rows they serve.

CREATE TABLE {schema}.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- enqueue order (claim ties, paging)
    id text NOT NULL UNIQUE,
    type text NOT NULL,
    data json NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    priority integer NOT NULL,
    max_retries integer NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    backoff_strategy text NOT NULL CHECK (backoff_strategy IN ('exponential', 'linear')),
    retry_delay double precision NOT NULL,
    max_retry_delay double precision NOT NULL,
    entity_id text,
    scheduled_job_id text,
    schedule_fire_at timestamptz,
    unique_key text,
    run_at timestamptz NOT NULL,
    expires_at timestamptz,
    progress double precision NOT NULL DEFAULT 0,
    fail_reason text,
    result json,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    worker text,
    lock_token text,            -- the fencing token of the current claim
    lock_expires_at timestamptz,  -- not indexed: lease renewals stay HOT updates
    run_id text,                -- the current run, while running
    cancel_requested boolean NOT NULL DEFAULT false,
    dead_lettered boolean NOT NULL DEFAULT false
);

-- The pending queue, per type, in claim order. Partial: completed history never enters the
-- claim scan, however much of it piles up. Claims walk it once per type of the worker.
CREATE INDEX jobs_pending_queue ON {schema}.jobs (type, priority DESC, seq)
    WHERE status = 'pending';
-- Running jobs: counted per type under the type's claim lock; scanned for expired leases.
-- The running set is bounded by the cluster's total concurrency, so it stays small.
CREATE INDEX jobs_running ON {schema}.jobs (type) WHERE status = 'running';
CREATE INDEX jobs_pending_expiry ON {schema}.jobs (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;
-- A unique key is held only while its job is pending or running.
CREATE UNIQUE INDEX jobs_unique_key ON {schema}.jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
-- Exactly one job per schedule tick, whoever believes it leads.
CREATE UNIQUE INDEX jobs_schedule_tick ON {schema}.jobs (scheduled_job_id, schedule_fire_at)
    WHERE scheduled_job_id IS NOT NULL;
-- Keyset paging for the read API and the dashboard (newest first).
CREATE INDEX jobs_status_seq ON {schema}.jobs (status, seq);
CREATE INDEX jobs_type_seq ON {schema}.jobs (type, seq);
CREATE INDEX jobs_entity_seq ON {schema}.jobs (entity_id, seq) WHERE entity_id IS NOT NULL;
CREATE INDEX jobs_dead_seq ON {schema}.jobs (seq) WHERE dead_lettered;
-- Retention: the leader purges finished jobs oldest first.
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Runs and logs carry no foreign key to jobs, on purpose: the key's check is a trigger per
-- inserted run, and it cost 1.5 ms of the 8.4 ms a 100-job claim took (EXPLAIN ANALYZE, PG 15).
-- Runs and logs are only ever written by statements that hold the job's row, and purge_jobs
-- deletes them with their jobs.
CREATE TABLE {schema}.job_runs (
    id text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,  -- creation order (not indexed on its own)
    job_id text NOT NULL,
    job_type text NOT NULL,  -- copied from the job: metrics aggregate runs without a join
    attempt integer NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'released')),
    worker text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration double precision,
    progress double precision NOT NULL DEFAULT 0,
    error text
);
CREATE INDEX job_runs_job ON {schema}.job_runs (job_id, seq);

CREATE TABLE {schema}.job_logs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text NOT NULL,
    run_id text,
    "timestamp" timestamptz NOT NULL,
    level text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message text NOT NULL,
    metadata json
);
CREATE INDEX job_logs_job ON {schema}.job_logs (job_id, seq);

CREATE TABLE {schema}.scheduled_jobs (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    type text NOT NULL,
    data json NOT NULL,
    schedule_type text NOT NULL CHECK (schedule_type IN ('cron', 'interval', 'exact')),
    schedule_value text NOT NULL,
    time_zone text,
    enabled boolean NOT NULL,
    allow_overlap boolean NOT NULL,
    next_run_at timestamptz,
    last_scheduled_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX scheduled_jobs_due ON {schema}.scheduled_jobs (next_run_at)
    WHERE enabled AND next_run_at IS NOT NULL;

CREATE TABLE {schema}.workers (
    name text PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    is_leader boolean NOT NULL,
    running integer NOT NULL
);

-- Leases (the leader lock and any other named lock): a row per lock, taken over once expired.
CREATE TABLE {schema}.locks (
    name text PRIMARY KEY,
    owner text NOT NULL,
    token text NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
