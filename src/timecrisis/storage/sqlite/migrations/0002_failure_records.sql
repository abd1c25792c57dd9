-- timecrisis SQLite schema, version 2: failures record what happened (DESIGN §4).
--
-- Each failed run keeps the formatted traceback of the handler's exception and the kind of the
-- failure; the job keeps the kind of the failure its `fail_reason` describes (an expired job
-- has no run, so this is where `expired` lives). Metrics read the kind, never the error text.
-- The values are kept in step with `timecrisis.models.FailureKind` (tests/sqlite/test_migrations.py).

ALTER TABLE job_runs ADD COLUMN traceback TEXT;
ALTER TABLE job_runs ADD COLUMN failure_kind TEXT CHECK (failure_kind IN (
    'error', 'timeout', 'lease_expired', 'expired', 'crashed', 'non_retryable', 'canceled'));
ALTER TABLE jobs ADD COLUMN failure_kind TEXT CHECK (failure_kind IN (
    'error', 'timeout', 'lease_expired', 'expired', 'crashed', 'non_retryable', 'canceled'));

-- Failures recorded before this version: their kind as far as the old text tells it.
UPDATE job_runs SET failure_kind = CASE
    WHEN substr(error, 1, 18) = 'LeaseExpiredError:' THEN 'lease_expired'
    WHEN substr(error, 1, 16) = 'JobTimeoutError:' THEN 'timeout'
    ELSE 'error' END
WHERE status = 'failed';
UPDATE jobs SET failure_kind = CASE
    WHEN substr(fail_reason, 1, 18) = 'LeaseExpiredError:' THEN 'lease_expired'
    WHEN substr(fail_reason, 1, 16) = 'JobExpiredError:' THEN 'expired'
    WHEN substr(fail_reason, 1, 16) = 'JobTimeoutError:' THEN 'timeout'
    ELSE 'error' END
WHERE fail_reason IS NOT NULL;
