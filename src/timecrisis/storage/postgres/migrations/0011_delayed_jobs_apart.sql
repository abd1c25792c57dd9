-- timecrisis PostgreSQL schema, version 11: jobs delayed into the future are kept out of the
-- queue indexes until they are due, as SQLite's version 11 does. `{schema}` is replaced by
-- the quoted schema name.
--
-- A claim walks a type's (or a queue's) pending jobs in claim order, priority then enqueue
-- sequence, and takes the first due ones. A job delayed into the future (a reminder in three
-- days, a retry's backoff, a snooze) sat in that order ahead of the due jobs enqueued after
-- it, so every claim fetched it, and every other one, to read its run_at: with 100,000
-- delayed jobs ahead, 25 to 35 ms a claim instead of about 1, idle polls included.
--
-- `waiting` is true for a pending job whose run_at was in the future when it became pending.
-- The queue indexes hold only the others; `jobs_waiting` holds the waiting ones by run_at.
-- A claim statement that finds a waiting job due (its `due` CTE, one probe of jobs_waiting)
-- claims nothing; the store then clears the flag of the due ones (`promote_due`) and claims
-- again at once, with a snapshot in which those jobs are in the queue indexes, at their place
-- in claim order (a job keeps its sequence): the order stays exact (queries.sql `claim_jobs`).
--
-- `jobs_waiting` names only the flag, not the status: a job that ends while it waits
-- (canceled, expired) keeps its flag until a claim clears it at its run_at, and a claim or a
-- completion, which change `status`, never has to test this index's condition.
--
-- A node older than this version keeps claiming correctly (its claims still test run_at),
-- but its statements no longer match the queue indexes' conditions: upgrade every node
-- together (CHANGELOG).

ALTER TABLE {schema}.jobs ADD COLUMN waiting boolean NOT NULL DEFAULT false;

UPDATE {schema}.jobs SET waiting = true WHERE status = 'pending' AND run_at > now();

DROP INDEX {schema}.jobs_pending_queue;
CREATE INDEX jobs_pending_queue ON {schema}.jobs (type, priority DESC, seq)
    WHERE status = 'pending' AND NOT waiting;

DROP INDEX {schema}.jobs_pending_by_queue;
CREATE INDEX jobs_pending_by_queue ON {schema}.jobs ((ARRAY[type, queue]), priority DESC, seq)
    WHERE status = 'pending' AND NOT waiting;

DROP INDEX {schema}.jobs_pending_keys;
CREATE INDEX jobs_pending_keys ON {schema}.jobs (type, concurrency_key, priority DESC, seq)
    WHERE status = 'pending' AND NOT waiting AND concurrency_key IS NOT NULL;

CREATE INDEX jobs_waiting ON {schema}.jobs (run_at) WHERE waiting;
