-- timecrisis SQLite schema, version 3: cluster decisions never depend on the leader's local
-- configuration (DESIGN §4).
--
-- A schedule stores the options of the jobs it fires, resolved from the `JobDefinition` by the
-- node that registered it: the leader that fires a tick may not have the type registered, or
-- may run an older definition. The defaults are the store's job defaults, which is what a
-- schedule written before this version fired with on a leader that did not know its type.
ALTER TABLE scheduled_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
ALTER TABLE scheduled_jobs ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scheduled_jobs ADD COLUMN backoff_strategy TEXT NOT NULL DEFAULT 'exponential'
    CHECK (backoff_strategy IN ('exponential', 'linear'));
ALTER TABLE scheduled_jobs ADD COLUMN retry_delay REAL NOT NULL DEFAULT 10.0;          -- seconds
ALTER TABLE scheduled_jobs ADD COLUMN max_retry_delay REAL NOT NULL DEFAULT 86400.0;   -- seconds

-- A worker writes its own deadline with each heartbeat (now + 3 x its own heartbeat interval),
-- so the leader's settings never decide when another worker is dead. NULL for a row written by
-- an older version: its deadline is last_heartbeat + 45 s (3 x the default 15 s heartbeat).
ALTER TABLE workers ADD COLUMN expires_at INTEGER;
