-- timecrisis PostgreSQL schema, version 2: failures record what happened (DESIGN §4).
--
-- Each failed run keeps the formatted traceback of the handler's exception and the kind of the
-- failure; the job keeps the kind of the failure its `fail_reason` describes (an expired job
-- has no run, so this is where `expired` lives). Metrics read the kind, never the error text.
-- Adding nullable columns without a default rewrites nothing: instant on a large table.

ALTER TABLE {schema}.job_runs ADD COLUMN traceback text;
ALTER TABLE {schema}.job_runs ADD COLUMN failure_kind text CHECK (failure_kind IN (
    'error', 'timeout', 'lease_expired', 'expired', 'crashed', 'non_retryable', 'canceled'));
ALTER TABLE {schema}.jobs ADD COLUMN failure_kind text CHECK (failure_kind IN (
    'error', 'timeout', 'lease_expired', 'expired', 'crashed', 'non_retryable', 'canceled'));

-- Failures recorded before this version: their kind as far as the old text tells it.
UPDATE {schema}.job_runs SET failure_kind = CASE
    WHEN starts_with(error, 'LeaseExpiredError:') THEN 'lease_expired'
    WHEN starts_with(error, 'JobTimeoutError:') THEN 'timeout'
    ELSE 'error' END
WHERE status = 'failed';
UPDATE {schema}.jobs SET failure_kind = CASE
    WHEN starts_with(fail_reason, 'LeaseExpiredError:') THEN 'lease_expired'
    WHEN starts_with(fail_reason, 'JobExpiredError:') THEN 'expired'
    WHEN starts_with(fail_reason, 'JobTimeoutError:') THEN 'timeout'
    ELSE 'error' END
WHERE fail_reason IS NOT NULL;
