-- Every statement of the SQLite store, by name (the format of postgres/queries.sql, loaded by
-- `storage/_queries.py`): a `-- name --` header, a description, then the SQL, which can be
-- pasted into `sqlite3` as it stands. Parameters are positional `?`. A statement is named
-- after the Python constant or function that held it before (the old place is given when the
-- name alone does not say it).
--
-- Times are integer microseconds since the epoch (`_rows.to_us`); `now` is the store's clock,
-- read once per transaction and bound as a parameter. Lists of values (ids, seqs, statuses,
-- types) are bound as ONE JSON array and read with `json_each(?)`: a fixed statement text
-- whatever the length, so the connection's statement cache always hits, and no limit on the
-- number of variables. Job rows are returned in the column order of `_rows.JOB_COLUMNS`.

-- ---- claims (_claims.py) --------------------------------------------------------------------

-- claim_queue_head --
-- One type's claimable queue head (was `_claims._ARM`; args: type, now, now, quota).
-- `status = 'pending'` is a literal so the partial index applies; the expiry test keeps jobs
-- past `expires_at` for `expire_jobs` to dead-letter. This block is repeated, UNION ALL, once
-- per claimable type inside `claim_jobs` and `claim_candidates` (see `_claims._merge_heads`):
-- it must appear there exactly as it does here, from its first line to its closing `)`.
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY priority DESC, seq LIMIT ?
)

-- claim_queue_head_keyed --
-- Flow control, concurrency keys (migration 0007): `claim_queue_head` for a type that limits
-- its keys (was `_claims._KEYED_ARM`; args: type, now, now, then now, now, key cap, key cap,
-- then the quota), passing over a job whose key already has its type's `key_limits` jobs
-- running or waiting ahead of it. "Ahead" reads at most that many of the key's due jobs, in
-- claim order, from jobs_pending_keys, so a job is taken exactly when a claim walking the
-- queue in order would take it; each candidate costs two index probes, whatever the number of
-- distinct keys. `_claims._merge_heads` puts this block in place of a `claim_queue_head` arm.
SELECT * FROM (
    SELECT seq, priority FROM jobs AS j INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    AND (j.concurrency_key IS NULL OR (
        SELECT count(*) FROM jobs AS r INDEXED BY jobs_running_keys
        WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
        AND r.type = j.type AND r.concurrency_key = j.concurrency_key
    ) + (
        SELECT count(*) FROM (
            SELECT p.priority, p.seq FROM jobs AS p INDEXED BY jobs_pending_keys
            WHERE p.status = 'pending' AND p.concurrency_key IS NOT NULL
            AND p.type = j.type AND p.concurrency_key = j.concurrency_key
            AND p.run_at <= ? AND (p.expires_at IS NULL OR p.expires_at > ?)
            ORDER BY p.priority DESC, p.seq LIMIT ?
        ) AS h
        WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq)
    ) < ?)
    ORDER BY priority DESC, seq LIMIT ?
)

-- claim_queue_head_skipping_paused --
-- Flow control: `claim_queue_head` for a claim of every queue while some names are paused and
-- its types hold jobs in more queues than `_claims.MAX_OPEN_QUEUES` (args: type, now, now, the
-- paused names as a JSON array, quota). The paused queues' jobs are stepped over inside the
-- claim; `_claims._merge_heads` puts this arm in place of
-- `claim_queue_head` (a paused type gets no arm at all).
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    AND queue NOT IN (SELECT value FROM json_each(?))
    ORDER BY priority DESC, seq LIMIT ?
)

-- claim_queue_head_keyed_skipping_paused --
-- Flow control: `claim_queue_head_keyed` while some queues are paused (args: type, now, now,
-- the paused names as a JSON array, then now, now, the paused names again, key cap, key cap,
-- then the quota). The key's jobs "ahead" are only those of the queues this claim reads: a
-- job of a paused queue is not taken now, so it holds no place of its key.
SELECT * FROM (
    SELECT seq, priority FROM jobs AS j INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    AND queue NOT IN (SELECT value FROM json_each(?))
    AND (j.concurrency_key IS NULL OR (
        SELECT count(*) FROM jobs AS r INDEXED BY jobs_running_keys
        WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
        AND r.type = j.type AND r.concurrency_key = j.concurrency_key
    ) + (
        SELECT count(*) FROM (
            SELECT p.priority, p.seq FROM jobs AS p INDEXED BY jobs_pending_keys
            WHERE p.status = 'pending' AND p.concurrency_key IS NOT NULL
            AND p.type = j.type AND p.concurrency_key = j.concurrency_key
            AND p.run_at <= ? AND (p.expires_at IS NULL OR p.expires_at > ?)
            AND p.queue NOT IN (SELECT value FROM json_each(?))
            ORDER BY p.priority DESC, p.seq LIMIT ?
        ) AS h
        WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq)
    ) < ?)
    ORDER BY priority DESC, seq LIMIT ?
)

