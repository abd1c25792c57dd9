-- timecrisis SQLite schema, version 9: job and run counts kept as the rows change, so the
-- metrics never aggregate the jobs or their runs (a million jobs took /metrics 2 s; now a few
-- rows). (Version 8 is unused: it was a trigger-kept design that was not merged, see
-- docs/performance.md.)
--
-- No triggers: the store's functions that move jobs or runs between keys count them
-- (`_counts.py`), one grouped upsert per batch, not one per row: row triggers cost W2 9-14 %.
-- SQLite has one writer at a time, so the counters are updated in place, in the writer's
-- transaction; no delta rows are needed. Keys counted down to zero stay (one row per key ever
-- seen); the reads skip them.
--
-- The key of each counter is its columns before `n` (`runs`).

CREATE TABLE job_counts (
    type TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    dead_lettered INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (type, queue, status, dead_lettered)
) WITHOUT ROWID;

INSERT INTO job_counts (type, queue, status, dead_lettered, n)
SELECT type, queue, status, dead_lettered, count(*) FROM jobs
GROUP BY type, queue, status, dead_lettered;

-- Runs per (type, status, failure kind, duration bucket): what get_run_stats and the average
-- duration read. A run without a failure kind is '' and one without a duration is bucket -1
-- (a primary key cannot hold NULL). The bucket is `_run_stats.duration_bucket` (the CASE of
-- queries.sql's `count_runs`). Durations are summed in whole microseconds, as every store
-- does: integer sums stay exact when runs are removed again.
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

INSERT INTO run_counts (job_type, status, failure_kind, bucket, runs, retries, duration_sum_us)
SELECT job_type, status, coalesce(failure_kind, ''),
    CASE WHEN duration IS NULL THEN -1
        WHEN duration <= 0.005 THEN 0 WHEN duration <= 0.01 THEN 1 WHEN duration <= 0.025 THEN 2
        WHEN duration <= 0.05 THEN 3 WHEN duration <= 0.1 THEN 4 WHEN duration <= 0.25 THEN 5
        WHEN duration <= 0.5 THEN 6 WHEN duration <= 1.0 THEN 7 WHEN duration <= 2.5 THEN 8
        WHEN duration <= 5.0 THEN 9 WHEN duration <= 10.0 THEN 10 WHEN duration <= 30.0 THEN 11
        WHEN duration <= 60.0 THEN 12 WHEN duration <= 300.0 THEN 13
        WHEN duration <= 900.0 THEN 14 WHEN duration <= 3600.0 THEN 15
        ELSE 16 END AS bucket,
    count(*), sum(attempt > 1), coalesce(sum(CAST(round(duration * 1000000) AS INTEGER)), 0)
FROM job_runs GROUP BY job_type, status, coalesce(failure_kind, ''), bucket;

-- Only the average duration read this index; the counters answer it now, and a completion no
-- longer writes it.
DROP INDEX job_runs_completed;
