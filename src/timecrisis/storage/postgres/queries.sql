-- Every statement of the PostgreSQL store, by name (procrastinate's catalogue format, loaded by
-- `storage/_queries.py`): a `-- name --` header, a description, then the SQL, written out in
-- full. The one thing filled in is {schema}, the store's schema, quoted as an identifier
-- (`_sql.render`); replace it with a schema name and a statement runs in `psql` as it stands,
-- parameters as `%(name)s` placeholders (or `$n` after PREPARE, as tests/postgres does).
--
-- The store's clock is `coalesce(%(now)s::timestamptz, now())`: the database's clock, unless a
-- test clock is injected (River's `coalesce(@now, now())`). No statement ever compares a stored
-- time with a node's own clock, so nodes whose clocks are off by minutes stay safe.

-- db_now --
-- The store's clock.
SELECT coalesce(%(now)s::timestamptz, now())

-- insert_jobs --
-- Insert a batch in one statement, in input order (seq follows the ordinality). Relative times
-- resolve against the store's clock with the rule of `_common.resolve_run_at` and
-- `resolve_expires_at`: a delay wins over run_at, expires_in wins over expires_at.
-- For a batch without unique keys or schedule ticks: any conflict, a repeated id included,
-- fails the whole statement (`insert_jobs_skipping_taken` is the same statement for the others).
-- The NOTIFY rides in the statement, so inside a caller's transaction it is delivered only when
-- that transaction commits; it is sent once per statement, and only if a row was inserted.
WITH input AS (
    -- One JSON text parameter, a row per job as a JSON array (see `_jobs._row`): psycopg
    -- dumps one string instead of eighteen arrays, the dominant client cost of an enqueue.
    -- jsonb, parsed once (a `json` value is re-parsed by every ->>); the payload rides in it
    -- as a string of JSON text, so the `json` column keeps that text exactly.
    SELECT r.j->>0 AS id, r.j->>1 AS type, (r.j->>2)::json AS data, (r.j->>3)::int AS priority,
           (r.j->>4)::int AS max_retries, r.j->>5 AS backoff, (r.j->>6)::float8 AS retry_delay,
           (r.j->>7)::float8 AS max_retry_delay, r.j->>8 AS entity_id,
           r.j->>9 AS scheduled_job_id, (r.j->>10)::timestamptz AS fire_at,
           r.j->>11 AS unique_key, (r.j->>12)::timestamptz AS run_at,
           (r.j->>13)::interval AS delay, (r.j->>14)::timestamptz AS expires_at,
           (r.j->>15)::interval AS expires_in, (r.j->>16)::json AS headers,
           r.j->>17 AS concurrency_key, r.j->>18 AS queue, r.n
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(j, n)
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, type, data, status, priority, max_retries, backoff_strategy, retry_delay,
        max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key, run_at,
        waiting, expires_at, created_at, headers, concurrency_key, queue
    )
    SELECT t.id, t.type, t.data, 'pending', t.priority, t.max_retries, t.backoff,
           t.retry_delay, t.max_retry_delay, t.entity_id, t.scheduled_job_id, t.fire_at,
           t.unique_key, r.run_at,
           -- Delayed into the future: kept out of the queue indexes until due (migration 0011).
           r.run_at > coalesce(%(now)s::timestamptz, now()),
           coalesce(coalesce(%(now)s::timestamptz, now()) + t.expires_in, t.expires_at),
           coalesce(%(now)s::timestamptz, now()), t.headers, t.concurrency_key, t.queue
    FROM input AS t
    CROSS JOIN LATERAL (
        SELECT coalesce(coalesce(%(now)s::timestamptz, now()) + t.delay, t.run_at,
                        coalesce(%(now)s::timestamptz, now())) AS run_at
    ) AS r
    ORDER BY t.n
    RETURNING id, type, queue
), counted AS (
    -- The job counts (migration 0009): one delta row per (type, queue) inserted.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, 'pending', false, count(*) FROM inserted GROUP BY type, queue
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT FROM inserted LIMIT 1) AS any_inserted
)
SELECT id, (SELECT count(*) FROM wake) AS notified FROM inserted

-- insert_job --
-- `insert_jobs` for one job without a unique key or a schedule tick (every `enqueue`), with a
-- parameter per column: no JSON to parse and no function scan to plan, which took a fifth of
-- the statement's time on the server. The same values, the same rule for relative times, the
-- same NOTIFY (kept in step with `insert_jobs`).
WITH inserted AS (
    INSERT INTO {schema}.jobs (
        id, type, data, status, priority, max_retries, backoff_strategy, retry_delay,
        max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key, run_at,
        waiting, expires_at, created_at, headers, concurrency_key, queue
    )
    VALUES (
        %(id)s::text, %(type)s::text, %(data)s::json, 'pending', %(priority)s::int,
        %(max_retries)s::int, %(backoff)s::text, %(retry_delay)s::float8,
        %(max_retry_delay)s::float8, %(entity_id)s::text, NULL, NULL, NULL,
        coalesce(coalesce(%(now)s::timestamptz, now()) + %(delay)s::interval,
                 %(run_at)s::timestamptz, coalesce(%(now)s::timestamptz, now())),
        -- Delayed into the future (the run_at above is after the clock): kept out of the
        -- queue indexes until due (migration 0011). Only a delay or a run_at can make it so.
        coalesce(%(delay)s::interval > interval '0', %(run_at)s::timestamptz
                 > coalesce(%(now)s::timestamptz, now()), false),
        coalesce(coalesce(%(now)s::timestamptz, now()) + %(expires_in)s::interval,
                 %(expires_at)s::timestamptz),
        coalesce(%(now)s::timestamptz, now()), %(headers)s::json, %(concurrency_key)s::text,
        %(queue)s::text
    )
    RETURNING id, type, queue
), counted AS (
    -- The job counts (migration 0009), as in `insert_jobs`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, 'pending', false, count(*) FROM inserted GROUP BY type, queue
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM inserted
)
SELECT id, (SELECT count(*) FROM wake) AS notified FROM inserted

-- insert_jobs_skipping_taken --
-- `insert_jobs` (the same statement, kept in step with it) plus ON CONFLICT DO NOTHING, for a
-- batch with unique keys or schedule ticks: a row whose unique key or schedule tick is taken is
-- skipped, and the caller looks its holder up in a later statement of the same transaction
-- (this statement's snapshot cannot see a holder that a concurrent transaction committed after
-- it began), failing the transaction if a skipped row held no key at all.
WITH input AS (
    -- One JSON text parameter, a row per job as a JSON array (see `_jobs._row`): psycopg
    -- dumps one string instead of eighteen arrays, the dominant client cost of an enqueue.
    -- jsonb, parsed once (a `json` value is re-parsed by every ->>); the payload rides in it
    -- as a string of JSON text, so the `json` column keeps that text exactly.
    SELECT r.j->>0 AS id, r.j->>1 AS type, (r.j->>2)::json AS data, (r.j->>3)::int AS priority,
           (r.j->>4)::int AS max_retries, r.j->>5 AS backoff, (r.j->>6)::float8 AS retry_delay,
           (r.j->>7)::float8 AS max_retry_delay, r.j->>8 AS entity_id,
           r.j->>9 AS scheduled_job_id, (r.j->>10)::timestamptz AS fire_at,
           r.j->>11 AS unique_key, (r.j->>12)::timestamptz AS run_at,
           (r.j->>13)::interval AS delay, (r.j->>14)::timestamptz AS expires_at,
           (r.j->>15)::interval AS expires_in, (r.j->>16)::json AS headers,
           r.j->>17 AS concurrency_key, r.j->>18 AS queue, r.n
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(j, n)
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, type, data, status, priority, max_retries, backoff_strategy, retry_delay,
        max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key, run_at,
        waiting, expires_at, created_at, headers, concurrency_key, queue
    )
    SELECT t.id, t.type, t.data, 'pending', t.priority, t.max_retries, t.backoff,
           t.retry_delay, t.max_retry_delay, t.entity_id, t.scheduled_job_id, t.fire_at,
           t.unique_key, r.run_at,
           -- Delayed into the future: kept out of the queue indexes until due (migration 0011).
           r.run_at > coalesce(%(now)s::timestamptz, now()),
           coalesce(coalesce(%(now)s::timestamptz, now()) + t.expires_in, t.expires_at),
           coalesce(%(now)s::timestamptz, now()), t.headers, t.concurrency_key, t.queue
    FROM input AS t
    CROSS JOIN LATERAL (
        SELECT coalesce(coalesce(%(now)s::timestamptz, now()) + t.delay, t.run_at,
                        coalesce(%(now)s::timestamptz, now())) AS run_at
    ) AS r
    ORDER BY t.n
    ON CONFLICT DO NOTHING
    RETURNING id, type, queue
), counted AS (
    -- The job counts, as in `insert_jobs`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, 'pending', false, count(*) FROM inserted GROUP BY type, queue
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT FROM inserted LIMIT 1) AS any_inserted
)
SELECT id, (SELECT count(*) FROM wake) AS notified FROM inserted

-- copy_jobs --
-- A large batch without unique keys or schedule ticks (`_jobs.copy_jobs`), in a transaction that
-- first reads the store's clock with `db_now` (the transaction's now(), as the INSERT would use):
-- created_at and the relative times are resolved with it in Python, by the rule of `insert_jobs`.
-- COPY streams the rows: the server inserts the first ones while the client still formats the
-- rest, and it parses no JSON array. seq is generated in row order, as with the INSERT. The
-- caller sends `notify` in the same transaction.
COPY {schema}.jobs (
    id, type, data, status, priority, max_retries, backoff_strategy, retry_delay,
    max_retry_delay, entity_id, run_at, waiting, expires_at, created_at, headers,
    concurrency_key, queue
) FROM STDIN (FORMAT BINARY)

-- count_copied_jobs --
-- The job counts (migration 0009) of a `copy_jobs` batch, in its transaction: COPY has no
-- RETURNING, so the caller adds the batch up per (type, queue) and sends one delta row each.
INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
SELECT t.type, t.queue, 'pending', false, t.n
FROM unnest(%(types)s::text[], %(queues)s::text[], %(ns)s::bigint[]) AS t(type, queue, n)

-- find_holders --
-- The jobs that hold the unique keys (pending or running) or the schedule ticks of rows that
-- `insert_jobs` skipped. NULL when the holder finished in the meantime: the caller inserts again.
SELECT t.n,
       coalesce(
           (SELECT h.id FROM {schema}.jobs AS h
            WHERE t.unique_key IS NOT NULL AND h.type = t.type AND h.unique_key = t.unique_key
              AND h.status IN ('pending', 'running')),
           (SELECT h.id FROM {schema}.jobs AS h
            WHERE t.scheduled_job_id IS NOT NULL AND h.scheduled_job_id = t.scheduled_job_id
              AND h.schedule_fire_at = t.fire_at)
       ) AS holder
FROM unnest(
    %(ns)s::int[], %(types)s::text[], %(keys)s::text[], %(schedules)s::text[],
    %(fire_ats)s::timestamptz[]
) AS t(n, type, unique_key, scheduled_job_id, fire_at)