-- promote_due --
-- The first statement of every claim (args: now): the waiting jobs that are due join the queue
-- indexes (migration 11), at their place in claim order, before the claim reads them. One range
-- of jobs_waiting: nothing to read when nothing is due. Whatever the status: a job canceled or
-- expired while it waited leaves the index here.
UPDATE jobs INDEXED BY jobs_waiting SET waiting = 0 WHERE waiting = 1 AND run_at <= ?

-- first_pending_queue --
-- Flow control, while anything is paused: the first queue that holds pending jobs of a type
-- (args: type), for `_claims._pending_queues`' walk of jobs_pending_by_queue (a claim of every
-- queue then reads the open queues' heads instead of stepping over the paused jobs).
SELECT queue FROM jobs INDEXED BY jobs_pending_by_queue
WHERE status = 'pending' AND waiting = 0 AND type = ?
ORDER BY queue LIMIT 1

-- next_pending_queue --
-- The next one after a queue (args: type, queue): one index probe, however many jobs that
-- queue holds.
SELECT queue FROM jobs INDEXED BY jobs_pending_by_queue
WHERE status = 'pending' AND waiting = 0 AND type = ? AND queue > ?
ORDER BY queue LIMIT 1

-- claim_named_queue_head --
-- Flow control: one (type, queue) head, for a claim of named queues (args: type, queue, now,
-- now, quota). Its own index, so the jobs of the queues this worker does not serve are never
-- read, however many wait. `_claims._merge_heads` puts it in place of `claim_queue_head`.
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_by_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ? AND queue = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY priority DESC, seq LIMIT ?
)

-- claim_named_queue_head_keyed --
-- Flow control: `claim_named_queue_head` for a type that limits its keys (args: type, queue,
-- now, now, then now, now, every queue this claim reads as a JSON array, key cap, key cap,
-- then the quota). The key's jobs "ahead" are those of every queue the claim reads, not just
-- this one: the type's heads are merged in claim order, so a key's job in another served queue
-- is taken first when it is ahead.
SELECT * FROM (
    SELECT seq, priority FROM jobs AS j INDEXED BY jobs_pending_by_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ? AND queue = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    AND (j.concurrency_key IS NULL OR (
        SELECT count(*) FROM jobs AS r INDEXED BY jobs_running_keys
        WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
        AND r.type = j.type AND r.concurrency_key = j.concurrency_key
    ) + (
        SELECT count(*) FROM (
            SELECT p.priority, p.seq FROM jobs AS p INDEXED BY jobs_pending_keys
            WHERE p.status = 'pending' AND p.concurrency_key IS NOT NULL
            AND p.type = j.type AND p.concurrency_key = j.concurrency_key
            AND p.run_at <= ? AND (p.expires_at IS NULL OR p.expires_at > ?)
            AND p.queue IN (SELECT value FROM json_each(?))
            ORDER BY p.priority DESC, p.seq LIMIT ?
        ) AS h
        WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq)
    ) < ?)
    ORDER BY priority DESC, seq LIMIT ?
)

-- claim_named_queues_head --
-- Flow control: one type's head over several named queues, still at most the type's quota in
-- all (args: per queue those of `claim_named_queue_head`, then the quota). Written with one
-- queue; `_claims._merge_heads` repeats `claim_named_queue_head` once per served queue.
SELECT * FROM (SELECT seq, priority FROM (
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_by_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ? AND queue = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY priority DESC, seq LIMIT ?
)
) ORDER BY priority DESC, seq LIMIT ?)

-- claim_named_queues_head_keyed --
-- Flow control: `claim_named_queues_head` for a type that limits its keys (args: per queue
-- those of `claim_named_queue_head_keyed`, then the quota). Written with one queue;
-- `_claims._merge_heads` repeats `claim_named_queue_head_keyed` once per served queue.
SELECT * FROM (SELECT seq, priority FROM (
SELECT * FROM (
    SELECT seq, priority FROM jobs AS j INDEXED BY jobs_pending_by_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ? AND queue = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    AND (j.concurrency_key IS NULL OR (
        SELECT count(*) FROM jobs AS r INDEXED BY jobs_running_keys
        WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
        AND r.type = j.type AND r.concurrency_key = j.concurrency_key
    ) + (
        SELECT count(*) FROM (
            SELECT p.priority, p.seq FROM jobs AS p INDEXED BY jobs_pending_keys
            WHERE p.status = 'pending' AND p.concurrency_key IS NOT NULL
            AND p.type = j.type AND p.concurrency_key = j.concurrency_key
            AND p.run_at <= ? AND (p.expires_at IS NULL OR p.expires_at > ?)
            AND p.queue IN (SELECT value FROM json_each(?))
            ORDER BY p.priority DESC, p.seq LIMIT ?
        ) AS h
        WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq)
    ) < ?)
    ORDER BY priority DESC, seq LIMIT ?
)
) ORDER BY priority DESC, seq LIMIT ?)

