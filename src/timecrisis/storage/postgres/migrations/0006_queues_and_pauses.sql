-- timecrisis PostgreSQL schema, version 6: queues and pauses (flow control,
-- docs/flow-control.md). `{schema}` is replaced by the quoted schema name.
--
-- A job waits in a queue; a worker claims from the queues it serves. Every job and schedule
-- written before this version is in 'default', the queue every job had implicitly. A constant
-- default: no table rewrite (PostgreSQL 11+).
ALTER TABLE {schema}.jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE {schema}.scheduled_jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';

-- A claim of named queues reads one (type, queue) head each from here, so the jobs of a queue
-- the worker does not serve are never scanned, however many there are. (A claim of every
-- queue keeps reading jobs_pending_queue.) Keyed by the expression ARRAY[type, queue], which
-- only the named-queues claims write (queries.sql `claim_jobs_in_queues`): on plain
-- columns, a claim planned once while every job sat in one queue (generic plans, see
-- _session._ClaimPool) took jobs_pending_queue, equal in cost then, and kept it when another
-- queue's backlog grew; no other index can answer this key.
CREATE INDEX jobs_pending_by_queue ON {schema}.jobs ((ARRAY[type, queue]), priority DESC, seq)
    WHERE status = 'pending';

-- Paused job types and queues: a claim takes no job whose type or queue is named here. One
-- namespace for both, as the API has one `pause(name)`.
CREATE TABLE {schema}.paused (
    name text PRIMARY KEY,
    paused_at timestamptz NOT NULL
);