-- get_job --
-- One job by id.
SELECT * FROM {schema}.jobs WHERE id = %(id)s

-- list_jobs --
-- Newest first, keyset-paginated on seq. Run unprepared: each execution is planned with its
-- own values, so the `IS NULL OR` filters fold away and the matching index is used.
SELECT * FROM {schema}.jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(entity_id)s::text IS NULL OR entity_id = %(entity_id)s::text)
  AND (%(dead)s::boolean IS NULL OR dead_lettered = %(dead)s::boolean)
  AND (%(cursor)s::text IS NULL
       OR seq < (SELECT c.seq FROM {schema}.jobs AS c WHERE c.id = %(cursor)s::text))
ORDER BY seq DESC
LIMIT %(limit)s

-- cancel_job --
-- A pending job becomes canceled; a running one gets a cancel request (with its terminate
-- flag, which a later request without it does not withdraw). RETURNING shows the new
-- status: 'canceled' (was pending) or 'running' (request recorded). No row: finished or unknown.
WITH changed AS (
    UPDATE {schema}.jobs
    SET status = CASE WHEN status = 'pending' THEN 'canceled' ELSE status END,
        finished_at = CASE WHEN status = 'pending' THEN coalesce(%(now)s::timestamptz, now())
                           ELSE finished_at END,
        cancel_requested = cancel_requested OR status = 'running',
        cancel_terminate = cancel_terminate OR (status = 'running' AND %(terminate)s::bool)
    WHERE id = %(id)s AND status IN ('pending', 'running')
    RETURNING status, type, queue
), counted AS (
    -- The job counts (migration 0009): a pending job became canceled (a running one only got
    -- a request, which moves no count).
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT c.type, c.queue, s.status, false, s.n FROM changed AS c
    CROSS JOIN (VALUES ('canceled', 1), ('pending', -1)) AS s(status, n)
    WHERE c.status = 'canceled'
)
SELECT (SELECT status FROM changed) AS status,
       EXISTS (SELECT 1 FROM {schema}.jobs WHERE id = %(id)s) AS found

-- retry_job --
-- A failed or canceled job goes back to pending now with a fresh set of attempts, unless a live
-- job of its type holds its unique key (then nothing changes). `old` locks the job first and
-- reads what it was (its status and dead-letter flag), for the counts: FOR UPDATE returns the
-- newest committed version, and the UPDATE's WHERE is checked again on that version.
WITH old AS MATERIALIZED (
    SELECT id, type, queue, status, dead_lettered FROM {schema}.jobs
    WHERE id = %(id)s AND status IN ('failed', 'canceled')
    FOR UPDATE
), retried AS (
    UPDATE {schema}.jobs AS j
    SET status = 'pending', attempts = 0, dead_lettered = false, fail_reason = NULL,
        failure_kind = NULL, run_at = coalesce(%(now)s::timestamptz, now()), waiting = false,
        finished_at = NULL, worker = NULL, lock_token = NULL,
        lock_expires_at = NULL, run_id = NULL, cancel_requested = false, cancel_terminate = false
    WHERE j.id = ANY(ARRAY(SELECT id FROM old)) AND j.status IN ('failed', 'canceled')
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.jobs AS h
          WHERE j.unique_key IS NOT NULL AND h.type = j.type AND h.unique_key = j.unique_key
            AND h.status IN ('pending', 'running')
      )
    RETURNING j.id
), counted AS (
    -- The job counts (migration 0009): the job left its finished key for pending.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT o.type, o.queue, s.status, s.dead_lettered, s.n
    FROM old AS o
    CROSS JOIN LATERAL (VALUES ('pending', false, 1), (o.status, o.dead_lettered, -1))
        AS s(status, dead_lettered, n)
    WHERE o.id IN (SELECT id FROM retried)
)
SELECT id FROM retried

-- purge_jobs --
-- Delete a slice of finished jobs, oldest first, with their runs and logs. SKIP LOCKED: a row
-- another transaction holds is left for the next slice.
WITH doomed AS (
    SELECT seq, id FROM {schema}.jobs
    WHERE finished_at IS NOT NULL AND finished_at <= coalesce(%(now)s::timestamptz, now()) - %(age)s
      AND status = ANY(%(statuses)s::text[])
    ORDER BY finished_at, seq  -- ties in enqueue order, as on every store (not by heap position)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), runs AS (
    DELETE FROM {schema}.job_runs WHERE job_id IN (SELECT id FROM doomed)
    RETURNING job_type, status, failure_kind, duration, attempt
), logs AS (
    DELETE FROM {schema}.job_logs WHERE job_id IN (SELECT id FROM doomed)
), deleted AS (
    DELETE FROM {schema}.jobs WHERE seq IN (SELECT seq FROM doomed)
    RETURNING type, queue, status, dead_lettered
), counted AS (
    -- The job counts (migration 0009): the deleted jobs, counted down per key.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, dead_lettered, -count(*) FROM deleted
    GROUP BY type, queue, status, dead_lettered
), run_counted AS (
    -- The run counts (migration 0009): the deleted runs, counted down per key. A running row
    -- (a node older than 0010 wrote it) was never counted: the counters hold ended runs only.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, status, coalesce(failure_kind, ''), {schema}.run_bucket(duration),
           -count(*), -count(*) FILTER (WHERE attempt > 1),
           -coalesce(sum(round(duration * 1000000)), 0)::bigint
    FROM runs WHERE status <> 'running' GROUP BY 1, 2, 3, 4
)
SELECT count(*) FROM deleted

-- lock_job_types --
-- Claims of limited types serialize on one transaction-scoped advisory lock per type. The keys
-- come sorted, and unnest yields them in order, so every claimer takes its locks in one global
-- order and two claimers can never deadlock. Held until the claim commits.
SELECT count(pg_advisory_xact_lock(t.key))
FROM unnest(%(keys)s::bigint[]) WITH ORDINALITY AS t(key, n)

-- rate_limit_free_at --
-- Flow control, rate limits (migration 0007): when the first of these types whose window is
-- full now has room again: when its start `rate_cap` places before the next one leaves the
-- window. A hint for the claimer's sleep.
--
-- The window (also in `claim_jobs`' `rate_room`, kept in step with it): for each rate-limited
-- type `t` (columns type, rate_cap, rate_window) at the instant `rn.at`, `w.next_start` is the
-- number of its next start and `w.oldest` the number of its oldest start still inside the
-- window (NULL when none is), read from `rate_limit_starts` (one row per claim of the type,
-- its starts numbered from `first_start`): two index probes, whatever the rate. The starts in
-- the window are `next_start - coalesce(oldest, next_start)`.
SELECT min(f.started_at + t.rate_window) AS free_at
FROM unnest(%(rate_types)s::text[], %(rate_caps)s::int[], %(rate_windows)s::interval[])
     AS t(type, rate_cap, rate_window)
CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) AS at) AS rn
CROSS JOIN LATERAL (
    SELECT coalesce((SELECT s.first_start + s.starts FROM {schema}.rate_limit_starts AS s
                     WHERE s.type = t.type ORDER BY s.first_start DESC LIMIT 1), 0) AS next_start,
           (SELECT s.first_start FROM {schema}.rate_limit_starts AS s
            WHERE s.type = t.type AND s.started_at > rn.at - t.rate_window
            ORDER BY s.started_at, s.first_start LIMIT 1) AS oldest
) AS w
CROSS JOIN LATERAL (
    SELECT s.started_at FROM {schema}.rate_limit_starts AS s
    WHERE s.type = t.type AND s.first_start <= w.next_start - t.rate_cap
    ORDER BY s.first_start DESC LIMIT 1
) AS f
WHERE w.next_start - coalesce(w.oldest, w.next_start) >= t.rate_cap