-- claim_jobs --
-- The claim: the merged queue heads, best first, become running with fresh tokens and run ids
-- (was `_CLAIM_HEAD` + `_heads(n)` + `_CLAIM_RETURNING`; args: now, worker, lease expiry, the
-- arms' args, the overall limit). Written here with one arm; `_claims._merge_heads` puts one
-- arm per type in its place (the claim scope's arm, `_claims._Scope.arm`: `claim_queue_head`
-- or one of its flow-control variants above, keyed for a type that limits its concurrency
-- keys), since SQLite has no LATERAL join to read one index range per type of a list in a
-- fixed statement.
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, worker = ?,
    lock_token = timecrisis_new_id(), lock_expires_at = ?, run_id = timecrisis_new_id(),
    cancel_requested = 0, cancel_terminate = 0
WHERE seq IN (SELECT seq FROM (
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY priority DESC, seq LIMIT ?
)
) ORDER BY priority DESC, seq LIMIT ?)
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested, seq, lock_token, run_id

-- claim_candidates --
-- One slice of the best queue heads when a claim has more types than one statement can merge
-- (was `_claims._candidates`; args: the arms' args, the limit). One arm here, as in claim_jobs.
SELECT seq, priority FROM (
SELECT * FROM (
    SELECT seq, priority FROM jobs INDEXED BY jobs_pending_queue
    WHERE status = 'pending' AND waiting = 0 AND type = ?
    AND run_at <= ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY priority DESC, seq LIMIT ?
)
) ORDER BY priority DESC, seq LIMIT ?

-- claim_jobs_by_seq --
-- The claim of the candidates gathered in slices (was `_CLAIM_HEAD` ... `WHERE seq IN (?, ...)`;
-- args: now, worker, lease expiry, the seqs as a JSON array).
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, worker = ?,
    lock_token = timecrisis_new_id(), lock_expires_at = ?, run_id = timecrisis_new_id(),
    cancel_requested = 0, cancel_terminate = 0
WHERE seq IN (SELECT value FROM json_each(?))
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested, seq, lock_token, run_id

-- insert_run --
-- The run row of a claimed job (was `_claims._INSERT_RUN`).
INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at)
VALUES (?, ?, ?, ?, 'running', ?, ?)

-- quotas_running --
-- The running jobs of each limited type (was in `_claims._quotas`; arg: the types as JSON).
SELECT type, count(*) FROM jobs INDEXED BY jobs_type_status
WHERE status = 'running' AND type IN (SELECT value FROM json_each(?)) GROUP BY type

-- current_claims --
-- The claims held right now on the running jobs among the ids (a JSON array), with what the
-- counters need (`_counts.Deltas`): the job's key, its attempt (its run's) and start.
SELECT id, lock_token, run_id, cancel_requested, cancel_terminate, type, queue, attempts,
    started_at FROM jobs
WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running'

-- renew_claims --
-- Extend one job's lease (its token was checked by `current_claims`).
UPDATE jobs SET lock_expires_at = ? WHERE id = ?

-- complete_jobs --
-- Finish one job of a completion batch. `worker` stays: it tells operators who ran the job.
UPDATE jobs SET status = ?, finished_at = ?, result = ?,
    progress = CASE WHEN ? THEN progress ELSE 100 END,
    lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0
WHERE id = ?

-- complete_job_runs --
-- Close the run of one completed job (was in `_claims.complete_jobs`).
UPDATE job_runs SET status = 'completed', finished_at = ?,
    duration = (? - started_at) / 1e6, progress = 100 WHERE id = ?

-- release_jobs --
-- Graceful stop: the job is given back, the attempt not charged, `run_at` left as it was.
UPDATE jobs SET status = 'pending', attempts = attempts - 1, worker = NULL,
    lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, waiting = 0
WHERE id = ?

-- release_canceled_jobs --
-- Cancel is final: a released job asked to stop is not given back, it ends canceled here (the
-- attempt ran). Also the end of a snoozed job with a cancel request (`snooze_job`).
UPDATE jobs SET status = 'canceled', finished_at = ?, lock_token = NULL,
    lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0
WHERE id = ?

-- release_job_runs --
-- The run of a released or snoozed job ends `released`.
UPDATE job_runs SET status = 'released', finished_at = ?,
    duration = (? - started_at) / 1e6 WHERE id = ?

