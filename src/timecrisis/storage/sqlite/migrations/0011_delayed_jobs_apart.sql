-- timecrisis SQLite schema, version 11: jobs delayed into the future are kept out of the queue
-- indexes until they are due (version 10 is PostgreSQL's alone).
--
-- A claim walks a type's (or a queue's) pending jobs in claim order, priority then enqueue
-- sequence, and takes the first due ones. A job delayed into the future (a reminder in three
-- days, a retry's backoff, a snooze) stayed in that order ahead of the due jobs enqueued after
-- it, so every claim stepped over it and over every other one: with 100,000 delayed jobs ahead,
-- 35 ms a claim instead of about 1, idle polls included.
--
-- `waiting` is 1 for a pending job whose run_at was in the future when it became pending. The
-- queue indexes hold only the others; `jobs_waiting` holds the waiting ones by run_at. Each claim
-- first clears the flag of the waiting jobs that are due (`promote_due`, in the claim's write
-- transaction, one index range), so they enter the queue indexes at their place in claim order
-- (a job keeps its sequence) before the claim reads them: the order stays exact.
--
-- The pending jobs this finds are marked waiting if their run_at is after their creation; a due
-- one among them is promoted by the next claim.

ALTER TABLE jobs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET waiting = 1 WHERE status = 'pending' AND run_at > created_at;

DROP INDEX jobs_pending_queue;
CREATE INDEX jobs_pending_queue ON jobs (type, priority DESC, seq)
    WHERE status = 'pending' AND waiting = 0;

DROP INDEX jobs_pending_by_queue;
CREATE INDEX jobs_pending_by_queue ON jobs (type, queue, priority DESC, seq)
    WHERE status = 'pending' AND waiting = 0;

-- Not `status = 'pending' AND waiting = 1`: a claim and a completion change `status`, and SQLite
-- then tests the WHERE of every partial index that names it, for each row: an index more to test
-- cost W2 about 5 %. With this one the hot updates touch no column of it. A waiting job that ends
-- without running (canceled, expired) keeps its flag until `promote_due` clears it at its run_at.
CREATE INDEX jobs_waiting ON jobs (run_at) WHERE waiting = 1;