-- promote_due --
-- Delayed jobs (migration 0011): the waiting jobs that are due join the queue indexes, at their
-- place in claim order (a job keeps its sequence), when a claim found some (`claim_jobs`, `due`).
-- Whatever the status: a job canceled or expired while it waited leaves jobs_waiting here.
-- SKIP LOCKED: another claimer promoting the same jobs, or a cancel, takes them; never wait.
-- By tuple id, as the writes of a claim (a locked row cannot change before the statement ends).
-- On a connection with custom plans (not the claim pool): planned with the clock's value, it
-- reads jobs_waiting for a few due jobs, and the whole table only when most of it came due.
WITH due AS MATERIALIZED (
    SELECT w.ctid AS tid FROM {schema}.jobs AS w
    WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs AS j SET waiting = false
WHERE j.ctid = ANY(ARRAY(SELECT tid FROM due)) AND j.waiting

-- claim_jobs --
-- Claim up to %(limit)s jobs of the worker's types in one statement.
--
-- Per-type limits: `quota` gives each type its room: %(limit)s when unlimited, else the limit
-- minus the jobs of that type running now. That count is only safe because `lock_job_types` ran
-- first, as its own statement in this transaction: every claimer of a limited type holds the
-- type's advisory lock from before its count until its commit, and (READ COMMITTED) this
-- statement's snapshot is taken after the lock was granted, so it sees every claim committed by
-- the previous holder. Nothing else ever adds running jobs; completions, failures and releases
-- only remove them, and a stale view of those can only undercount the room. So claimers of one
-- limited type run one after the other, and no count-then-insert race exists; unlimited types
-- take no lock at all, and a type with no room never blocks the others.
--
-- Candidates: one index scan per type (jobs_pending_queue), each stopping after that type's room,
-- so a backlog of millions costs the same as ten. SKIP LOCKED passes over rows that another
-- claimer is taking, never waits for them. The top %(limit)s across types win; the few extra
-- rows locked per type are released at commit, microseconds later.
--
-- Flow control (docs/flow-control.md): this is the claim of every queue; `claim_jobs_in_queues`
-- is the same statement for a worker that serves named queues. A paused type gets no room.
-- While nothing is paused (nearly always), each type's head is one walk of jobs_pending_queue.
-- While anything is, that walk steps over a paused queue's jobs one by one (with 20,000 of
-- them at its head, every claim of every worker read 20,000 rows), so the claim reads the head
-- of each of the type's open queues instead, as `claim_jobs_in_queues` does: `walk` finds the
-- queues that hold pending jobs, one index probe each (tests/postgres/test_paused_backlog.py).
-- A type with jobs in more than 16 queues (`crowded`) still steps over the paused jobs: past
-- that, the heads cost more than they save. The two forms are the two arms of `candidates`,
-- gated by `EXISTS (SELECT FROM paused)`, read once per statement. Where the paused jobs are
-- stepped over, the paused names are read once into an array (an InitPlan), then tested per
-- row: written as NOT EXISTS, the generic plan turned it into an anti join over a sequential
-- scan of `jobs`. The test is on `j.queue || ''`, an expression without statistics, on
-- purpose: on the column itself, with every job in one queue, the planner estimated that no
-- row passes, so LIMIT saved nothing and a sequential scan won; this way it keeps walking the
-- index in claim order.
--
-- The CTEs are MATERIALIZED on purpose, as an optimisation fence (Oban's basic engine does the
-- same): inlined into the UPDATE, the planner may pick a nested loop that re-runs the locking
-- subquery and updates more rows than the LIMIT allowed.
--
-- Flow control (docs/flow-control.md), safe for the same reason (a rate-limited or keyed type
-- takes its type lock too): `rate_room` caps a rate-limited type's room by its window (read as
-- in `rate_limit_free_at`, which explains it), and `rate_starts` records this claim's starts;
-- the time is `clock_timestamp()`, read after the lock was granted, not the transaction's
-- start, so a claim that queued for the lock never stamps its starts earlier than they
-- happened. A job
-- with a `concurrency_key` is passed over when its key has `key_cap` jobs running or waiting
-- ahead of it (at most `key_cap` of those are read, from jobs_pending_keys in claim order), so
-- the claim takes exactly the jobs a walk of the queue in order would; two index probes per
-- candidate, whatever the number of distinct keys. The jobs "ahead" are only those of the
-- queues this claim reads: a paused queue's job is not taken now, so it holds no place of its
-- key. `claim_jobs_in_queues` applies every one of these limits too; the `complete_and_claim`
-- forms need none: a flow-limited type takes its type lock, and so always claims here.
WITH RECURSIVE due AS MATERIALIZED (
    -- Delayed jobs (migration 0011): whether a waiting job is due now (one probe of
    -- jobs_waiting). Every CTE of a statement reads one snapshot, and the due jobs are out of
    -- the queue indexes in it: a claim that took the other jobs now would take them out of
    -- order. So then the claim takes nothing (`quota` is empty) and says so (`due`); the store
    -- promotes them (`promote_due`) and claims again at once, in a snapshot where they wait in
    -- claim order (`_claims.claim_until_settled`): two round trips more, only when delayed jobs
    -- came due. Promoting here instead, in a CTE of this statement, cost every claim 0.15 ms
    -- (an UPDATE node's start-up), due jobs or not. SKIP LOCKED: a due job that another
    -- transaction holds (its cancel, another claim's promotion) must not stop every claim
    -- until it lets go; `promote_due` would skip it too, and each claim would end empty.
    -- ORDER BY run_at LIMIT 1: the generic plan (these statements plan once) guesses that a
    -- third of `jobs` passes `run_at <= $now`, and for a bare EXISTS it then scanned the table
    -- for a first match (30 ms with 100,000 jobs delayed, none due); in run_at order only
    -- jobs_waiting can answer, one entry read.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), rate_room AS MATERIALIZED (
    SELECT t.type, t.rate_window, rn.at, w.next_start,
           greatest(0, t.rate_cap - (w.next_start - coalesce(w.oldest, w.next_start)))::int
               AS room
    FROM unnest(%(rate_types)s::text[], %(rate_caps)s::int[], %(rate_windows)s::interval[])
         AS t(type, rate_cap, rate_window)
    CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) AS at) AS rn
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT s.first_start + s.starts FROM {schema}.rate_limit_starts AS s
                         WHERE s.type = t.type ORDER BY s.first_start DESC LIMIT 1), 0)
                   AS next_start,
               (SELECT s.first_start FROM {schema}.rate_limit_starts AS s
                WHERE s.type = t.type AND s.started_at > rn.at - t.rate_window
                ORDER BY s.started_at, s.first_start LIMIT 1) AS oldest
    ) AS w
), quota AS MATERIALIZED (
    SELECT t.type,
           least(CASE WHEN t.cap IS NULL THEN %(limit)s::int
                ELSE least(%(limit)s::int, t.cap - (
                    SELECT count(*) FROM {schema}.jobs AS r
                    WHERE r.status = 'running' AND r.type = t.type)::int)
           END, (SELECT rr.room FROM rate_room AS rr WHERE rr.type = t.type)) AS room,
           t.key_cap
    FROM unnest(%(types)s::text[], %(caps)s::int[], %(key_caps)s::int[]) AS t(type, cap, key_cap)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), walk AS (
    -- Flow control, while anything is paused: the queues that hold pending jobs of each type
    -- with room, found by skipping through jobs_pending_by_queue one (type, queue) at a time
    -- (a loose index scan: one probe per queue, however many jobs each holds), up to 17 of
    -- them. Nothing is paused: no row, no probe.
    SELECT q.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] >= ARRAY[q.type, '']
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1) AS k, 1 AS n
    FROM quota AS q
    WHERE q.room > 0 AND EXISTS (SELECT FROM {schema}.paused)
    UNION ALL
    SELECT w.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] > w.k
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1), w.n + 1
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.n <= 16
), crowded AS MATERIALIZED (
    -- Types with jobs in more than 16 queues (a queue per tenant, say), as in SQLite's
    -- `_claims.MAX_OPEN_QUEUES`: a head per queue would cost more than stepping over the
    -- paused jobs, so their heads step over them.
    SELECT w.type FROM walk AS w WHERE w.n = 17 AND w.k[1] = w.type
), open_queues AS MATERIALIZED (
    SELECT w.type, w.k[2] AS queue
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.type NOT IN (SELECT c.type FROM crowded AS c)
      AND NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = w.k[2])
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT j.id, j.ctid AS tid, j.priority, j.seq
        FROM {schema}.jobs AS j
        WHERE j.status = 'pending' AND NOT j.waiting AND j.type = q.type
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
          AND (j.queue || '') <> ALL (ARRAY(SELECT p.name FROM {schema}.paused AS p))
          AND (q.key_cap IS NULL OR j.concurrency_key IS NULL OR (
              (SELECT count(*) FROM {schema}.jobs AS r
               WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
                 AND r.type = j.type AND r.concurrency_key = j.concurrency_key)
              + (SELECT count(*) FROM (
                    SELECT p.priority, p.seq FROM {schema}.jobs AS p
                    WHERE p.status = 'pending' AND NOT p.waiting AND p.concurrency_key IS NOT NULL
                      AND p.type = j.type AND p.concurrency_key = j.concurrency_key
                      AND p.run_at <= coalesce(%(now)s::timestamptz, now())
                      AND (p.expires_at IS NULL
                           OR p.expires_at > coalesce(%(now)s::timestamptz, now()))
                      AND (p.queue || '') <> ALL (ARRAY(SELECT x.name FROM {schema}.paused AS x))
                    ORDER BY p.priority DESC, p.seq
                    LIMIT q.key_cap) AS h
                 WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq))
              < q.key_cap))
        ORDER BY j.priority DESC, j.seq
        LIMIT greatest(q.room, 0)
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE NOT EXISTS (SELECT FROM {schema}.paused)
       OR q.type IN (SELECT c.type FROM crowded AS c)  -- stepping over the paused jobs
    UNION ALL
    -- Flow control, while anything is paused: the head of each open queue of the type, as in
    -- `claim_jobs_in_queues`, so a paused queue's backlog is never read.
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM open_queues AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
              AND (q.key_cap IS NULL OR j.concurrency_key IS NULL OR (
                  (SELECT count(*) FROM {schema}.jobs AS r
                   WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
                     AND r.type = j.type AND r.concurrency_key = j.concurrency_key)
                  + (SELECT count(*) FROM (
                        SELECT p.priority, p.seq FROM {schema}.jobs AS p
                        WHERE p.status = 'pending' AND NOT p.waiting AND p.concurrency_key IS NOT NULL
                          AND p.type = j.type AND p.concurrency_key = j.concurrency_key
                          AND p.run_at <= coalesce(%(now)s::timestamptz, now())
                          AND (p.expires_at IS NULL
                               OR p.expires_at > coalesce(%(now)s::timestamptz, now()))
                          AND (p.queue || '')
                              <> ALL (ARRAY(SELECT x.name FROM {schema}.paused AS x))
                        ORDER BY p.priority DESC, p.seq
                        LIMIT q.key_cap) AS h
                     WHERE h.priority > j.priority OR (h.priority = j.priority AND h.seq < j.seq))
                  < q.key_cap))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        WHERE s.type = q.type
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim (also in `complete_and_claim` and the `_in_queues` forms): the jobs
-- in `chosen` become running with a fresh lock token, lease and run id. No run row is written
-- here: the job row holds everything a running attempt's run shows (run_id, worker,
-- started_at, attempts, run_progress, NULL until the handler reports progress), `get_job_runs`
-- and `run_stats` read a running attempt from it, and the attempt's row in job_runs is
-- inserted once, by whatever ends it (migration 0010: one row version and its index entries
-- fewer per attempt than an insert here and an update at the end; a 25 + 25
-- `complete_and_claim` writes 18 % less WAL, docs/performance.md).
-- The rows are found by the tuple ids `candidates` locked (`ctid = ANY(ARRAY(...))`, a TID
-- scan), not by joining `chosen` and not by their ids. These statements run with generic
-- plans (_session._ClaimPool): a generic plan, which cannot know the batch is small, turned
-- the join into a hash join over a sequential scan of `jobs` (14 ms for one job on 20,000
-- rows); and `id = ANY(...)`, right after a burst of enqueues that nothing has analyzed yet,
-- was planned as a walk of the whole pending index filtered by id (a W2 store loop 2.1x
-- slower until autovacuum's ANALYZE ran). A TID scan is the one plan, whatever the estimates.
-- It is safe: a row locked by `candidates` cannot change before this statement ends, and a
-- tuple id that is not the version this statement's snapshot sees (a pending job updated and
-- committed between the snapshot and the lock, which nothing does while leaving it pending)
-- matches nothing here: the job stays pending for a later claim. Completions keep finding
-- their rows by id, because a running job's row is updated meanwhile (renewals, progress,
-- cancel requests), and an id follows the update to its new version where a tuple id would not.
-- The run id is made inside the statement, one per row: a version 7 UUID like
-- `_common.new_id` (48 bits of Unix milliseconds, then the version, then the random rest of a
-- `gen_random_uuid()`), for the same reason: ids that grow at the right edge of their index,
-- where random ones land on a random leaf of job_runs' primary key each, and that index grows
-- with the history kept (the row goes in when its attempt ends, among the rows of attempts
-- that started about when it did: near the right edge still). PostgreSQL 15 has no uuidv7().
-- (Measured on W5, 1,000,000 runs: within the noise of this machine, medians 2,250 and 2,270
-- jobs/s; it matters once the index outgrows the cache.)
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts (migration 0009), one delta row per key this statement moved jobs into
    -- or out of, not one per job: the claimed jobs leave pending for running. A pending or
    -- running job is never dead-lettered (only a final failure or an expiry sets the flag, and
    -- a retry clears it). No run count here: a running attempt has no run row and no run
    -- delta (`run_stats` reads the running attempts from the running jobs); its run is
    -- counted once, by whatever writes its row at the end.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT c.type, c.queue, s.status, false, s.n * count(*) FROM claimed AS c
    CROSS JOIN (VALUES ('running', 1), ('pending', -1)) AS s(status, n)
    GROUP BY c.type, c.queue, s.status, s.n
), rate_starts AS (
    -- Flow control, rate limits: this claim's starts of each rate-limited type, one row. The
    -- writes below read the small CTEs through subqueries, not joins, so the generic plans
    -- hold no hash join (see the writes of a claim above).
    INSERT INTO {schema}.rate_limit_starts (type, first_start, starts, started_at)
    SELECT r.type, r.next_start, n.starts, r.at
    FROM rate_room AS r
    CROSS JOIN LATERAL (SELECT count(*) AS starts FROM claimed AS c WHERE c.type = r.type) AS n
    WHERE n.starts > 0
), rate_pruned AS (
    -- The rows that left the window of a type this claim started (this statement's snapshot
    -- does not hold `rate_starts`' row: it is never pruned). The table holds one row per
    -- claim inside each window, so even a scan of it stays small.
    DELETE FROM {schema}.rate_limit_starts AS s
    WHERE s.type = ANY(ARRAY(
              SELECT r.type FROM rate_room AS r
              WHERE EXISTS (SELECT FROM claimed AS c WHERE c.type = r.type)))
      AND s.started_at <= (SELECT r.at - r.rate_window FROM rate_room AS r WHERE r.type = s.type)
)
-- One row of NULLs when nothing was claimed, so that `due` always comes back.
SELECT (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT) AS one LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- claim_jobs_in_queues --
-- Flow control: `claim_jobs` (the same statement, kept in step with it, rate and key limits
-- included) for a worker that serves the queues %(queues)s. Each type's head is one head per
-- served queue that is not paused (jobs_pending_by_queue, so the jobs of other queues are
-- never read), merged, at most the type's room in all. Its own statement, not an OR in
-- `claim_jobs`: the claim pool plans each statement once (generic plans), and one plan cannot
-- pick its index by a parameter. The key is written as that index's expression,
-- ARRAY[type, queue], so no plan can pick another index (migration 0006 says why). A key's
-- jobs "ahead" of a candidate are those of every queue this claim reads (`served`): the type's
-- heads are merged in claim order, so the key's job in another served queue is taken first.
WITH due AS MATERIALIZED (
    -- Delayed jobs that came due: claim nothing now, as in `claim_jobs`.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), rate_room AS MATERIALIZED (
    SELECT t.type, t.rate_window, rn.at, w.next_start,
           greatest(0, t.rate_cap - (w.next_start - coalesce(w.oldest, w.next_start)))::int
               AS room
    FROM unnest(%(rate_types)s::text[], %(rate_caps)s::int[], %(rate_windows)s::interval[])
         AS t(type, rate_cap, rate_window)
    CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) AS at) AS rn
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT s.first_start + s.starts FROM {schema}.rate_limit_starts AS s
                         WHERE s.type = t.type ORDER BY s.first_start DESC LIMIT 1), 0)
                   AS next_start,
               (SELECT s.first_start FROM {schema}.rate_limit_starts AS s
                WHERE s.type = t.type AND s.started_at > rn.at - t.rate_window
                ORDER BY s.started_at, s.first_start LIMIT 1) AS oldest
    ) AS w
), quota AS MATERIALIZED (
    SELECT t.type,
           least(CASE WHEN t.cap IS NULL THEN %(limit)s::int
                ELSE least(%(limit)s::int, t.cap - (
                    SELECT count(*) FROM {schema}.jobs AS r
                    WHERE r.status = 'running' AND r.type = t.type)::int)
           END, (SELECT rr.room FROM rate_room AS rr WHERE rr.type = t.type)) AS room,
           t.key_cap
    FROM unnest(%(types)s::text[], %(caps)s::int[], %(key_caps)s::int[]) AS t(type, cap, key_cap)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), served AS MATERIALIZED (
    SELECT s.queue FROM unnest(%(queues)s::text[]) AS s(queue)
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = s.queue)
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM served AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
              AND (q.key_cap IS NULL OR j.concurrency_key IS NULL OR (
                  (SELECT count(*) FROM {schema}.jobs AS r
                   WHERE r.status = 'running' AND r.concurrency_key IS NOT NULL
                     AND r.type = j.type AND r.concurrency_key = j.concurrency_key)
                  + (SELECT count(*) FROM (
                        SELECT p.priority, p.seq FROM {schema}.jobs AS p
                        WHERE p.status = 'pending' AND NOT p.waiting AND p.concurrency_key IS NOT NULL
                          AND p.type = j.type AND p.concurrency_key = j.concurrency_key
                          AND p.run_at <= coalesce(%(now)s::timestamptz, now())
                          AND (p.expires_at IS NULL
                               OR p.expires_at > coalesce(%(now)s::timestamptz, now()))
                          AND p.queue = ANY(ARRAY(SELECT x.queue FROM served AS x))
                        ORDER BY p.priority DESC, p.seq
                        LIMIT q.key_cap) AS h
                     WHERE h.priority > j.priority
                        OR (h.priority = j.priority AND h.seq < j.seq))
                  < q.key_cap))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim, as in `claim_jobs`.
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts, as in `claim_jobs`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT c.type, c.queue, s.status, false, s.n * count(*) FROM claimed AS c
    CROSS JOIN (VALUES ('running', 1), ('pending', -1)) AS s(status, n)
    GROUP BY c.type, c.queue, s.status, s.n
), rate_starts AS (
    -- Flow control, rate limits, as in `claim_jobs`.
    INSERT INTO {schema}.rate_limit_starts (type, first_start, starts, started_at)
    SELECT r.type, r.next_start, n.starts, r.at
    FROM rate_room AS r
    CROSS JOIN LATERAL (SELECT count(*) AS starts FROM claimed AS c WHERE c.type = r.type) AS n
    WHERE n.starts > 0
), rate_pruned AS (
    DELETE FROM {schema}.rate_limit_starts AS s
    WHERE s.type = ANY(ARRAY(
              SELECT r.type FROM rate_room AS r
              WHERE EXISTS (SELECT FROM claimed AS c WHERE c.type = r.type)))
      AND s.started_at <= (SELECT r.at - r.rate_window FROM rate_room AS r WHERE r.type = s.type)
)
-- One row of NULLs when nothing was claimed, so that `due` always comes back.
SELECT (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT) AS one LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- claim_jobs_unlimited --
-- `claim_jobs` for a claim with no per-type limit, no rate limit and no concurrency key among
-- its types: the claim half of `complete_and_claim` (kept in step with it), with none of flow
-- control's limit CTEs. Those cost an idle worker's claim about 0.15 ms even when their arrays
-- are empty (the executor opens and locks `rate_limit_starts` and its indexes for the writes,
-- and starts every subplan), which is an eighth of W3's enqueue-to-start latency. A paused type
-- or queue is still passed over, as in every claim.
WITH RECURSIVE due AS MATERIALIZED (
    -- Delayed jobs that came due: claim nothing now, as in `claim_jobs`.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), quota AS MATERIALIZED (
    SELECT t.type, %(limit)s::int AS room
    FROM unnest(%(types)s::text[]) AS t(type)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), walk AS (
    -- Flow control, while anything is paused: the queues that hold pending jobs of each type
    -- with room, found by skipping through jobs_pending_by_queue one (type, queue) at a time
    -- (a loose index scan: one probe per queue, however many jobs each holds), up to 17 of
    -- them. Nothing is paused: no row, no probe.
    SELECT q.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] >= ARRAY[q.type, '']
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1) AS k, 1 AS n
    FROM quota AS q
    WHERE q.room > 0 AND EXISTS (SELECT FROM {schema}.paused)
    UNION ALL
    SELECT w.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] > w.k
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1), w.n + 1
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.n <= 16
), crowded AS MATERIALIZED (
    -- Types with jobs in more than 16 queues (a queue per tenant, say), as in SQLite's
    -- `_claims.MAX_OPEN_QUEUES`: a head per queue would cost more than stepping over the
    -- paused jobs, so their heads step over them.
    SELECT w.type FROM walk AS w WHERE w.n = 17 AND w.k[1] = w.type
), open_queues AS MATERIALIZED (
    SELECT w.type, w.k[2] AS queue
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.type NOT IN (SELECT c.type FROM crowded AS c)
      AND NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = w.k[2])
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT j.id, j.ctid AS tid, j.priority, j.seq
        FROM {schema}.jobs AS j
        WHERE j.status = 'pending' AND NOT j.waiting AND j.type = q.type
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
          AND (j.queue || '') <> ALL (ARRAY(SELECT p.name FROM {schema}.paused AS p))
        ORDER BY j.priority DESC, j.seq
        LIMIT greatest(q.room, 0)
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE NOT EXISTS (SELECT FROM {schema}.paused)
       OR q.type IN (SELECT c.type FROM crowded AS c)  -- stepping over the paused jobs
    UNION ALL
    -- Flow control, while anything is paused: the head of each open queue of the type, as in
    -- `claim_jobs_in_queues`, so a paused queue's backlog is never read.
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM open_queues AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        WHERE s.type = q.type
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim, as in `claim_jobs`.
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts, as in `claim_jobs`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT c.type, c.queue, s.status, false, s.n * count(*) FROM claimed AS c
    CROSS JOIN (VALUES ('running', 1), ('pending', -1)) AS s(status, n)
    GROUP BY c.type, c.queue, s.status, s.n
)
-- One row of NULLs when nothing was claimed, so that `due` always comes back.
SELECT (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT) AS one LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- claim_jobs_unlimited_in_queues --
-- Flow control: `claim_jobs_unlimited` for a worker that serves the queues %(queues)s, each
-- type's head read as in `claim_jobs_in_queues` (the claim half of
-- `complete_and_claim_in_queues`, kept in step with it).
WITH due AS MATERIALIZED (
    -- Delayed jobs that came due: claim nothing now, as in `claim_jobs`.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), quota AS MATERIALIZED (
    SELECT t.type, %(limit)s::int AS room
    FROM unnest(%(types)s::text[]) AS t(type)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM (
            SELECT s.queue FROM unnest(%(queues)s::text[]) AS s(queue)
            WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = s.queue)
        ) AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim, as in `claim_jobs`.
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts, as in `claim_jobs`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT c.type, c.queue, s.status, false, s.n * count(*) FROM claimed AS c
    CROSS JOIN (VALUES ('running', 1), ('pending', -1)) AS s(status, n)
    GROUP BY c.type, c.queue, s.status, s.n
)
-- One row of NULLs when nothing was claimed, so that `due` always comes back.
SELECT (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT) AS one LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- renew_claims --
-- Extend the leases whose token is still current. Rows are locked in id order first, as in
-- every batch update here, so two batches over the same jobs (a renewal and a completion of one
-- worker) cannot deadlock. The rows to lock are found by `id = ANY(...)` (the id index, one
-- probe per job), not by joining the input to the running set: with the running set estimated
-- small the planner hashed the input and scanned jobs_running, whose dead entries pile up with
-- every job that passes through (942 index entries read to complete 10 jobs in W2). A token
-- is a UUID, so `lock_token = ANY(...)` matches no other job's; the exact (id, token) pairs are
-- checked again where the rows are written. No `status = 'running'` here, on purpose: it would
-- let the planner pick jobs_running again; a token exists only while its job runs (every end
-- of a run clears it), and the write below checks the status anyway. Only the lease moves:
-- lock_expires_at is not indexed, so a renewal is a HOT update.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS i(id, token)
), locked AS MATERIALIZED (
    SELECT j.id FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::text[]) AND j.lock_token = ANY(%(tokens)s::text[])
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE {schema}.jobs AS j SET lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s
FROM locked
WHERE j.id = locked.id AND j.status = 'running'
RETURNING j.id, j.cancel_requested, j.cancel_requested AND j.cancel_terminate AS terminate