-- snooze_canceled_job --
-- A snoozed job with a cancel request ends canceled (was in `_claims.snooze_job`).
UPDATE jobs SET status = 'canceled', finished_at = ?, lock_token = NULL,
    lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0
WHERE id = ?
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested

-- snooze_job --
-- The handler raised `Snooze`: pending again at the given time, the attempt not charged;
-- waiting (migration 11) until a claim finds it due.
UPDATE jobs SET status = 'pending', attempts = attempts - 1, run_at = ?,
    worker = NULL, lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
    cancel_requested = 0, waiting = 1 WHERE id = ?
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested

-- update_progress --
-- Set the job's progress if the token is current; its run id comes back for `update_run_progress`.
UPDATE jobs SET progress = ? WHERE id = ? AND lock_token = ? AND status = 'running'
RETURNING run_id

-- update_run_progress --
-- Set the run's progress (was in `_claims.update_progress`).
UPDATE job_runs SET progress = ? WHERE id = ?

-- fail_job --
-- The failing job with what `_common.decide_failure` needs (was `_FAILURE_COLUMNS` in
-- `_claims.fail_job`). No row for a stale token.
SELECT seq, run_id, worker, lock_expires_at, attempts, max_retries, backoff_strategy,
    retry_delay, max_retry_delay, expires_at, cancel_requested
FROM jobs WHERE id = ? AND lock_token = ?
AND status = 'running'

-- recover_expired_leases --
-- Running jobs whose lease ran out, oldest lease first, with the columns of `fail_job`.
SELECT seq, run_id, worker, lock_expires_at, attempts, max_retries, backoff_strategy,
    retry_delay, max_retry_delay, expires_at, cancel_requested
FROM jobs INDEXED BY jobs_running_lease
WHERE status = 'running' AND lock_expires_at <= ? ORDER BY lock_expires_at, seq LIMIT ?

-- fail_attempt_run --
-- The run of a failed attempt ends failed, with its error (was in `_claims._fail_attempt`).
UPDATE job_runs SET status = 'failed', finished_at = ?,
    duration = (? - started_at) / 1e6, error = ?, traceback = ?, failure_kind = ?
WHERE id = ?

-- fail_attempt_retry --
-- A failed attempt that will be retried: pending again at its retry time, waiting
-- (migration 11) until a claim finds it due.
UPDATE jobs SET status = 'pending', run_at = ?, fail_reason = ?, failure_kind = ?,
    worker = NULL, lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
    cancel_requested = 0, waiting = 1 WHERE seq = ?
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested

-- fail_attempt_final --
-- A failed attempt that ends the job: failed (dead-lettered or not) or canceled.
UPDATE jobs SET status = ?, finished_at = ?, fail_reason = ?, failure_kind = ?,
    dead_lettered = ?, lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
    cancel_requested = 0, cancel_terminate = 0 WHERE seq = ?
RETURNING id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested

-- ---- flow control: rate limits (_claims.py) -------------------------------------------------
-- `rate_limit_starts` holds one row per claim of a rate-limited type (migration 0007): `starts`
-- jobs at `started_at`, numbered from `first_start`. The starts inside the window run from the
-- oldest row still inside it to the newest row's end, so the count is two index probes and a
-- subtraction, whatever the rate; rows that left the window are pruned as claims go by. The
-- whole claim holds SQLite's write lock, so no other claim can start in between.

-- rate_window --
-- The number of the type's next start (NULL before its first), and the number of its oldest
-- start still inside the window (NULL when none is) (was `_claims._RATE_WINDOW`; args: type,
-- type, the window's start).
SELECT (SELECT first_start + starts FROM rate_limit_starts WHERE type = ?
        ORDER BY first_start DESC LIMIT 1),
    (SELECT first_start FROM rate_limit_starts WHERE type = ? AND started_at > ?
     ORDER BY started_at, first_start LIMIT 1)

-- record_rate_starts --
-- One claim's starts of one rate-limited type (was in `_claims._record_starts`; args: type,
-- the number of its first start, how many, now).
INSERT INTO rate_limit_starts (type, first_start, starts, started_at) VALUES (?, ?, ?, ?)

-- prune_rate_starts --
-- The type's starts that left its window (args: type, the window's start).
DELETE FROM rate_limit_starts WHERE type = ? AND started_at <= ?

-- rate_limit_free_at --
-- When the type's full window has room again, less its length: the time of its start `limit`
-- places before the next one (was in `_claims.rate_limit_free_at`; args: type, the next
-- start's number minus the limit).
SELECT started_at FROM rate_limit_starts WHERE type = ? AND first_start <= ?
ORDER BY first_start DESC LIMIT 1

-- ---- jobs outside a claim (_jobs.py) --------------------------------------------------------

-- insert_jobs --
-- One new job (was `_jobs._INSERT`). A repeated id or a taken key fails the whole batch. The
-- last value is `waiting` (migration 11): whether its run_at is after now.
INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy,
    retry_delay, max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key,
    run_at, expires_at, created_at, headers, concurrency_key, queue, waiting)
VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- insert_jobs_unless_held --
-- `insert_jobs`, but a job whose unique key or schedule tick is already held is skipped, not
-- an error (was `_jobs._INSERT_UNLESS_HELD`); the conflict targets repeat the partial indexes'
-- WHERE so SQLite matches them. A duplicate `id` still raises (no target covers it): that is a
-- caller bug, and the whole batch is refused.
INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy,
    retry_delay, max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key,
    run_at, expires_at, created_at, headers, concurrency_key, queue, waiting)
VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (type, unique_key)
WHERE unique_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING
ON CONFLICT (scheduled_job_id, schedule_fire_at)
WHERE scheduled_job_id IS NOT NULL DO NOTHING

-- existing_ids --
-- Which of the ids (a JSON array) are in the table (was `_jobs._existing_ids`).
SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?))

-- holder_of_tick --
-- The job of a schedule tick (was in `_jobs._holder`).
SELECT id FROM jobs WHERE scheduled_job_id = ? AND schedule_fire_at = ?

-- holder_of_unique_key --
-- The live holder of a unique key (was in `_jobs._holder`).
SELECT id FROM jobs WHERE type = ? AND unique_key = ?
AND status IN ('pending', 'running')

-- get_job --
-- One job by id.
SELECT id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested
FROM jobs WHERE id = ?

-- list_jobs_cursor --
-- The seq of a page's cursor job (was in `_jobs.list_jobs`).
SELECT seq FROM jobs WHERE id = ?

-- list_jobs --
-- A page of jobs, newest first. `WHERE true` is where `_jobs.list_jobs` adds the query's
-- filters (`AND status = ?` ...): each filter is written only when it is set, since SQLite
-- plans a statement once for any value, and `(? IS NULL OR status = ?)` can use no index.
SELECT id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested
FROM jobs WHERE true ORDER BY seq DESC LIMIT ?

-- cancel_job --
-- The status of the job to cancel.
SELECT status FROM jobs WHERE id = ?

-- cancel_pending_job --
-- A pending job is canceled at once (was in `_jobs.cancel_job`).
UPDATE jobs SET status = 'canceled', finished_at = ? WHERE id = ?

-- request_cancel --
-- A running job gets a cancel request (was in `_jobs.cancel_job`): the worker sees it through
-- renew_claims and ends the job `canceled`. A later request without `terminate` does not
-- withdraw an earlier one's.
UPDATE jobs SET cancel_requested = 1, cancel_terminate = max(cancel_terminate, ?)
WHERE id = ?

-- retry_job_candidate --
-- The finished job to retry, with its unique key (was in `_jobs.retry_job`).
SELECT type, unique_key FROM jobs WHERE id = ? AND status IN ('failed', 'canceled')

-- retry_job_key_holder --
-- Whether a live job holds the key now: reviving the job would break it.
SELECT 1 FROM jobs WHERE type = ? AND unique_key = ?
AND status IN ('pending', 'running')

-- retry_job --
-- Pending again now, with a fresh set of attempts.
UPDATE jobs SET status = 'pending', attempts = 0, dead_lettered = 0, fail_reason = NULL,
    failure_kind = NULL, run_at = ?, finished_at = NULL, worker = NULL, lock_token = NULL,
    lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0,
    waiting = 0
WHERE id = ?

-- purge_candidates --
-- A slice of finished jobs to delete, oldest first (args: cutoff, statuses as JSON, limit or
-- -1). "Older than" includes the cutoff itself. Read first so the counters can count them out.
SELECT seq, id FROM jobs INDEXED BY jobs_finished
WHERE finished_at IS NOT NULL
AND finished_at <= ? AND status IN (SELECT value FROM json_each(?)) ORDER BY finished_at, seq LIMIT ?

-- purge_jobs --
-- Delete the jobs at the seqs (a JSON array). Runs and logs go with their job (ON DELETE
-- CASCADE).
DELETE FROM jobs WHERE seq IN (SELECT value FROM json_each(?))

-- expire_jobs_due --
-- Pending jobs past their expiry, oldest expiry first (was in `_jobs.expire_jobs`).
SELECT seq, expires_at FROM jobs INDEXED BY jobs_pending_expiry
WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ?
ORDER BY expires_at, seq LIMIT ?

-- expire_jobs --
-- Dead-letter one expired job with its reason.
UPDATE jobs SET status = 'failed', finished_at = ?, dead_lettered = 1, fail_reason = ?,
    failure_kind = 'expired' WHERE seq = ?

