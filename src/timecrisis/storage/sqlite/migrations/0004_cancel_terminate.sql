-- timecrisis SQLite schema, version 4: `cancel_job(id, terminate=True)`.
--
-- The terminate flag travels with the cancel request, so a worker on another node learns it
-- through `renew_claims`, as it learns the request itself. It means something only while
-- `cancel_requested` is set (every reader tests both), and a claim clears both.

ALTER TABLE jobs ADD COLUMN cancel_terminate INTEGER NOT NULL DEFAULT 0;