-- complete_jobs --
-- Finish runs successfully, in one statement for the whole batch. A stale token matches nothing.
WITH
-- The writes of a completion batch (also in `complete_and_claim`): the jobs whose token is
-- still current are locked in id order (see `renew_claims`), finished, and their runs written
-- (the run row's first and only write, see the writes of a claim in `claim_jobs`), from the
-- values `locked` read from the job row (the attempt's, before `done` clears the claim). The run
-- id the worker sent must be the job's, as when this updated the row the claim had inserted.
-- `done` returns what was completed. `id = ANY(ARRAY(...))`, not a join (a generic plan's
-- hash join, see the writes of a claim in `claim_jobs`) and not the tuple ids `locked` saw (a
-- renewal or a progress report may have moved the row to a new version since the snapshot). No `status = 'running'` in `done`, on purpose (as in `renew_claims`): with it, a
-- generic plan reached the jobs through jobs_running and its dead entries. The token is the
-- fence: a job has one only while it runs, since every end of a run (completion, failure,
-- release, recovery) clears it, and the row is locked from `locked` on.
input AS (
    SELECT *
    FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(runs)s::text[], %(results)s::text[],
                %(canceled)s::bool[])
         WITH ORDINALITY AS i(id, token, run_id, result, canceled, n)
), locked AS MATERIALIZED (
    SELECT j.id, j.run_id, j.type, j.attempts, j.worker, j.started_at
    FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::text[]) AND j.lock_token = ANY(%(tokens)s::text[])
    ORDER BY j.id
    FOR UPDATE OF j
), done AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN i.canceled THEN 'canceled' ELSE 'completed' END,
        finished_at = coalesce(%(now)s::timestamptz, now()), result = i.result::json,
        progress = CASE WHEN i.canceled THEN j.progress ELSE 100 END,
        lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
        cancel_requested = false
    FROM input AS i
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked)) AND i.id = j.id AND j.lock_token = i.token
    RETURNING j.id, i.run_id, j.finished_at, j.type, j.queue, j.status
), done_runs AS (
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration, progress
    )
    SELECT l.run_id, l.id, l.type, l.attempts, 'completed', l.worker, l.started_at,
           d.finished_at, extract(epoch FROM d.finished_at - l.started_at), 100
    FROM done AS d
    JOIN locked AS l ON l.id = d.id
    WHERE l.run_id = d.run_id
    RETURNING job_type, attempt, duration
), counted AS (
    -- The job counts (migration 0009): the finished jobs leave running, one delta row per key.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, false, count(*) FROM done GROUP BY type, queue, status
    UNION ALL
    SELECT type, queue, 'running', false, -count(*) FROM done GROUP BY type, queue
), run_counted AS (
    -- The run counts (migration 0009): the runs written here, completed with their duration,
    -- one delta row per key. Every write of a run row has its delta beside it, read from that
    -- write's RETURNING; a running attempt was never counted as a run (see `claim_jobs`'
    -- `counted`), so nothing leaves a running key.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, 'completed', '', {schema}.run_bucket(duration), count(*),
           count(*) FILTER (WHERE attempt > 1), sum(round(duration * 1000000))::bigint
    FROM done_runs GROUP BY job_type, 4
)
SELECT id, finished_at FROM done

