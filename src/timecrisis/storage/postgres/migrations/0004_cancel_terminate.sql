-- timecrisis PostgreSQL schema, version 4: `cancel_job(id, terminate=True)`. `{schema}` is
-- replaced by the quoted schema name.
--
-- The terminate flag travels with the cancel request, so a worker on another node learns it
-- through `renew_claims`, as it learns the request itself. It means something only while
-- `cancel_requested` is set (every reader tests both), and a claim clears both. Not indexed:
-- a renewal that reads it stays a HOT update. A constant default: no table rewrite.

ALTER TABLE {schema}.jobs ADD COLUMN cancel_terminate boolean NOT NULL DEFAULT false;
