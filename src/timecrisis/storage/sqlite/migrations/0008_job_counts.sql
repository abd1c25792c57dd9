-- timecrisis SQLite schema, version 8: counts kept as the rows change, so metrics never
-- aggregate the jobs or their runs (a million jobs took get_metrics ~0.4 s; now a few rows).
--
-- Triggers keep the counters: every statement that writes jobs or job_runs, today's and
-- tomorrow's, is counted without remembering to. One writer at a time (SQLite's lock), so
-- one row per key needs no sharding. Rows that drop to zero stay (a few per key ever seen);
-- the reads skip them.
--
-- The key of each counter is its columns before `n` (`runs`); a new dimension (a queue, say)
-- is one more column in the table, its primary key, and the NEW./OLD. lists below.

CREATE TABLE job_counts (
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    dead_lettered INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (type, status, dead_lettered)
) WITHOUT ROWID;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (type, status, dead_lettered, n)
    VALUES (NEW.type, NEW.status, NEW.dead_lettered, 1)
    ON CONFLICT (type, status, dead_lettered) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER job_counts_update AFTER UPDATE OF type, status, dead_lettered ON jobs
WHEN OLD.type IS NOT NEW.type OR OLD.status IS NOT NEW.status
    OR OLD.dead_lettered IS NOT NEW.dead_lettered
BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE type = OLD.type AND status = OLD.status AND dead_lettered = OLD.dead_lettered;
    INSERT INTO job_counts (type, status, dead_lettered, n)
    VALUES (NEW.type, NEW.status, NEW.dead_lettered, 1)
    ON CONFLICT (type, status, dead_lettered) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE type = OLD.type AND status = OLD.status AND dead_lettered = OLD.dead_lettered;
END;

INSERT INTO job_counts (type, status, dead_lettered, n)
SELECT type, status, dead_lettered, count(*) FROM jobs GROUP BY type, status, dead_lettered;

-- Runs per (type, status, failure kind, duration bucket): what get_run_stats and the average
-- duration read. A run without a failure kind is '' and one without a duration is bucket -1
-- (a primary key cannot hold NULL). The bucket is `_run_stats.duration_bucket`: the number of
-- bounds below the duration, the bounds being `base.RUN_DURATION_BUCKETS` (a test checks that
-- the table holds exactly those). Durations are summed in whole microseconds, as every store
-- does: integer sums stay exact when runs are removed again.

CREATE TABLE run_duration_bounds (bucket INTEGER PRIMARY KEY, upper REAL NOT NULL);
INSERT INTO run_duration_bounds (bucket, upper) VALUES
    (0, 0.005), (1, 0.01), (2, 0.025), (3, 0.05), (4, 0.1), (5, 0.25), (6, 0.5), (7, 1.0),
    (8, 2.5), (9, 5.0), (10, 10.0), (11, 30.0), (12, 60.0), (13, 300.0), (14, 900.0),
    (15, 3600.0);

CREATE TABLE run_counts (
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    duration_sum_us INTEGER NOT NULL,
    PRIMARY KEY (job_type, status, failure_kind, bucket)
) WITHOUT ROWID;

CREATE TRIGGER run_counts_insert AFTER INSERT ON job_runs BEGIN
    INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    VALUES (NEW.job_type, NEW.status, coalesce(NEW.failure_kind, ''),
        CASE WHEN NEW.duration IS NULL THEN -1 ELSE (
            SELECT count(*) FROM run_duration_bounds WHERE upper < NEW.duration) END,
        1, NEW.attempt > 1, coalesce(CAST(round(NEW.duration * 1000000) AS INTEGER), 0))
    ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
        runs = runs + excluded.runs, retries = retries + excluded.retries,
        duration_sum_us = duration_sum_us + excluded.duration_sum_us;
END;

CREATE TRIGGER run_counts_update AFTER UPDATE OF job_type, status, failure_kind, duration, attempt
ON job_runs BEGIN
    UPDATE run_counts SET runs = runs - 1, retries = retries - (OLD.attempt > 1),
        duration_sum_us = duration_sum_us
            - coalesce(CAST(round(OLD.duration * 1000000) AS INTEGER), 0)
    WHERE (job_type, status, failure_kind, bucket) = (OLD.job_type, OLD.status, coalesce(OLD.failure_kind, ''),
        CASE WHEN OLD.duration IS NULL THEN -1 ELSE (
            SELECT count(*) FROM run_duration_bounds WHERE upper < OLD.duration) END);
    INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
    VALUES (NEW.job_type, NEW.status, coalesce(NEW.failure_kind, ''),
        CASE WHEN NEW.duration IS NULL THEN -1 ELSE (
            SELECT count(*) FROM run_duration_bounds WHERE upper < NEW.duration) END,
        1, NEW.attempt > 1, coalesce(CAST(round(NEW.duration * 1000000) AS INTEGER), 0))
    ON CONFLICT (job_type, status, failure_kind, bucket) DO UPDATE SET
        runs = runs + excluded.runs, retries = retries + excluded.retries,
        duration_sum_us = duration_sum_us + excluded.duration_sum_us;
END;

-- Also fires for the runs deleted by the jobs' ON DELETE CASCADE.
CREATE TRIGGER run_counts_delete AFTER DELETE ON job_runs BEGIN
    UPDATE run_counts SET runs = runs - 1, retries = retries - (OLD.attempt > 1),
        duration_sum_us = duration_sum_us
            - coalesce(CAST(round(OLD.duration * 1000000) AS INTEGER), 0)
    WHERE (job_type, status, failure_kind, bucket) = (OLD.job_type, OLD.status, coalesce(OLD.failure_kind, ''),
        CASE WHEN OLD.duration IS NULL THEN -1 ELSE (
            SELECT count(*) FROM run_duration_bounds WHERE upper < OLD.duration) END);
END;

INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, coalesce(failure_kind, ''),
    CASE WHEN duration IS NULL THEN -1 ELSE (
        SELECT count(*) FROM run_duration_bounds WHERE upper < duration) END AS bucket,
    count(*), total(attempt > 1), coalesce(sum(CAST(round(duration * 1000000) AS INTEGER)), 0)
FROM job_runs GROUP BY job_type, status, coalesce(failure_kind, ''), bucket;

-- Only the average duration read this index; the counters answer it now.
DROP INDEX job_runs_completed;