-- complete_and_claim --
-- `complete_jobs` then `claim_jobs` in ONE statement, for a worker whose finished jobs freed the
-- slots it now claims: one round trip and one commit (one WAL flush) instead of two. Only for
-- claims without per-type limits: every data-modifying CTE of a statement shares one snapshot,
-- so a `quota` count here could not see the completions, and a limited claim needs the
-- `lock_job_types` statement before it anyway (the store then pipelines the two statements in
-- one transaction instead). The two halves touch disjoint rows: the completions lock their own
-- running jobs, the claim only ever takes pending ones. The first columns report the
-- completions (the ids on the first row; every one of them finishes at the store's clock: the
-- statement's time); then one row per claimed job, or one row of NULLs when nothing was claimed.
WITH RECURSIVE
-- The writes of a completion batch, as in `complete_jobs`.
input AS (
    SELECT *
    FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(runs)s::text[], %(results)s::text[],
                %(canceled)s::bool[])
         WITH ORDINALITY AS i(id, token, run_id, result, canceled, n)
), locked AS MATERIALIZED (
    SELECT j.id, j.run_id, j.type, j.attempts, j.worker, j.started_at
    FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::text[]) AND j.lock_token = ANY(%(tokens)s::text[])
    ORDER BY j.id
    FOR UPDATE OF j
), done AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN i.canceled THEN 'canceled' ELSE 'completed' END,
        finished_at = coalesce(%(now)s::timestamptz, now()), result = i.result::json,
        progress = CASE WHEN i.canceled THEN j.progress ELSE 100 END,
        lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
        cancel_requested = false
    FROM input AS i
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked)) AND i.id = j.id AND j.lock_token = i.token
    RETURNING j.id, i.run_id, j.finished_at, j.type, j.queue, j.status
), done_runs AS (
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration, progress
    )
    SELECT l.run_id, l.id, l.type, l.attempts, 'completed', l.worker, l.started_at,
           d.finished_at, extract(epoch FROM d.finished_at - l.started_at), 100
    FROM done AS d
    JOIN locked AS l ON l.id = d.id
    WHERE l.run_id = d.run_id
    RETURNING job_type, attempt, duration
), due AS MATERIALIZED (
    -- Delayed jobs that came due: claim nothing now, as in `claim_jobs`.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), quota AS MATERIALIZED (
    SELECT t.type, %(limit)s::int AS room
    FROM unnest(%(types)s::text[]) AS t(type)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), walk AS (
    -- Flow control, while anything is paused: the queues that hold pending jobs of each type
    -- with room, found by skipping through jobs_pending_by_queue one (type, queue) at a time
    -- (a loose index scan: one probe per queue, however many jobs each holds), up to 17 of
    -- them. Nothing is paused: no row, no probe.
    SELECT q.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] >= ARRAY[q.type, '']
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1) AS k, 1 AS n
    FROM quota AS q
    WHERE q.room > 0 AND EXISTS (SELECT FROM {schema}.paused)
    UNION ALL
    SELECT w.type, (SELECT ARRAY[j.type, j.queue] FROM {schema}.jobs AS j
                    WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] > w.k
                    ORDER BY ARRAY[j.type, j.queue] LIMIT 1), w.n + 1
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.n <= 16
), crowded AS MATERIALIZED (
    -- Types with jobs in more than 16 queues (a queue per tenant, say), as in SQLite's
    -- `_claims.MAX_OPEN_QUEUES`: a head per queue would cost more than stepping over the
    -- paused jobs, so their heads step over them.
    SELECT w.type FROM walk AS w WHERE w.n = 17 AND w.k[1] = w.type
), open_queues AS MATERIALIZED (
    SELECT w.type, w.k[2] AS queue
    FROM walk AS w
    WHERE w.k[1] = w.type AND w.type NOT IN (SELECT c.type FROM crowded AS c)
      AND NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = w.k[2])
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT j.id, j.ctid AS tid, j.priority, j.seq
        FROM {schema}.jobs AS j
        WHERE j.status = 'pending' AND NOT j.waiting AND j.type = q.type
          AND j.run_at <= coalesce(%(now)s::timestamptz, now())
          AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
          AND (j.queue || '') <> ALL (ARRAY(SELECT p.name FROM {schema}.paused AS p))
        ORDER BY j.priority DESC, j.seq
        LIMIT greatest(q.room, 0)
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE NOT EXISTS (SELECT FROM {schema}.paused)
       OR q.type IN (SELECT c.type FROM crowded AS c)  -- stepping over the paused jobs
    UNION ALL
    -- Flow control, while anything is paused: the head of each open queue of the type, as in
    -- `claim_jobs_in_queues`, so a paused queue's backlog is never read.
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM open_queues AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        WHERE s.type = q.type
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim, as in `claim_jobs`.
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts (migration 0009), one delta row per key the statement changed: the
    -- finished jobs leave running, the claimed ones leave pending for it (a pending or
    -- running job is never dead-lettered). In a steady drain the running rows cancel out.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, false, sum(n) FROM (
        SELECT type, queue, status, 1 AS n FROM done
        UNION ALL SELECT type, queue, 'running', -1 FROM done
        UNION ALL SELECT type, queue, 'running', 1 FROM claimed
        UNION ALL SELECT type, queue, 'pending', -1 FROM claimed
    ) AS change
    GROUP BY type, queue, status HAVING sum(n) <> 0
), run_counted AS (
    -- The run counts (migration 0009), as in `complete_jobs`: the runs written here,
    -- completed. The claim half writes no run, so it counts none.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, 'completed', '', {schema}.run_bucket(duration), count(*),
           count(*) FILTER (WHERE attempt > 1), sum(round(duration * 1000000))::bigint
    FROM done_runs GROUP BY job_type, 4
)
-- The completed ids ride on the first row only: on every row, a batch of 50 sent its array 50
-- times, and the worker read it 50 times (5 us of its CPU and 2 us of the server's a row).
SELECT CASE WHEN row_number() OVER (ORDER BY claimed.priority DESC, claimed.seq) = 1
            THEN d.completed_ids END AS completed_ids,
       d.completed_at, (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT array_agg(id) AS completed_ids, min(finished_at) AS completed_at FROM done) AS d
LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- complete_and_claim_in_queues --
-- Flow control: `complete_and_claim` (the same statement, kept in step with it) for a worker
-- that serves the queues %(queues)s, each type's head read as in `claim_jobs_in_queues`.
WITH
-- The writes of a completion batch, as in `complete_jobs`.
input AS (
    SELECT *
    FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(runs)s::text[], %(results)s::text[],
                %(canceled)s::bool[])
         WITH ORDINALITY AS i(id, token, run_id, result, canceled, n)
), locked AS MATERIALIZED (
    SELECT j.id, j.run_id, j.type, j.attempts, j.worker, j.started_at
    FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::text[]) AND j.lock_token = ANY(%(tokens)s::text[])
    ORDER BY j.id
    FOR UPDATE OF j
), done AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN i.canceled THEN 'canceled' ELSE 'completed' END,
        finished_at = coalesce(%(now)s::timestamptz, now()), result = i.result::json,
        progress = CASE WHEN i.canceled THEN j.progress ELSE 100 END,
        lock_token = NULL, lock_expires_at = NULL, run_id = NULL,
        cancel_requested = false
    FROM input AS i
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked)) AND i.id = j.id AND j.lock_token = i.token
    RETURNING j.id, i.run_id, j.finished_at, j.type, j.queue, j.status
), done_runs AS (
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration, progress
    )
    SELECT l.run_id, l.id, l.type, l.attempts, 'completed', l.worker, l.started_at,
           d.finished_at, extract(epoch FROM d.finished_at - l.started_at), 100
    FROM done AS d
    JOIN locked AS l ON l.id = d.id
    WHERE l.run_id = d.run_id
    RETURNING job_type, attempt, duration
), due AS MATERIALIZED (
    -- Delayed jobs that came due: claim nothing now, as in `claim_jobs`.
    SELECT EXISTS (SELECT FROM {schema}.jobs AS w
                   WHERE w.waiting AND w.run_at <= coalesce(%(now)s::timestamptz, now())
                   ORDER BY w.run_at LIMIT 1
                   FOR UPDATE SKIP LOCKED) AS any
), quota AS MATERIALIZED (
    SELECT t.type, %(limit)s::int AS room
    FROM unnest(%(types)s::text[]) AS t(type)
    -- Flow control: a paused type gets no room, so its backlog is never read.
    WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = t.type)
      -- Delayed jobs came due: claim nothing now, claim again (`due`).
      AND NOT (SELECT u.any FROM due AS u)
), candidates AS MATERIALIZED (
    SELECT c.id, c.tid, c.priority, c.seq
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT h.id, h.tid, h.priority, h.seq
        FROM (
            SELECT s.queue FROM unnest(%(queues)s::text[]) AS s(queue)
            WHERE NOT EXISTS (SELECT FROM {schema}.paused AS p WHERE p.name = s.queue)
        ) AS s
        CROSS JOIN LATERAL (
            SELECT j.id, j.ctid AS tid, j.priority, j.seq
            FROM {schema}.jobs AS j
            WHERE j.status = 'pending' AND NOT j.waiting AND ARRAY[j.type, j.queue] = ARRAY[q.type, s.queue]
              AND j.run_at <= coalesce(%(now)s::timestamptz, now())
              AND (j.expires_at IS NULL OR j.expires_at > coalesce(%(now)s::timestamptz, now()))
            ORDER BY j.priority DESC, j.seq
            LIMIT greatest(q.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS h
        ORDER BY h.priority DESC, h.seq
        LIMIT greatest(q.room, 0)
    ) AS c
), chosen AS MATERIALIZED (
    SELECT tid FROM candidates ORDER BY priority DESC, seq LIMIT %(limit)s
),
-- The writes of a claim, as in `claim_jobs`.
claimed AS (
    UPDATE {schema}.jobs AS j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = coalesce(%(now)s::timestamptz, now()),
        worker = %(worker)s, lock_token = gen_random_uuid()::text,
        lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s,
        run_id = overlay(lpad(to_hex((extract(epoch FROM statement_timestamp()) * 1000)::bigint),
                                 12, '0') placing '-' from 9 for 0)
                 || '-7' || substr(gen_random_uuid()::text, 16),
        cancel_requested = false, cancel_terminate = false, run_progress = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT tid FROM chosen)) AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts, as in `complete_and_claim`.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, false, sum(n) FROM (
        SELECT type, queue, status, 1 AS n FROM done
        UNION ALL SELECT type, queue, 'running', -1 FROM done
        UNION ALL SELECT type, queue, 'running', 1 FROM claimed
        UNION ALL SELECT type, queue, 'pending', -1 FROM claimed
    ) AS change
    GROUP BY type, queue, status HAVING sum(n) <> 0
), run_counted AS (
    -- The run counts, as in `complete_and_claim`.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, 'completed', '', {schema}.run_bucket(duration), count(*),
           count(*) FILTER (WHERE attempt > 1), sum(round(duration * 1000000))::bigint
    FROM done_runs GROUP BY job_type, 4
)
-- The completed ids on the first row only, as in `complete_and_claim`.
SELECT CASE WHEN row_number() OVER (ORDER BY claimed.priority DESC, claimed.seq) = 1
            THEN d.completed_ids END AS completed_ids,
       d.completed_at, (SELECT u.any FROM due AS u) AS due, claimed.*