-- jobs_by_seq --
-- The jobs at the seqs (a JSON array), with their seq last (was `_jobs._jobs_by_seq`).
SELECT id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id,
    scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result,
    created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay,
    failure_kind, headers, concurrency_key, queue, cancel_requested, seq
FROM jobs WHERE seq IN (SELECT value FROM json_each(?))

-- ---- locks and workers (_coordination.py) ---------------------------------------------------

-- acquire_lock_expiry --
-- When the lock expires, if it is held (was in `_coordination.acquire_lock`).
SELECT expires_at FROM locks WHERE name = ?

-- acquire_lock --
-- Take the lock, or take it over once expired (the expiry was checked in this transaction).
INSERT INTO locks (name, owner, token, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token,
    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at

-- renew_lock --
-- Extend a lock that this token still holds and that has not expired.
UPDATE locks SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?

-- release_lock --
-- Free the lock if this token holds it.
DELETE FROM locks WHERE name = ? AND token = ?

-- get_lock --
-- The lock's holder, unless it has expired.
SELECT name, owner, expires_at, acquired_at FROM locks WHERE name = ? AND expires_at > ?

-- heartbeat_worker --
-- Register the worker or refresh its heartbeat (a pruned worker registers again), with the
-- deadline the worker chose for itself (now + its ttl).
INSERT INTO workers (name, first_seen, last_heartbeat, is_leader, running, expires_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET last_heartbeat = excluded.last_heartbeat,
    is_leader = excluded.is_leader, running = excluded.running,
    expires_at = excluded.expires_at

-- remove_worker --
-- Forget a worker (it stopped cleanly).
DELETE FROM workers WHERE name = ?

-- list_workers --
-- Every registered worker, by name, `running` counted from the jobs table now: the running
-- jobs (few, one equality range of an index) are grouped once and joined to the roster.
SELECT w.name, w.first_seen, w.last_heartbeat, w.is_leader, coalesce(r.n, 0),
    w.expires_at
FROM workers AS w LEFT JOIN (
SELECT worker, count(*) AS n FROM jobs WHERE status = 'running' GROUP BY worker
) AS r ON r.worker = w.name ORDER BY w.name

-- prune_workers --
-- Delete the workers whose own deadline passed (args: DEFAULT_WORKER_TTL in microseconds, for
-- a row from before workers wrote one, and now).
DELETE FROM workers WHERE coalesce(expires_at, last_heartbeat + ?) < ? RETURNING name

-- prune_workers_end_leases --
-- End the leases of the pruned workers' jobs now (an earlier expiry is kept), so the reaper
-- recovers them at its next pass (args: now, now, the names as JSON).
UPDATE jobs SET lock_expires_at = ? WHERE status = 'running'
AND lock_expires_at > ? AND worker IN (SELECT value FROM json_each(?))

-- ---- flow control: pauses (_coordination.py, docs/flow-control.md) -------------------------

-- pause --
-- Pause a job type or queue (one namespace); pausing a paused name changes nothing.
INSERT INTO paused (name, paused_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING

-- resume --
-- Resume a paused name.
DELETE FROM paused WHERE name = ?

-- list_paused --
-- The paused names, sorted (also read by each claim, inside its write transaction).
SELECT name FROM paused ORDER BY name

-- ---- history and metrics (_history.py) ------------------------------------------------------

-- append_logs --
-- One log entry, unless its job no longer exists (purged while its handler still logged).
INSERT INTO job_logs (job_id, run_id, timestamp, level, message, metadata)
SELECT ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)

-- get_job_runs --
-- A job's runs in attempt (creation) order.
SELECT id, job_id, attempt, status, worker, started_at, finished_at, duration, progress, error,
    traceback, failure_kind
FROM job_runs WHERE job_id = ? ORDER BY seq

-- get_job_logs --
-- A job's logs in time order, insertion order among equal timestamps.
SELECT job_id, run_id, timestamp, level, message, metadata
FROM job_logs WHERE job_id = ? ORDER BY timestamp, seq

-- job_counts --
-- Job counts per type and status, dead-lettered counted apart, from the counters (migration
-- 0009): a few rows whatever the number of jobs (keys counted down to zero skipped).
SELECT type, status, sum(n), sum(n * dead_lettered) FROM job_counts
GROUP BY type, status HAVING sum(n) > 0

-- queue_counts --
-- Pending and running jobs per queue, from the job counters.
SELECT queue, status, sum(n) FROM job_counts WHERE status IN ('pending', 'running')
GROUP BY queue, status HAVING sum(n) > 0

-- run_durations --
-- Total duration in whole microseconds and count of completed runs per type, from the run
-- counters (migration 0009).
SELECT job_type, sum(duration_sum_us), sum(runs) FROM run_counts
WHERE status = 'completed' GROUP BY job_type HAVING sum(runs) > 0

-- get_run_stats --
-- Runs per type, status, duration bucket and failure kind, with their retries, from the run
-- counters (migration 0009; '' and -1 there stand for no failure kind and no duration).
SELECT job_type, status, nullif(bucket, -1), nullif(failure_kind, ''), runs, retries,
    duration_sum_us
FROM run_counts WHERE runs > 0

-- ---- counters (_counts.py, migration 0009) --------------------------------------------------
-- One grouped upsert per batch: the rows are read back by key (the JSON array of ids), and
-- each key they moved between gets one counter change. `WHERE true` keeps SQLite from reading
-- ON CONFLICT as a join constraint of the SELECT. Plain `?`s, bound in order (args below). A
-- run's bucket is `timecrisis_run_bucket()`, the shared `duration_bucket` registered on the
-- connection.

-- count_jobs_moved --
-- The jobs left (type, queue, the status given, not dead-lettered) for the key they have now
-- (args: the ids as JSON, the status, the ids again).
INSERT INTO job_counts (type, queue, status, dead_lettered, n)
SELECT type, queue, status, dead_lettered, sum(n) FROM (
    SELECT type, queue, status, dead_lettered, 1 AS n FROM jobs
    WHERE id IN (SELECT value FROM json_each(?))
    UNION ALL
    SELECT type, queue, ?, 0, -1 FROM jobs WHERE id IN (SELECT value FROM json_each(?))
) WHERE true
GROUP BY type, queue, status, dead_lettered HAVING sum(n) <> 0
ON CONFLICT (type, queue, status, dead_lettered) DO UPDATE SET n = n + excluded.n

-- count_jobs --
-- The jobs counted in (+1) or out (-1) of the keys they have now (args: the sign, the ids).
INSERT INTO job_counts (type, queue, status, dead_lettered, n)
SELECT type, queue, status, dead_lettered, ? * count(*) FROM jobs
WHERE id IN (SELECT value FROM json_each(?))
GROUP BY type, queue, status, dead_lettered
ON CONFLICT (type, queue, status, dead_lettered) DO UPDATE SET n = n + excluded.n

-- count_runs_closed --
-- The runs left running (no failure kind, no duration) for the key they have now (args: the
-- ids as JSON, twice).
INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, kind, bucket, sum(n), sum(n * retry), sum(n * us) FROM (
    SELECT job_type, status, coalesce(failure_kind, '') AS kind,
        timecrisis_run_bucket(duration) AS bucket, 1 AS n, attempt > 1 AS retry,
        coalesce(CAST(round(duration * 1000000) AS INTEGER), 0) AS us
    FROM job_runs WHERE id IN (SELECT value FROM json_each(?))
    UNION ALL
    SELECT job_type, 'running', '', -1, -1, attempt > 1, 0
    FROM job_runs WHERE id IN (SELECT value FROM json_each(?))
) WHERE true
GROUP BY job_type, status, kind, bucket
HAVING sum(n) <> 0 OR sum(n * retry) <> 0 OR sum(n * us) <> 0
ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
    runs = runs + excluded.runs, retries = retries + excluded.retries,
    duration_sum_us = duration_sum_us + excluded.duration_sum_us

-- add_job_counts --
-- One key's change to the job counters, added up by `_counts.Deltas` (args: type, queue,
-- status, dead_lettered, n).
INSERT INTO job_counts (type, queue, status, dead_lettered, n) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (type, queue, status, dead_lettered) DO UPDATE SET n = n + excluded.n

-- add_run_counts --
-- One key's change to the run counters, added up by `_counts.Deltas` (args: type, status,
-- failure kind, bucket, runs, retries, duration_sum_us).
INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
    runs = runs + excluded.runs, retries = retries + excluded.retries,
    duration_sum_us = duration_sum_us + excluded.duration_sum_us

