-- timecrisis PostgreSQL schema, version 9: job and run counts kept as the rows change, so the
-- metrics never aggregate the jobs or their runs (a million jobs took /metrics 0.8 s; now a
-- few rows). `{schema}` is replaced by the quoted schema name. (Version 8 is unused: it was a
-- trigger-kept design that was not merged, see docs/performance.md.)
--
-- No triggers: every statement of queries.sql that moves a job between keys (inserts it,
-- changes its status, dead-letters it, deletes it) or writes a run row says so itself, in one
-- CTE that appends ONE delta row per key it changed (`*_deltas`), not one per job: a batch of
-- 25 completions adds two rows. Statement-level triggers with transition tables did the same
-- without being asked, and cost W2 9-14 %: they copied every full row into two tuplestores
-- and ran plpgsql for each of the four writes of `complete_and_claim`.
--
-- No hot row: a statement never updates a shared counter; the delta tables take inserts only,
-- so concurrent writers never wait on each other. `fold_counts` (run by the metric reads and
-- the lease reaper, never by the worker's claim or completion) moves the committed deltas
-- into the counter tables under a try-lock: one folder at a time, and one that misses the lock
-- does not wait. A read sums the counters and the deltas not folded yet, in one snapshot.
-- Keys counted down to zero stay (one row per key ever seen); the reads skip them.
--
-- The key of each counter is its columns before `n` (`runs`).
--
-- This version may be applied after version 10 (runs written once), which was merged before
-- it: a schema made by a build that had 10 and not 9 gets 9 on its next start
-- (`_migrate.migrate` applies every missing version). Nothing here depends on 10 either way,
-- and the backfill counts the same: the run counters hold ended runs only.

CREATE TABLE {schema}.job_counts (
    type text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    dead_lettered boolean NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (type, queue, status, dead_lettered)
);
CREATE TABLE {schema}.job_count_deltas (
    type text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    dead_lettered boolean NOT NULL,
    n bigint NOT NULL
);

-- Ended runs per (type, status, failure kind, duration bucket): what get_run_stats and the
-- average duration read. Never a running run: from version 10 on, a running attempt has no
-- run row until it ends (the row is written once, with its delta beside it), and
-- `run_stats` reads the running attempts from the running jobs instead. A run without a failure kind is '' and one without a duration is bucket -1
-- (a primary key cannot hold NULL). Durations are summed in whole microseconds, as every
-- store does: integer sums stay exact when runs are removed again.
CREATE TABLE {schema}.run_counts (
    job_type text NOT NULL,
    status text NOT NULL,
    failure_kind text NOT NULL,
    bucket integer NOT NULL,
    runs bigint NOT NULL,
    retries bigint NOT NULL,
    duration_sum_us bigint NOT NULL,
    PRIMARY KEY (job_type, status, failure_kind, bucket)
);
CREATE TABLE {schema}.run_count_deltas (
    job_type text NOT NULL,
    status text NOT NULL,
    failure_kind text NOT NULL,
    bucket integer NOT NULL,
    runs bigint NOT NULL,
    retries bigint NOT NULL,
    duration_sum_us bigint NOT NULL
);

-- A run's duration bucket, `_run_stats.duration_bucket`: the number of bounds of
-- `base.RUN_DURATION_BUCKETS` below the duration (a test checks the two agree), -1 for none.
-- One SQL expression, IMMUTABLE: the planner inlines it into the statements that call it.
CREATE FUNCTION {schema}.run_bucket(duration float8) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN duration IS NULL THEN -1 ELSE 16 - width_bucket(-duration, ARRAY[
        -3600, -900, -300, -60, -30, -10, -5, -2.5, -1, -0.5, -0.25, -0.1, -0.05, -0.025, -0.01,
        -0.005]::float8[]) END
$$;

-- Move the committed deltas into the counters. Whoever holds the try-lock folds (to the end of
-- its transaction); everyone else skips, and a later call folds what they left. The DELETE
-- sees only committed deltas; one written by a transaction still open stays for the next fold.
CREATE FUNCTION {schema}.fold_counts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('timecrisis.fold_counts'), hashtext('{schema}'))
    THEN
        RETURN;
    END IF;
    WITH moved AS (
        DELETE FROM {schema}.job_count_deltas RETURNING type, queue, status, dead_lettered, n
    )
    INSERT INTO {schema}.job_counts AS c (type, queue, status, dead_lettered, n)
    SELECT type, queue, status, dead_lettered, sum(n) FROM moved
    GROUP BY type, queue, status, dead_lettered ORDER BY type, queue, status, dead_lettered
    ON CONFLICT (type, queue, status, dead_lettered) DO UPDATE SET n = c.n + excluded.n;
    WITH moved AS (
        DELETE FROM {schema}.run_count_deltas
        RETURNING job_type, status, failure_kind, bucket, runs, retries, duration_sum_us
    )
    INSERT INTO {schema}.run_counts AS c
        (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    SELECT job_type, status, failure_kind, bucket, sum(runs), sum(retries), sum(duration_sum_us)
    FROM moved GROUP BY job_type, status, failure_kind, bucket
    ORDER BY job_type, status, failure_kind, bucket
    ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
        runs = c.runs + excluded.runs, retries = c.retries + excluded.retries,
        duration_sum_us = c.duration_sum_us + excluded.duration_sum_us;
END $$;

-- The backfill counts every row committed when it runs; the lock keeps writers out until the
-- migration commits, so no statement of the old code (which writes no deltas) slips in between.
LOCK TABLE {schema}.jobs, {schema}.job_runs IN SHARE MODE;

INSERT INTO {schema}.job_counts (type, queue, status, dead_lettered, n)
SELECT type, queue, status, dead_lettered, count(*) FROM {schema}.jobs
GROUP BY type, queue, status, dead_lettered;

-- The running rows that older code wrote at its claims are left out: their jobs are running,
-- and `run_stats` counts them from there; the statement that ends such an attempt (a lease
-- recovery closing the row, `apply_failures`) counts its run then, once.
INSERT INTO {schema}.run_counts
    (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, coalesce(failure_kind, ''), {schema}.run_bucket(duration),
       count(*), count(*) FILTER (WHERE attempt > 1), coalesce(sum(round(duration * 1000000)), 0)
FROM {schema}.job_runs WHERE status <> 'running' GROUP BY 1, 2, 3, 4;