FROM (SELECT array_agg(id) AS completed_ids, min(finished_at) AS completed_at FROM done) AS d
LEFT JOIN claimed ON true
ORDER BY claimed.priority DESC, claimed.seq

-- lock_claimed_job --
-- The failing job, locked, with what `_common.decide_failure` needs. None for a stale token.
SELECT id, run_id, attempts, max_retries, backoff_strategy, retry_delay, max_retry_delay,
       expires_at, cancel_requested, coalesce(%(now)s::timestamptz, now()) AS now
FROM {schema}.jobs
WHERE id = %(id)s AND lock_token = %(token)s AND status = 'running'
FOR UPDATE

-- lock_expired_leases --
-- Running jobs whose lease ran out (their worker died or lost the database), locked for the
-- reaper. SKIP LOCKED: a job its worker is finishing right now is left to that worker.
SELECT id, run_id, worker, lock_expires_at, attempts, max_retries, backoff_strategy,
       retry_delay, max_retry_delay, expires_at, cancel_requested,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM {schema}.jobs
WHERE status = 'running' AND lock_expires_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY lock_expires_at, seq  -- ties in enqueue order, as on every store (ids are random)
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- apply_failures --
-- Write what `_common.decide_failure` decided for jobs this transaction has locked: the run
-- fails with the error, its kind and traceback; the job goes back to pending at its retry time,
-- to failed in the dead-letter queue, or to canceled when a cancel was requested (cancel is
-- final); a finished job keeps `worker` (who ran the last attempt). The lock is cleared either
-- way.
WITH input AS (
    SELECT *
    FROM unnest(%(ids)s::text[], %(runs)s::text[], %(errors)s::text[], %(reasons)s::text[],
                %(retry_ats)s::timestamptz[], %(finished_ats)s::timestamptz[],
                %(dead)s::bool[], %(kinds)s::text[], %(tracebacks)s::text[],
                %(canceled)s::bool[])
         AS i(id, run_id, error, reason, retry_at, finished_at, dead, kind, traceback, canceled)
), runs AS (
    -- The failed run's only write (see the writes of a claim in `claim_jobs`), from the job
    -- row as this transaction locked it: every CTE reads the statement's snapshot, so `j` holds
    -- the attempt's worker, attempt number and progress, not what the UPDATE below writes.
    -- ON CONFLICT: a job claimed by a node older than migration 0010 has its run row already
    -- (status running, its progress in it); recovering its lease closes that row instead.
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration,
        progress, error, failure_kind, traceback
    )
    SELECT j.run_id, j.id, j.type, j.attempts, 'failed', j.worker, j.started_at,
           coalesce(%(now)s::timestamptz, now()),
           extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - j.started_at),
           coalesce(j.run_progress, 0), i.error, i.kind, i.traceback
    FROM input AS i
    JOIN {schema}.jobs AS j ON j.id = i.id
    WHERE j.run_id = i.run_id
    ON CONFLICT (id) DO UPDATE
    SET status = excluded.status, finished_at = excluded.finished_at,
        duration = excluded.duration, error = excluded.error,
        failure_kind = excluded.failure_kind, traceback = excluded.traceback
    RETURNING job_type, failure_kind, duration, attempt
), failed AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN i.canceled THEN 'canceled' WHEN i.dead THEN 'failed' ELSE 'pending'
                 END,
        run_at = coalesce(i.retry_at, j.run_at),
        -- A retry's backoff: out of the queue indexes until due (migration 0011).
        waiting = NOT i.canceled AND NOT i.dead
                  AND coalesce(i.retry_at, j.run_at) > coalesce(%(now)s::timestamptz, now()),
        finished_at = i.finished_at, fail_reason = i.reason, failure_kind = i.kind, dead_lettered = i.dead,
        worker = CASE WHEN i.dead OR i.canceled THEN j.worker END, lock_token = NULL,
        lock_expires_at = NULL, run_id = NULL, cancel_requested = false, cancel_terminate = false
    FROM input AS i
    WHERE j.id = i.id
    RETURNING j.*
), counted AS (
    -- The job counts (migration 0009): the jobs (running, locked by this transaction's
    -- `lock_claimed_job` or `lock_expired_leases`) leave running, one delta row per key.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, dead_lettered, count(*) FROM failed
    GROUP BY type, queue, status, dead_lettered
    UNION ALL
    SELECT type, queue, 'running', false, -count(*) FROM failed GROUP BY type, queue
), run_counted AS (
    -- The run counts (migration 0009): the runs written here, failed with their kind. A
    -- running row of a node older than 0010 that the ON CONFLICT closed counts here for the
    -- first time too: the counters never hold running runs (0009's backfill skips them).
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, 'failed', coalesce(failure_kind, ''), {schema}.run_bucket(duration),
           count(*), count(*) FILTER (WHERE attempt > 1),
           coalesce(sum(round(duration * 1000000)), 0)::bigint
    FROM runs GROUP BY 1, 3, 4
)
SELECT * FROM failed

-- release_jobs --
-- Give claimed jobs back at a graceful stop: pending again, the attempt not charged, run_at
-- unchanged; the run is `released`. Woken listeners can claim them at once. A job with a cancel
-- request is not given back (cancel is final): it ends canceled, finished now, the attempt
-- kept (it ran), its run `released` too.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(runs)s::text[])
         AS i(id, token, run_id)
), locked AS MATERIALIZED (
    SELECT j.id, j.run_id, j.type, j.attempts, j.worker, j.started_at, j.run_progress
    FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::text[]) AND j.lock_token = ANY(%(tokens)s::text[])
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN j.cancel_requested THEN 'canceled' ELSE 'pending' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts ELSE j.attempts - 1 END,
        finished_at = CASE WHEN j.cancel_requested THEN coalesce(%(now)s::timestamptz, now())
                           ELSE j.finished_at END,
        worker = CASE WHEN j.cancel_requested THEN j.worker END, lock_token = NULL,
        lock_expires_at = NULL, run_id = NULL, cancel_requested = false, cancel_terminate = false
    FROM input AS i, locked
    WHERE j.id = locked.id AND i.id = locked.id AND j.lock_token = i.token
      AND j.status = 'running'
    RETURNING j.id, i.run_id, j.type, j.queue, j.status
), runs AS (
    -- The released run's only write (see the writes of a claim in `claim_jobs`), from the job
    -- row as `locked` read it (before `released` takes the attempt back).
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration, progress
    )
    SELECT l.run_id, l.id, l.type, l.attempts, 'released', l.worker, l.started_at,
           coalesce(%(now)s::timestamptz, now()),
           extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - l.started_at),
           coalesce(l.run_progress, 0)
    FROM released AS r
    JOIN locked AS l ON l.id = r.id
    WHERE l.run_id = r.run_id
    RETURNING job_type, duration, attempt
), counted AS (
    -- The job counts (migration 0009): the jobs leave running, one delta row per key.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, false, count(*) FROM released GROUP BY type, queue, status
    UNION ALL
    SELECT type, queue, 'running', false, -count(*) FROM released GROUP BY type, queue
), run_counted AS (
    -- The run counts (migration 0009): the runs written here, released.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, 'released', '', {schema}.run_bucket(duration), count(*),
           count(*) FILTER (WHERE attempt > 1), sum(round(duration * 1000000))::bigint
    FROM runs GROUP BY job_type, 4
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT FROM released LIMIT 1) AS any_released
)
SELECT id, (SELECT count(*) FROM wake) AS notified FROM released

