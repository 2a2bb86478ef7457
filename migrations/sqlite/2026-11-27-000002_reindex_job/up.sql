-- Asynchronous $reindex jobs (Prefer: respond-async): one row per job, so that any node
-- answers a status poll. Reindexing itself needs no checkpoint: the parameters it makes
-- searchable stay pending (search_param.indexed) until it ends, and the next start of a node
-- reindexes whatever is pending. See docs/search.md.
CREATE TABLE reindex_job (
    id       TEXT   PRIMARY KEY,   -- random (UUID), the last segment of the status URL
    types    TEXT   NOT NULL,      -- JSON array of the types being reindexed
    status   TEXT   NOT NULL,      -- running, completed, failed
    total    BIGINT NOT NULL,      -- live resources of those types when the job started
    done     BIGINT NOT NULL,      -- resources reindexed so far
    created  BIGINT NOT NULL,      -- microseconds since the epoch, UTC
    updated  BIGINT NOT NULL,      -- the runner's heartbeat: a stale one means its node stopped
    finished BIGINT,
    message  TEXT                  -- the outcome: the count and time, or why it failed
);