-- count_runs_of_jobs_removed --
-- Every run of the jobs counted out, before a purge deletes them (job_runs_job index; arg: the
-- job ids as JSON).
INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, coalesce(failure_kind, ''), timecrisis_run_bucket(duration),
    -count(*), -sum(attempt > 1), -coalesce(sum(CAST(round(duration * 1000000) AS INTEGER)), 0)
FROM job_runs WHERE job_id IN (SELECT value FROM json_each(?))
GROUP BY 1, 2, 3, 4
ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
    runs = runs + excluded.runs, retries = retries + excluded.retries,
    duration_sum_us = duration_sum_us + excluded.duration_sum_us

-- count_finished_jobs --
-- Jobs finished since a time, per status and per bucket of a width in microseconds, from the
-- jobs_finished index range of the window only (args: since, width, since).
SELECT (finished_at - ?) / ? AS bucket, status, count(*)
FROM jobs INDEXED BY jobs_finished
WHERE finished_at IS NOT NULL AND finished_at >= ?
GROUP BY bucket, status ORDER BY bucket, status

-- ---- schedules (_schedules.py) --------------------------------------------------------------

-- lock_schedule_by_name --
-- The schedule to upsert, with its definition for the comparison (was in
-- `_schedules.upsert_schedule`; the write transaction already holds the lock).
SELECT id, type, schedule_type, schedule_value, time_zone, data
FROM scheduled_jobs WHERE name = ?