-- snooze_job --
-- The handler raised `Snooze`: give the job back as `release_jobs` does, the attempt not
-- charged, but due `delay` from now. A job with a cancel request is not given back (cancel is
-- final): it ends canceled, finished now, the attempt kept. The run is `released` either way.
-- Listeners are woken only when the job is due at once (a later run_at is the snoozing
-- worker's to wake for).
WITH locked AS MATERIALIZED (
    -- The attempt as the job row holds it, locked first: `job` below takes it back.
    SELECT id, run_id, type, attempts, worker, started_at, run_progress FROM {schema}.jobs
    WHERE id = %(id)s AND lock_token = %(token)s AND status = 'running'
    FOR UPDATE
), job AS (
    UPDATE {schema}.jobs AS j
    SET status = CASE WHEN j.cancel_requested THEN 'canceled' ELSE 'pending' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts ELSE j.attempts - 1 END,
        run_at = CASE WHEN j.cancel_requested THEN j.run_at
                      ELSE coalesce(%(now)s::timestamptz, now()) + %(delay)s::interval END,
        -- Snoozed into the future: out of the queue indexes until due (migration 0011).
        waiting = NOT j.cancel_requested AND %(delay)s::interval > interval '0',
        finished_at = CASE WHEN j.cancel_requested THEN coalesce(%(now)s::timestamptz, now())
                           ELSE j.finished_at END,
        worker = CASE WHEN j.cancel_requested THEN j.worker END, lock_token = NULL,
        lock_expires_at = NULL, run_id = NULL, cancel_requested = false, cancel_terminate = false
    -- EXISTS: `locked` must lock (and read) the row before this writes it; left to run
    -- after, as a CTE nobody here reads would be, it would skip the row this command changed.
    WHERE j.id = %(id)s AND j.lock_token = %(token)s AND j.status = 'running'
      AND EXISTS (SELECT FROM locked)
    RETURNING j.*
), runs AS (
    -- The released run's only write (see the writes of a claim in `claim_jobs`).
    INSERT INTO {schema}.job_runs (
        id, job_id, job_type, attempt, status, worker, started_at, finished_at, duration, progress
    )
    SELECT l.run_id, l.id, l.type, l.attempts, 'released', l.worker, l.started_at,
           coalesce(%(now)s::timestamptz, now()),
           extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - l.started_at),
           coalesce(l.run_progress, 0)
    FROM job
    JOIN locked AS l ON l.id = job.id
    WHERE l.run_id = %(run)s
    RETURNING job_type, duration, attempt
), counted AS (
    -- The job counts (migration 0009): the job leaves running.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT j.type, j.queue, s.status, false, s.n FROM job AS j
    CROSS JOIN LATERAL (VALUES (j.status, 1), ('running', -1)) AS s(status, n)
), run_counted AS (
    -- The run counts (migration 0009): the run written here, released.
    INSERT INTO {schema}.run_count_deltas
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT r.job_type, 'released', '', {schema}.run_bucket(r.duration), 1,
           (r.attempt > 1)::int, round(r.duration * 1000000)::bigint
    FROM runs AS r
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM job
    WHERE job.status = 'pending' AND job.run_at <= coalesce(%(now)s::timestamptz, now())
)
SELECT job.*, (SELECT count(*) FROM wake) AS notified FROM job

-- update_progress --
-- Set the job's and its run's progress, if the token is current. Extends nothing. The running
-- attempt's run has no row yet (see the writes of a claim in `claim_jobs`): its progress is the
-- job row's run_progress, which the end of the attempt copies into the run row.
WITH job AS (
    UPDATE {schema}.jobs
    SET progress = %(percent)s,
        run_progress = CASE WHEN run_id = %(run)s THEN %(percent)s ELSE run_progress END
    WHERE id = %(id)s AND lock_token = %(token)s AND status = 'running'
    RETURNING id
)
SELECT count(*) FROM job

-- lock_expired_jobs --
-- Pending jobs past their expiry, locked for `expire_jobs`.
SELECT id, expires_at, coalesce(%(now)s::timestamptz, now()) AS now
FROM {schema}.jobs
WHERE status = 'pending' AND expires_at IS NOT NULL
  AND expires_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY expires_at, seq
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- apply_expiry --
-- Dead-letter the expired jobs locked by `lock_expired_jobs`, each with its reason.
WITH expired AS (
    UPDATE {schema}.jobs AS j
    SET status = 'failed', finished_at = coalesce(%(now)s::timestamptz, now()),
        dead_lettered = true, fail_reason = e.reason, failure_kind = 'expired'
    FROM unnest(%(ids)s::text[], %(reasons)s::text[]) AS e(id, reason)
    WHERE j.id = e.id AND j.status = 'pending'
    RETURNING j.*
), counted AS (
    -- The job counts (migration 0009): the jobs leave pending for the dead-letter queue.
    INSERT INTO {schema}.job_count_deltas (type, queue, status, dead_lettered, n)
    SELECT e.type, e.queue, s.status, s.dead_lettered, s.n * count(*) FROM expired AS e
    CROSS JOIN (VALUES ('failed', true, 1), ('pending', false, -1)) AS s(status, dead_lettered, n)
    GROUP BY e.type, e.queue, s.status, s.dead_lettered, s.n
)
SELECT * FROM expired

-- notify --
-- A wake-up for every listening node (a hint: listeners still poll).
SELECT pg_notify(%(channel)s, '')

-- pause --
-- Flow control: pause a type or a queue. A row only when newly paused.
INSERT INTO {schema}.paused (name, paused_at)
VALUES (%(name)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (name) DO NOTHING
RETURNING name

-- resume --
-- Flow control: lift a pause, waking every listening node (its jobs may be claimable now).
-- The NOTIFY rides in the statement, sent only if a pause was lifted.
WITH resumed AS (
    DELETE FROM {schema}.paused WHERE name = %(name)s RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM resumed
)
SELECT name, (SELECT count(*) FROM wake) AS notified FROM resumed

-- list_paused --
-- Flow control: the paused names, sorted.
SELECT name FROM {schema}.paused ORDER BY name

-- queue_counts --
-- Flow control: pending and running jobs per queue, for the metrics, from the job counters
-- plus their unfolded deltas (see `job_counts`).
SELECT queue, status, sum(n) AS total
FROM (
    SELECT queue, status, n FROM {schema}.job_counts
    WHERE status IN ('pending', 'running')
    UNION ALL
    SELECT queue, status, n FROM {schema}.job_count_deltas
    WHERE status IN ('pending', 'running')
) AS counts
GROUP BY queue, status HAVING sum(n) > 0

-- acquire_lock --
-- Insert the lock, or take it over once expired, in one statement: two acquirers racing for
-- the same expired lock serialize on its row, and only the first still sees it expired.
INSERT INTO {schema}.locks AS l (name, owner, token, acquired_at, expires_at)
VALUES (%(name)s, %(owner)s, %(token)s, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()) + %(ttl)s)
ON CONFLICT (name) DO UPDATE
SET owner = excluded.owner, token = excluded.token, acquired_at = excluded.acquired_at,
    expires_at = excluded.expires_at
WHERE l.expires_at <= coalesce(%(now)s::timestamptz, now())
RETURNING token

-- renew_lock --
-- Extend a lock that this token still holds and that has not expired.
UPDATE {schema}.locks SET expires_at = coalesce(%(now)s::timestamptz, now()) + %(ttl)s
WHERE name = %(name)s AND token = %(token)s AND expires_at > coalesce(%(now)s::timestamptz, now())

-- release_lock --
-- Free the lock if this token holds it.
DELETE FROM {schema}.locks WHERE name = %(name)s AND token = %(token)s

-- get_lock --
-- The lock's holder, unless it has expired.
SELECT name, owner, expires_at, acquired_at FROM {schema}.locks
WHERE name = %(name)s AND expires_at > coalesce(%(now)s::timestamptz, now())

-- heartbeat_worker --
-- Register the worker or refresh its heartbeat (a pruned worker registers again), with the
-- deadline the worker chose for itself (now + its ttl).
INSERT INTO {schema}.workers (name, first_seen, last_heartbeat, is_leader, running, expires_at)
VALUES (%(name)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
        %(leader)s, %(running)s, coalesce(%(now)s::timestamptz, now()) + %(ttl)s)
ON CONFLICT (name) DO UPDATE
SET last_heartbeat = excluded.last_heartbeat, is_leader = excluded.is_leader,
    running = excluded.running, expires_at = excluded.expires_at

-- remove_worker --
-- Forget a worker (it stopped cleanly).
DELETE FROM {schema}.workers WHERE name = %(name)s

-- list_workers --
-- Every registered worker, by name. `running` is counted from the jobs table now, not the count
-- the worker sent with its last heartbeat (up to a heartbeat interval old): the running jobs
-- (the jobs_running partial index) are grouped once and joined to the roster.
SELECT w.name, w.first_seen, w.last_heartbeat, w.is_leader, coalesce(r.n, 0)::int AS running,
       w.expires_at
FROM {schema}.workers AS w
LEFT JOIN (
    SELECT worker, count(*) AS n FROM {schema}.jobs WHERE status = 'running' GROUP BY worker
) AS r ON r.worker = w.name
ORDER BY w.name

-- prune_workers --
-- Delete the workers whose own deadline passed (a row from before workers wrote one: its last
-- heartbeat + DEFAULT_WORKER_TTL) and end the leases of the jobs they hold now (an earlier expiry
-- is kept, as on every store), so the reaper recovers those at once instead of waiting out the
-- lease.
WITH gone AS (
    DELETE FROM {schema}.workers
    WHERE coalesce(expires_at, last_heartbeat + %(default_ttl)s)
          < coalesce(%(now)s::timestamptz, now())
    RETURNING name
), ended AS (
    UPDATE {schema}.jobs SET lock_expires_at = coalesce(%(now)s::timestamptz, now())
    WHERE status = 'running' AND worker IN (SELECT name FROM gone)
      AND lock_expires_at > coalesce(%(now)s::timestamptz, now())
)
SELECT name FROM gone ORDER BY name

-- lock_schedule_by_name --
-- The schedule to upsert, locked, with its definition as JSON text for the comparison.
SELECT id, type, schedule_type, schedule_value, time_zone, data::text AS data, enabled
FROM {schema}.scheduled_jobs WHERE name = %(name)s FOR UPDATE

