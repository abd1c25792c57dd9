-- timecrisis PostgreSQL schema, version 10: an attempt's run row is written once, when the
-- attempt ends, instead of inserted at claim (status running) and updated at the end. `{schema}`
-- is replaced by the quoted schema name.
--
-- While an attempt runs, its run is the job row: run_id, worker, started_at, attempts, and this
-- column, the attempt's progress (NULL until the handler reports any: 0). A job's progress
-- carries over from attempt to attempt, a run's starts at 0, hence a column of its own. The
-- claim sets it NULL, `update_progress` sets it with the job's progress, and the end of the
-- attempt copies it into the run row. Nullable without a default: no table rewrite.
--
-- The running run rows written before this version stay: the node that claimed them (older
-- code, still running during a rolling deploy) updates them at the end as before;
-- `get_job_runs` and `run_stats` do not count such an attempt twice, and a lease recovered by
-- newer code closes the row (`apply_failures`, ON CONFLICT).

ALTER TABLE {schema}.jobs ADD COLUMN run_progress double precision;
