-- timecrisis PostgreSQL schema, version 3: cluster decisions never depend on the leader's local
-- configuration (DESIGN §4).
--
-- A schedule stores the options of the jobs it fires, resolved from the `JobDefinition` by the
-- node that registered it: the leader that fires a tick may not have the type registered, or
-- may run an older definition. The defaults are the store's job defaults, which is what a
-- schedule written before this version fired with on a leader that did not know its type.
-- (Constant defaults: PostgreSQL 11+ adds these columns without rewriting the table.)
ALTER TABLE {schema}.scheduled_jobs
    ADD COLUMN priority integer NOT NULL DEFAULT 1,
    ADD COLUMN max_retries integer NOT NULL DEFAULT 0,
    ADD COLUMN backoff_strategy text NOT NULL DEFAULT 'exponential'
        CHECK (backoff_strategy IN ('exponential', 'linear')),
    ADD COLUMN retry_delay double precision NOT NULL DEFAULT 10.0,        -- seconds
    ADD COLUMN max_retry_delay double precision NOT NULL DEFAULT 86400.0;  -- seconds

-- A worker writes its own deadline with each heartbeat (now + 3 x its own heartbeat interval),
-- so the leader's settings never decide when another worker is dead. NULL for a row written by
-- an older version: its deadline is last_heartbeat + 45 s (3 x the default 15 s heartbeat).
ALTER TABLE {schema}.workers ADD COLUMN expires_at timestamptz;