-- insert_schedule --
-- A new schedule. DO NOTHING when a concurrent registration of the same name won: the caller
-- then locks that row and updates it instead.
INSERT INTO {schema}.scheduled_jobs (
    id, name, type, data, schedule_type, schedule_value, time_zone, enabled, allow_overlap,
    next_run_at, created_at, updated_at,
    priority, max_retries, backoff_strategy, retry_delay, max_retry_delay, queue
)
VALUES (%(id)s, %(name)s, %(type)s, %(data)s::json, %(kind)s, %(value)s, %(zone)s,
        %(enabled)s, %(overlap)s, %(next)s, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()),
        %(priority)s, %(max_retries)s, %(backoff)s, %(retry_delay)s, %(max_retry_delay)s,
        %(queue)s)
ON CONFLICT (name) DO NOTHING
RETURNING id

-- redefine_schedule --
-- The definition changed: replace it, and its next_run_at with it.
UPDATE {schema}.scheduled_jobs
SET type = %(type)s, data = %(data)s::json, schedule_type = %(kind)s, schedule_value = %(value)s,
    time_zone = %(zone)s, next_run_at = %(next)s, enabled = %(enabled)s,
    allow_overlap = %(overlap)s, priority = %(priority)s, max_retries = %(max_retries)s,
    backoff_strategy = %(backoff)s, retry_delay = %(retry_delay)s,
    max_retry_delay = %(max_retry_delay)s, queue = %(queue)s,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s

-- touch_schedule --
-- The definition is unchanged: keep next_run_at and last_scheduled_at. The value's text (the
-- same schedule: '600s' for '10m'), allow_overlap and the job options are updated.
UPDATE {schema}.scheduled_jobs
SET enabled = %(enabled)s, schedule_value = %(value)s, allow_overlap = %(overlap)s,
    priority = %(priority)s, max_retries = %(max_retries)s, backoff_strategy = %(backoff)s,
    retry_delay = %(retry_delay)s, max_retry_delay = %(max_retry_delay)s, queue = %(queue)s,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s

-- get_schedule --
-- One schedule by name.
SELECT * FROM {schema}.scheduled_jobs WHERE name = %(name)s

-- list_schedules --
-- Every schedule, by name.
SELECT * FROM {schema}.scheduled_jobs ORDER BY name

-- set_schedule_enabled --
-- Enable or disable a schedule.
UPDATE {schema}.scheduled_jobs
SET enabled = %(enabled)s, updated_at = coalesce(%(now)s::timestamptz, now())
WHERE name = %(name)s

-- delete_schedule --
-- Delete a schedule; the jobs it created stay.
DELETE FROM {schema}.scheduled_jobs WHERE name = %(name)s

-- due_schedules --
-- The store's now, the earliest future due time, and the due schedules oldest first, in one
-- statement (one row with NULL schedule columns when none is due).
SELECT coalesce(%(now)s::timestamptz, now()) AS now_,
       (SELECT min(next_run_at) FROM {schema}.scheduled_jobs
        WHERE enabled AND next_run_at IS NOT NULL
          AND next_run_at > coalesce(%(now)s::timestamptz, now())) AS next_due_,
       s.*
FROM (SELECT) AS one
LEFT JOIN LATERAL (
    SELECT * FROM {schema}.scheduled_jobs
    WHERE enabled AND next_run_at IS NOT NULL
      AND next_run_at <= coalesce(%(now)s::timestamptz, now())
    ORDER BY next_run_at, name
    LIMIT %(limit)s
) AS s ON true

-- advance_schedule --
-- Compare and set on next_run_at. The UPDATE locks the schedule row until commit, so of two
-- nodes acting on the same tick (both believing they lead) exactly one moves it.
UPDATE {schema}.scheduled_jobs
SET next_run_at = %(next)s, enabled = enabled AND NOT %(disable)s,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND next_run_at = %(expected)s
RETURNING id

-- schedule_has_live_job --
-- Whether a pending or running job of this schedule exists (allow_overlap=False skips a tick).
SELECT EXISTS (
    SELECT 1 FROM {schema}.jobs
    WHERE scheduled_job_id = %(id)s AND status IN ('pending', 'running')
)

-- mark_scheduled --
-- Record the tick that just produced a job.
UPDATE {schema}.scheduled_jobs SET last_scheduled_at = %(fire_at)s WHERE id = %(id)s

-- append_logs --
-- Persist log entries in order, stamped with the store's clock. Entries of unknown jobs are
-- dropped (a purged job's late log line).
INSERT INTO {schema}.job_logs (job_id, run_id, "timestamp", level, message, metadata)
SELECT e.job_id, e.run_id, coalesce(%(now)s::timestamptz, now()), e.level, e.message,
       e.metadata::json
FROM unnest(%(jobs)s::text[], %(runs)s::text[], %(levels)s::text[], %(messages)s::text[],
            %(metadata)s::text[]) WITH ORDINALITY AS e(job_id, run_id, level, message, metadata, n)
WHERE EXISTS (SELECT 1 FROM {schema}.jobs AS j WHERE j.id = e.job_id)
ORDER BY e.n

-- get_job_runs --
-- A job's runs in attempt order: the ended ones from job_runs (each inserted when its attempt
-- ended, so in attempt order), then, while the job runs, its running attempt as the job row
-- holds it (no row of its own until it ends: see the writes of a claim in `claim_jobs`). NOT
-- EXISTS: an attempt claimed by a node older than migration 0010 has its running row already.
SELECT r.id, r.job_id, r.attempt, r.status, r.worker, r.started_at, r.finished_at, r.duration,
       r.progress, r.error, r.traceback, r.failure_kind
FROM (
    SELECT id, job_id, attempt, status, worker, started_at, finished_at, duration, progress,
           error, traceback, failure_kind, 0 AS part, seq
    FROM {schema}.job_runs WHERE job_id = %(id)s
    UNION ALL
    SELECT j.run_id, j.id, j.attempts, 'running', j.worker, j.started_at, NULL, NULL,
           coalesce(j.run_progress, 0), NULL, NULL, NULL, 1, 0
    FROM {schema}.jobs AS j
    WHERE j.id = %(id)s AND j.status = 'running'
      AND NOT EXISTS (SELECT FROM {schema}.job_runs AS o WHERE o.id = j.run_id)
) AS r
ORDER BY r.part, r.seq

-- get_job_logs --
-- A job's logs in time order, insertion order among equal timestamps.
SELECT job_id, run_id, "timestamp", level, message, metadata FROM {schema}.job_logs
WHERE job_id = %(id)s ORDER BY "timestamp", seq

-- fold_counts --
-- Move the committed count deltas into the counters (migration 0009's `fold_counts`: under a
-- try-lock, so a concurrent call returns at once). Run before the metric reads and by the lease
-- reaper, never by a claim or a completion: the worker's hot path only appends deltas.
SELECT {schema}.fold_counts()

-- job_counts --
-- Job counts per type and status, dead-lettered counted apart: the counters that the
-- statements keep (migration 0009) plus the deltas not folded into them yet, a few rows
-- whatever the number of jobs (keys counted down to zero skipped).
SELECT type, status, sum(n) AS total, coalesce(sum(n) FILTER (WHERE dead_lettered), 0) AS dead
FROM (
    SELECT type, status, dead_lettered, n FROM {schema}.job_counts
    UNION ALL
    SELECT type, status, dead_lettered, n FROM {schema}.job_count_deltas
) AS counts
GROUP BY type, status HAVING sum(n) > 0

-- run_durations --
-- Total duration (in whole microseconds, so the average is computed as every store does, and
-- agrees to the last digit) and count of completed runs per type, from the run counters.
SELECT job_type, sum(duration_sum_us)::bigint AS total_us, sum(runs) AS runs
FROM (
    SELECT job_type, runs, duration_sum_us FROM {schema}.run_counts WHERE status = 'completed'
    UNION ALL
    SELECT job_type, runs, duration_sum_us FROM {schema}.run_count_deltas
    WHERE status = 'completed'
) AS counts
GROUP BY job_type HAVING sum(runs) > 0

-- run_stats --
-- Runs per type, status, duration bucket and failure kind, with their retries (lease losses
-- are the failed runs of kind lease_expired): the ended runs from the run counters plus their
-- unfolded deltas ('' and -1 there stand for no failure kind and no duration), and the
-- running attempts from the running jobs (jobs_running: a few rows, as many as the workers
-- run at once). A running attempt has no run row until it ends (see the writes of a claim in
-- `claim_jobs`), so the counters never hold one: 0009's backfill skips the running rows that
-- nodes older than 0010 wrote, whose jobs are running and count here once.
SELECT job_type, status, nullif(bucket, -1) AS bucket, nullif(failure_kind, '') AS failure_kind,
       sum(runs) AS runs, sum(retries) AS retries, sum(duration_sum_us)::bigint AS duration_sum_us
FROM (
    SELECT job_type, status, failure_kind, bucket, runs, retries, duration_sum_us
    FROM {schema}.run_counts
    UNION ALL
    SELECT job_type, status, failure_kind, bucket, runs, retries, duration_sum_us
    FROM {schema}.run_count_deltas
    UNION ALL
    SELECT j.type, 'running', '', -1, count(*), count(*) FILTER (WHERE j.attempts > 1), 0
    FROM {schema}.jobs AS j WHERE j.status = 'running' GROUP BY j.type
) AS counts
GROUP BY job_type, status, bucket, failure_kind HAVING sum(runs) > 0

-- count_finished_jobs --
-- Jobs finished since a time, per status and per bucket of a width in microseconds. The range
-- on finished_at reads the jobs_finished index: the cost is the window's jobs, not the table.
SELECT floor(extract(epoch FROM finished_at - %(since)s) * 1000000 / %(width)s::bigint)::bigint
           AS bucket,
       status, count(*) AS n
FROM {schema}.jobs WHERE finished_at >= %(since)s
GROUP BY bucket, status ORDER BY bucket, status

-- ---- migrations (_migrate.py) ---------------------------------------------------------------

-- migrations_table_exists --
-- Whether the schema has a migrations table yet (`_migrate.applied_versions`). The name
-- is parsed as SQL: `_migrate._regclass` quotes the schema.
SELECT to_regclass(%(table)s) IS NOT NULL

-- applied_versions --
-- Every migration recorded in the schema, for `_migrate.migrate` to apply the missing ones.
SELECT ARRAY(SELECT version FROM {schema}.timecrisis_migrations ORDER BY version)

-- lock_migrations --
-- Migrations of one schema run one at a time, whichever node starts them (held to commit).
SELECT pg_advisory_xact_lock(%(key)s)

-- schema_exists --
-- Whether the store's schema exists (was in `_migrate.migrate`).
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)

-- create_schema --
-- The store's schema, made by the first migration run.
CREATE SCHEMA {schema}

-- create_migrations_table --
-- The record of applied migrations.
CREATE TABLE IF NOT EXISTS {schema}.timecrisis_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
)

-- record_migration --
-- A migration applied.
INSERT INTO {schema}.timecrisis_migrations (version, name) VALUES (%(version)s, %(name)s)
