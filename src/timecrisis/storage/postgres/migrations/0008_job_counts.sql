-- timecrisis PostgreSQL schema, version 8: counts kept as the rows change, so metrics never
-- aggregate the jobs or their runs (a million jobs took get_metrics ~0.4 s; now a few rows).
-- `{schema}` is replaced by the quoted schema name.
--
-- Statement-level triggers with transition tables keep the counts: every statement that
-- writes jobs or job_runs, today's and tomorrow's, is counted without remembering to, and a
-- batch of 50 completions is one aggregate over its 50 rows, not 50 counter updates.
--
-- No hot row: a trigger never updates a shared counter. It appends its statement's changes
-- to a delta table (`*_deltas`: inserts only, so concurrent writers never wait on each other
-- and cannot deadlock), and now and then folds the deltas other transactions committed into
-- the counter table (`fold_counts`), under a try-lock: one folder at a time, and a writer that
-- misses the lock does not wait. A read sums the counters and the deltas not folded yet: a
-- few rows per key either way, whatever the number of jobs. Rows counted down to zero stay
-- (one per key ever seen); the reads skip them.
--
-- The key of each counter is its columns before `n` (`runs`). A new dimension (a queue, say)
-- is one more column in the counter and delta tables, the counter's primary key, the column
-- lists of `fold_counts` and the SELECT/GROUP BY lists of the trigger functions.

CREATE TABLE {schema}.job_counts (
    type text NOT NULL,
    status text NOT NULL,
    dead_lettered boolean NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (type, status, dead_lettered)
);
CREATE TABLE {schema}.job_count_deltas (
    type text NOT NULL,
    status text NOT NULL,
    dead_lettered boolean NOT NULL,
    n bigint NOT NULL
);

-- Runs per (type, status, failure kind, duration bucket): what get_run_stats and the average
-- duration read. A run without a failure kind is '' and one without a duration is bucket -1
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

-- The bounds of `base.RUN_DURATION_BUCKETS` (a test checks the table holds exactly those): a
-- run's bucket is the number of bounds below its duration, `_run_stats.duration_bucket`.
CREATE TABLE {schema}.run_duration_bounds (bucket integer PRIMARY KEY, upper float8 NOT NULL);
INSERT INTO {schema}.run_duration_bounds (bucket, upper) VALUES
    (0, 0.005), (1, 0.01), (2, 0.025), (3, 0.05), (4, 0.1), (5, 0.25), (6, 0.5), (7, 1.0),
    (8, 2.5), (9, 5.0), (10, 10.0), (11, 30.0), (12, 60.0), (13, 300.0), (14, 900.0),
    (15, 3600.0);

-- Move the committed deltas into the counters. Whoever holds the try-lock folds (to the end of
-- its transaction); everyone else skips, and a later statement folds what they left.
CREATE FUNCTION {schema}.fold_counts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('timecrisis.fold_counts'), hashtext('{schema}'))
    THEN
        RETURN;
    END IF;
    WITH moved AS (
        DELETE FROM {schema}.job_count_deltas RETURNING type, status, dead_lettered, n
    )
    INSERT INTO {schema}.job_counts AS c (type, status, dead_lettered, n)
    SELECT type, status, dead_lettered, sum(n) FROM moved
    GROUP BY type, status, dead_lettered ORDER BY type, status, dead_lettered
    ON CONFLICT (type, status, dead_lettered) DO UPDATE SET n = c.n + excluded.n;
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

-- One statement's change to the job counts: +1 per row after it (`new_rows`), -1 per row
-- before it (`old_rows`); an UPDATE that moved no job between keys (a lease renewal) adds
-- nothing. About one statement in 16 then folds.
CREATE FUNCTION {schema}.count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {schema}.job_count_deltas (type, status, dead_lettered, n)
        SELECT type, status, dead_lettered, count(*) FROM new_rows
        GROUP BY type, status, dead_lettered;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {schema}.job_count_deltas (type, status, dead_lettered, n)
        SELECT type, status, dead_lettered, -count(*) FROM old_rows
        GROUP BY type, status, dead_lettered;
    ELSE
        INSERT INTO {schema}.job_count_deltas (type, status, dead_lettered, n)
        SELECT type, status, dead_lettered, sum(n) FROM (
            SELECT type, status, dead_lettered, 1 AS n FROM new_rows
            UNION ALL
            SELECT type, status, dead_lettered, -1 AS n FROM old_rows
        ) AS change
        GROUP BY type, status, dead_lettered HAVING sum(n) <> 0;
    END IF;
    IF random() < 1.0 / 16 THEN
        PERFORM {schema}.fold_counts();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION {schema}.run_duration_bucket(duration float8) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN duration IS NULL THEN -1 ELSE (
        SELECT count(*)::integer FROM {schema}.run_duration_bounds WHERE upper < duration) END
$$;

-- The same for the runs: a run's key and values, +1 after, -1 before (a progress update, which
-- changes no key and no value, adds nothing).
CREATE FUNCTION {schema}.count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {schema}.run_count_deltas
            (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
        SELECT job_type, status, coalesce(failure_kind, ''),
               {schema}.run_duration_bucket(duration), count(*),
               count(*) FILTER (WHERE attempt > 1), coalesce(sum(round(duration * 1000000)), 0)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {schema}.run_count_deltas
            (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
        SELECT job_type, status, coalesce(failure_kind, ''),
               {schema}.run_duration_bucket(duration), -count(*),
               -count(*) FILTER (WHERE attempt > 1), -coalesce(sum(round(duration * 1000000)), 0)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO {schema}.run_count_deltas
            (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
        SELECT job_type, status, kind, bucket, sum(sign),
               sum(sign * retry), sum(sign * duration_us)
        FROM (
            SELECT 1 AS sign, job_type, status, failure_kind, duration, attempt FROM new_rows
            UNION ALL
            SELECT -1 AS sign, job_type, status, failure_kind, duration, attempt FROM old_rows
        ) AS change,
        LATERAL (SELECT coalesce(change.failure_kind, '') AS kind,
                        {schema}.run_duration_bucket(change.duration) AS bucket,
                        (change.attempt > 1)::integer AS retry,
                        coalesce(round(change.duration * 1000000), 0)::bigint AS duration_us
        ) AS k
        GROUP BY job_type, status, kind, bucket
        HAVING sum(sign) <> 0 OR sum(sign * retry) <> 0 OR sum(sign * duration_us) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- Creating the triggers locks the tables against writes to the end of the migration, so the
-- backfill below counts every row that exists when the triggers start counting.
CREATE TRIGGER jobs_count_insert AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_jobs();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_jobs();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_jobs();
CREATE TRIGGER job_runs_count_insert AFTER INSERT ON {schema}.job_runs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_runs();
CREATE TRIGGER job_runs_count_update AFTER UPDATE ON {schema}.job_runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_runs();
CREATE TRIGGER job_runs_count_delete AFTER DELETE ON {schema}.job_runs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_runs();

INSERT INTO {schema}.job_counts (type, status, dead_lettered, n)
SELECT type, status, dead_lettered, count(*) FROM {schema}.jobs
GROUP BY type, status, dead_lettered;

INSERT INTO {schema}.run_counts
    (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, coalesce(failure_kind, ''), {schema}.run_duration_bucket(duration),
       count(*), count(*) FILTER (WHERE attempt > 1), coalesce(sum(round(duration * 1000000)), 0)
FROM {schema}.job_runs GROUP BY 1, 2, 3, 4;