-- insert_schedule --
-- A new schedule, columns in `_rows.SCHEDULE_COLUMNS` order (last_scheduled_at NULL).
INSERT INTO scheduled_jobs (id, name, type, data, schedule_type, schedule_value, time_zone,
    enabled, allow_overlap, next_run_at, last_scheduled_at, created_at, updated_at,
    priority, max_retries, backoff_strategy, retry_delay, max_retry_delay, queue)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)

-- touch_schedule --
-- An existing schedule registered again: `enabled=None` keeps the flag; the value's text (the
-- same schedule when unchanged, '600s' for '10m'), `allow_overlap` and the job options are
-- always updated.
UPDATE scheduled_jobs SET enabled = coalesce(?, enabled), schedule_value = ?,
    allow_overlap = ?, priority = ?, max_retries = ?, backoff_strategy = ?,
    retry_delay = ?, max_retry_delay = ?, queue = ?, updated_at = ? WHERE id = ?

-- redefine_schedule --
-- The definition changed: it takes the caller's next_run_at (an unchanged one keeps its tick).
UPDATE scheduled_jobs SET type = ?, data = ?, schedule_type = ?,
    schedule_value = ?, time_zone = ?, next_run_at = ? WHERE id = ?

-- get_schedule --
-- One schedule by name.
SELECT id, name, type, data, schedule_type, schedule_value, time_zone, enabled, allow_overlap,
    next_run_at, last_scheduled_at, created_at, updated_at,
    priority, max_retries, backoff_strategy, retry_delay, max_retry_delay, queue
FROM scheduled_jobs WHERE name = ?

-- list_schedules --
-- Every schedule, by name.
SELECT id, name, type, data, schedule_type, schedule_value, time_zone, enabled, allow_overlap,
    next_run_at, last_scheduled_at, created_at, updated_at,
    priority, max_retries, backoff_strategy, retry_delay, max_retry_delay, queue
FROM scheduled_jobs ORDER BY name

-- set_schedule_enabled --
-- Enable or disable a schedule.
UPDATE scheduled_jobs SET enabled = ?, updated_at = ? WHERE name = ?

-- delete_schedule --
-- Delete a schedule; the jobs it created stay.
DELETE FROM scheduled_jobs WHERE name = ?

-- due_schedules --
-- The due schedules, oldest tick first (was in `_schedules.get_due_schedules`).
SELECT id, name, type, data, schedule_type, schedule_value, time_zone, enabled, allow_overlap,
    next_run_at, last_scheduled_at, created_at, updated_at,
    priority, max_retries, backoff_strategy, retry_delay, max_retry_delay, queue
FROM scheduled_jobs WHERE enabled = 1
AND next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at, name LIMIT ?

-- next_due_schedule --
-- The earliest future tick (was in `_schedules.get_due_schedules`).
SELECT min(next_run_at) FROM scheduled_jobs WHERE enabled = 1
AND next_run_at IS NOT NULL AND next_run_at > ?

-- advance_schedule --
-- Compare and set on next_run_at; the write lock serialises two nodes acting on one tick.
UPDATE scheduled_jobs SET next_run_at = ?,
    enabled = CASE WHEN ? THEN 0 ELSE enabled END, updated_at = ?
WHERE id = ? AND next_run_at = ?

-- schedule_has_live_job --
-- Whether a pending or running job of this schedule exists (allow_overlap=False skips a tick).
SELECT 1 FROM jobs WHERE scheduled_job_id = ? AND status IN ('pending', 'running')
LIMIT 1

-- mark_scheduled --
-- Record the tick that just produced a job.
UPDATE scheduled_jobs SET last_scheduled_at = ? WHERE id = ?

-- ---- migrations (_migrate.py) ---------------------------------------------------------------

-- migrations_table_exists --
-- Whether the database has been migrated at all (was in `_migrate.schema_version`).
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'timecrisis_migrations'

-- schema_version --
-- The newest migration recorded in the database.
SELECT coalesce(max(version), 0) FROM timecrisis_migrations

-- create_migrations_table --
-- The record of applied migrations (was in `_migrate.migrate`).
CREATE TABLE IF NOT EXISTS timecrisis_migrations (
version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)

-- record_migration --
-- A migration applied (was in `_migrate.migrate`).
INSERT INTO timecrisis_migrations (version, name, applied_at) VALUES (?, ?, ?)
