-- timecrisis SQLite schema, version 6: queues and pauses (flow control, docs/flow-control.md).
--
-- A job waits in a queue; a worker claims from the queues it serves. Every job and schedule
-- written before this version is in 'default', the queue every job had implicitly.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE scheduled_jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';

-- A claim of named queues reads one (type, queue) head each from here, so the jobs of a queue
-- the worker does not serve are never scanned, however many there are. (A claim of every
-- queue keeps reading jobs_pending_queue.)
CREATE INDEX jobs_pending_by_queue ON jobs (type, queue, priority DESC, seq)
    WHERE status = 'pending';

-- Paused job types and queues: a claim takes no job whose type or queue is named here. One
-- namespace for both, as the API has one `pause(name)`.
CREATE TABLE paused (
    name TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL  -- microseconds since the epoch, UTC, like every time here
) WITHOUT ROWID;
